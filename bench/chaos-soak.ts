/**
 * Mixed load on one real `celforge serve` for a while: submissions, reads of jobs, event streams
 * and the gallery (with publishing), at a steady rate. Every few seconds the server's resident set
 * is sampled; each minute gets its request count, errors and latency percentiles.
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { connectInspector, MemoryFigures } from './inspector.js';

export type SoakClass = 'submit' | 'read' | 'events' | 'gallery' | 'publish';

interface Sample {
  at: number;
  kind: SoakClass;
  ms: number;
  status: number;
}

export interface SoakMinute {
  minute: number;
  /** the median of the minute's samples */
  rss_mb: number;
  /** the least JS heap in use seen in the minute (after a collection): what the server keeps */
  heap_used_floor_mb: number | null;
  /** at the minute's end, after a full collection forced through the inspector: what the server keeps */
  after_gc: MemoryFigures | null;
  /** at the minute's end as found, when no full GC is forced (CHAOS_SOAK_FORCE_GC=0) */
  as_found: MemoryFigures | null;
  /** the heap in use (MB) after each major collection V8 started of its own accord in the minute */
  v8_major_gcs: number[] | null;
  requests: number;
  errors: number;
  p50_ms: number;
  p99_ms: number;
  p99_by_class_ms: Partial<Record<SoakClass, number>>;
  load_1m: number;
}

function percentile(values: number[], p: number): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! * 10) / 10;
}

function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Math.round(Number(line?.split(/\s+/)[1] ?? 0) / 1024);
}

/** The server's JS heap in use, from its Prometheus metrics. */
async function heapUsedMb(url: string, metricsToken: string): Promise<number | null> {
  const text = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${metricsToken}` } })
    .then((response) => response.text())
    .catch(() => '');
  const line = text.split('\n').find((l) => l.startsWith('celforge_nodejs_heap_size_used_bytes '));
  return line ? Math.round(Number(line.split(' ')[1]) / 1024 / 1024) : null;
}

export interface SoakProbe {
  inspector: Awaited<ReturnType<typeof connectInspector>>;
  /** a folder for heap snapshots at the end of the first, the middle and the last minute; none without it */
  snapshots?: string;
  /** false: no full GC forced at each minute's end, so V8 alone decides when to collect */
  forceGc: boolean;
}

/** Runs the load for `seconds` against `url`, as the users behind `tokens`; `pid` is the server's. */
export async function soak(url: string, pid: number, tokens: string[], seconds: number, log: (text: string) => void, metricsToken: string, probe?: SoakProbe) {
  const samples: Sample[] = [];
  const rss: { at: number; mb: number; load: number; heap: number | null }[] = [];
  const t0 = Date.now();
  const until = t0 + seconds * 1000;
  const finished: { id: string; token: string }[] = [];
  const submitted: { id: string; token: string }[] = [];
  let n = 0;

  const timed = async (kind: SoakClass, token: string, path: string, init: RequestInit = {}) => {
    const at = Date.now();
    const response = await fetch(`${url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, ...(init.body ? { 'content-type': 'application/json' } : {}) },
      signal: AbortSignal.timeout(30_000),
    }).catch(() => null);
    const body = response ? await response.text().catch(() => '') : '';
    samples.push({ at, kind, ms: Date.now() - at, status: response?.status ?? 0 });
    return { status: response?.status ?? 0, body };
  };

  /** an event stream followed until the job ends (its last event) or 15 s pass; timed to its first byte */
  const follow = async (job: { id: string; token: string }) => {
    const at = Date.now();
    try {
      const response = await fetch(`${url}/api/anime/jobs/${job.id}/events`, {
        headers: { authorization: `Bearer ${job.token}`, accept: 'text/event-stream' },
        signal: AbortSignal.timeout(15_000),
      });
      const reader = response.body!.getReader();
      const first = await reader.read();
      samples.push({ at, kind: 'events', ms: Date.now() - at, status: response.status });
      let text = new TextDecoder().decode(first.value ?? new Uint8Array());
      while (!/succeeded|failed|canceled/.test(text)) {
        const next = await reader.read();
        if (next.done) break;
        text += new TextDecoder().decode(next.value);
      }
      await reader.cancel();
    } catch {
      samples.push({ at, kind: 'events', ms: Date.now() - at, status: 0 });
    }
  };

  const rssTimer = setInterval(() => {
    const at = Date.now();
    const mb = rssMb(pid);
    const load = loadavg()[0]!;
    void heapUsedMb(url, metricsToken).then((heap) => rss.push({ at, mb, load, heap }));
  }, 5000);
  const pending = new Set<Promise<unknown>>();
  const spawnTask = (task: Promise<unknown>) => {
    pending.add(task);
    void task.finally(() => pending.delete(task));
  };
  let lastLog = t0;
  const count = Math.ceil(seconds / 60);
  const afterGc: (MemoryFigures | null)[] = [];
  const asFound: (MemoryFigures | null)[] = [];
  const majorGcs: (number[] | null)[] = [];
  await probe?.inspector.watchMajorGcs();
  const snapshotMinutes = new Set([1, Math.ceil(count / 2), count]);
  /** at the end of each minute: a full collection, then the memory the server still holds */
  const measureMinute = async (minute: number) => {
    if (!probe) return;
    majorGcs[minute - 1] = await probe.inspector.majorGcs().catch(() => null);
    log(`soak: minute ${minute}, heap in use after V8's major collections ${JSON.stringify(majorGcs[minute - 1])}`);
    const memory = await probe.inspector.memory(probe.forceGc).catch(() => null);
    (probe.forceGc ? afterGc : asFound)[minute - 1] = memory;
    log(`soak: minute ${minute}, ${probe.forceGc ? 'after a full collection' : 'as found'} ${JSON.stringify(memory)}`);
    if (probe.snapshots && snapshotMinutes.has(minute)) {
      const file = path.join(probe.snapshots, `soak-minute-${String(minute).padStart(2, '0')}.heapsnapshot`);
      await probe.inspector.snapshot(file).then(() => log(`soak: heap snapshot ${file}`), (error: Error) => log(`soak: no heap snapshot: ${error.message}`));
    }
  };
  let measured = 0;
  // every 100 ms: 2 submissions, 10 reads, 1 gallery page, 1 event stream and a publication per second
  while (Date.now() < until) {
    const tick = n++;
    const token = tokens[tick % tokens.length]!;
    if (tick % 5 === 0) {
      spawnTask(
        timed('submit', token, '/api/anime/generate', {
          method: 'POST',
          body: JSON.stringify({ prompt: `soak ${tick}`, type: 'image', width: 64, height: 64, steps: 4 }),
        }).then(({ status, body }) => {
          if (status === 202) submitted.push({ id: (JSON.parse(body) as { job_id: string }).job_id, token });
        }),
      );
    }
    const known = submitted.at(-1 - (tick % 20));
    spawnTask(known ? timed('read', known.token, `/api/anime/jobs/${known.id}`) : timed('read', token, '/api/anime/jobs?limit=20'));
    if (tick % 10 === 3) spawnTask(timed('gallery', token, '/api/anime/gallery?limit=20'));
    if (tick % 10 === 6 && submitted.length > 10) {
      const job = submitted[submitted.length - 10]!;
      spawnTask(follow(job));
      finished.push(job);
    }
    if (tick % 10 === 8 && finished.length) {
      const job = finished.shift()!;
      spawnTask(timed('publish', job.token, `/api/anime/jobs/${job.id}/publish`, { method: 'POST', body: JSON.stringify({ visibility: 'public' }) }));
    }
    if (Date.now() - lastLog >= 60_000) {
      lastLog = Date.now();
      log(`soak: ${Math.round((lastLog - t0) / 1000)} s, ${samples.length} requests, RSS ${rssMb(pid)} MB`);
    }
    if (Date.now() - t0 >= (measured + 1) * 60_000 && measured + 1 < count) spawnTask(measureMinute(++measured));
    await sleep(100);
  }
  clearInterval(rssTimer);
  await Promise.all(pending);
  while (measured < count) await measureMinute(++measured);

  const minutes: SoakMinute[] = [];
  for (let m = 0; m < count; m++) {
    const from = t0 + m * 60_000;
    const to = Math.min(from + 60_000, until);
    const inMinute = samples.filter((s) => s.at >= from && s.at < to);
    const byClass: Partial<Record<SoakClass, number>> = {};
    for (const kind of ['submit', 'read', 'events', 'gallery', 'publish'] as SoakClass[]) {
      const of = inMinute.filter((s) => s.kind === kind);
      if (of.length) byClass[kind] = percentile(of.map((s) => s.ms), 99);
    }
    const rssInMinute = rss.filter((r) => r.at >= from && r.at < to);
    minutes.push({
      minute: m + 1,
      rss_mb: rssInMinute.length ? percentile(rssInMinute.map((r) => r.mb), 50) : rssMb(pid),
      heap_used_floor_mb: rssInMinute.some((r) => r.heap !== null) ? Math.min(...rssInMinute.flatMap((r) => (r.heap === null ? [] : [r.heap]))) : null,
      after_gc: afterGc[m] ?? null,
      as_found: asFound[m] ?? null,
      v8_major_gcs: majorGcs[m] ?? null,
      requests: inMinute.length,
      errors: inMinute.filter((s) => s.status === 0 || s.status >= 500).length,
      p50_ms: percentile(inMinute.map((s) => s.ms), 50),
      p99_ms: percentile(inMinute.map((s) => s.ms), 99),
      p99_by_class_ms: byClass,
      load_1m: Number((rssInMinute.at(-1)?.load ?? loadavg()[0]!).toFixed(2)),
    });
  }
  // the first minute warms up (JIT, caches, pools); flatness is judged on the minutes after it
  const steady = minutes.length > 2 ? minutes.slice(1) : minutes;
  const rssValues = steady.map((m) => m.rss_mb);
  const heapValues = steady.flatMap((m) => (m.heap_used_floor_mb === null ? [] : [m.heap_used_floor_mb]));
  // drift: the last three minutes against the first three after the warm-up
  const drift = (values: number[]) =>
    values.length >= 6 ? Number(((100 * (percentile(values.slice(-3), 50) - percentile(values.slice(0, 3), 50))) / percentile(values.slice(0, 3), 50)).toFixed(1)) : null;
  const heapAfterGc = steady.flatMap((m) => (m.after_gc ? [m.after_gc.heap_used_mb] : []));
  const rssAfterGc = steady.flatMap((m) => (m.after_gc ? [m.after_gc.rss_mb] : []));
  const heapTotalAfterGc = steady.flatMap((m) => (m.after_gc ? [m.after_gc.heap_total_mb] : []));
  // V8 collects every minute or two of its own accord: each collection counts, not each minute
  const heapTotalFound = steady.flatMap((m) => (m.as_found ? [m.as_found.heap_total_mb] : []));
  const heapAfterMajors = steady.flatMap((m) => m.v8_major_gcs ?? []);
  const p99Values = steady.map((m) => m.p99_ms);
  const statuses: Record<string, number> = {};
  for (const sample of samples) statuses[sample.status] = (statuses[sample.status] ?? 0) + 1;
  return {
    seconds,
    requests: samples.length,
    statuses,
    jobs_submitted: submitted.length,
    minutes,
    rss_spread_pct: Number(((100 * (Math.max(...rssValues) - Math.min(...rssValues))) / Math.min(...rssValues)).toFixed(1)),
    rss_flat_within_10pct: Math.max(...rssValues) <= Math.min(...rssValues) * 1.1,
    rss_min_mb: Math.min(...rssValues),
    rss_max_mb: Math.max(...rssValues),
    rss_drift_pct: drift(rssValues),
    heap_floor_min_mb: heapValues.length ? Math.min(...heapValues) : null,
    heap_floor_max_mb: heapValues.length ? Math.max(...heapValues) : null,
    heap_floor_drift_pct: drift(heapValues),
    heap_after_gc_min_mb: heapAfterGc.length ? Math.min(...heapAfterGc) : null,
    heap_after_gc_max_mb: heapAfterGc.length ? Math.max(...heapAfterGc) : null,
    heap_after_gc_drift_pct: drift(heapAfterGc),
    /** requests served between the first and the last after-GC figure: what a leak would grow with */
    requests_after_warm_up: steady.reduce((sum, m) => sum + m.requests, 0),
    heap_total_after_gc_min_mb: heapTotalAfterGc.length ? Math.min(...heapTotalAfterGc) : null,
    heap_total_after_gc_max_mb: heapTotalAfterGc.length ? Math.max(...heapTotalAfterGc) : null,
    rss_after_gc_min_mb: rssAfterGc.length ? Math.min(...rssAfterGc) : null,
    rss_after_gc_max_mb: rssAfterGc.length ? Math.max(...rssAfterGc) : null,
    rss_after_gc_drift_pct: drift(rssAfterGc),
    heap_total_found_min_mb: heapTotalFound.length ? Math.min(...heapTotalFound) : null,
    heap_total_found_max_mb: heapTotalFound.length ? Math.max(...heapTotalFound) : null,
    heap_after_v8_majors_min_mb: heapAfterMajors.length ? Math.min(...heapAfterMajors) : null,
    heap_after_v8_majors_max_mb: heapAfterMajors.length ? Math.max(...heapAfterMajors) : null,
    heap_after_v8_majors_drift_pct: drift(heapAfterMajors),
    p99_min_ms: Math.min(...p99Values),
    p99_max_ms: Math.max(...p99Values),
    p99_median_ms: percentile(p99Values, 50),
  };
}
