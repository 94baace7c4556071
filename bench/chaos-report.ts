/**
 * The Markdown page of a chaos run from its JSON report. `npx tsx bench/chaos-report.ts <report.json>`
 * writes it again next to the JSON (after a change to the page).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const table = (header: string[], rows: unknown[][]) =>
  [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((row) => `| ${row.map((cell) => String(cell ?? '')).join(' | ')} |`)];

function jobsTable(jobs: Record<string, any>) {
  return table(
    ['accepted', 'succeeded', 'failed', 'lost', 'doubled', 'stuck', 'succeeded without its assets', 'without one job.create audit row', 're-run after a fault'],
    [[jobs.accepted, jobs.succeeded, jobs.failed, jobs.lost, jobs.doubled, jobs.stuck, jobs.succeeded_without_its_assets, jobs.without_one_create_audit_row, jobs.rerun_after_fault]],
  );
}

/** A kept heap that moves by more than this (last three minutes against the first three after warm-up) is looked into. */
const KEPT_HEAP_DRIFT_PCT = 5;

function leakVerdict(k: Record<string, any>): string {
  const forced = k.heap_after_gc_drift_pct !== null && k.heap_after_gc_drift_pct !== undefined;
  const drift = (forced ? k.heap_after_gc_drift_pct : k.heap_after_v8_majors_drift_pct) as number | null | undefined;
  const kept = forced ? 'the heap kept after a full GC' : "the heap kept after V8's own major collections";
  if (drift === null || drift === undefined) return 'too short to tell (it needs six figures after the first minute).';
  if (Math.abs(drift) <= KEPT_HEAP_DRIFT_PCT) {
    return (
      `${kept} moved ${drift} % while ${k.requests_after_warm_up} requests were served (within ±${KEPT_HEAP_DRIFT_PCT} %): ` +
      'it does not grow with the work, so there is no leak in the JS heap; what the RSS adds over it is garbage awaiting collection and memory V8 and the allocator keep for reuse.'
    );
  }
  return `${kept} moved ${drift} % while ${k.requests_after_warm_up} requests were served (beyond ±${KEPT_HEAP_DRIFT_PCT} %): compare heap snapshots (CHAOS_SOAK_SNAPSHOTS) to find what holds it.`;
}

/** RSS less V8's heap total at the minutes' ends after the first: the part of the RSS that is not V8's (native code, SQLite, libvips, allocator). */
function outsideV8(k: Record<string, any>): string {
  const outside = (k.minutes as Record<string, any>[]).slice(1).flatMap((m) => {
    const memory = m.after_gc ?? m.as_found;
    return memory ? [Math.round((memory.rss_mb - memory.heap_total_mb) * 10) / 10] : [];
  });
  return outside.length ? `RSS less V8's heap total at the minutes' ends: ${Math.min(...outside)}–${Math.max(...outside)} MB. ` : '';
}

function memoryCell(m: Record<string, any>): string {
  const memory = m.after_gc ?? m.as_found;
  if (!memory) return '-';
  const figures = [memory.heap_used_mb, memory.heap_total_mb, memory.rss_mb, memory.external_mb, memory.vips_cache_mb ?? '-'].join(' / ');
  return m.after_gc ? figures : `${figures} *`;
}

export function markdown(report: Record<string, any>): string {
  const lines = [`# Celforge chaos run ${report.started}`, '', `${report.duration_s} s in all; loopback only; real processes (\`dist/cli.js\`); ${report.cores} cores, load average at the end ${report.load_average.join(' / ')}.`, ''];
  const s = report.scale_out;
  if (s) {
    lines.push('## Scale-out (API + 2 workers, a private PostgreSQL and Redis restarted for real, 5 jobs/s from 3 users)', '');
    lines.push(`Answers by status (0: no answer): ${JSON.stringify(s.statuses)}.`, '');
    lines.push(`Submissions: ${s.submissions}. Before any fault: ${s.baseline_before_faults.submissions} submissions, ${s.baseline_before_faults['5xx']} 5xx, ${s.baseline_before_faults.no_answer} without answer.`, '');
    lines.push(...jobsTable(s.jobs), '');
    lines.push(
      ...table(
        ['fault', 'down s', 'submissions', '5xx', 'of them problem+json', '5xx types', '5xx for s', '5xx for requests sent after return', 'no answer', 'in flight at fault / unanswered', 'jobs running at fault', '/ready said so', 'time to ready s', 'exit', 'load'],
        s.faults.map((f: any) => [
          f.fault,
          f.outage_s,
          f.submissions,
          f['5xx'],
          f['5xx_problem_json'],
          f['5xx_types'].length ? `${f['5xx_statuses'].join(', ')}: ${f['5xx_types'].join(', ')}` : '',
          f['5xx_duration_s'],
          f['5xx_sent_after_return'],
          f.no_answer,
          `${f.in_flight_at_fault} / ${f.in_flight_unanswered}`,
          f.jobs_running_at_fault,
          f.ready_reported_outage,
          f.time_to_ready_s,
          f.exit_code === undefined ? '' : `code ${f.exit_code} in ${(f.exit_ms / 1000).toFixed(1)} s${f.burst_at_signal ? `; burst at the signal: ${f.burst_at_signal}` : ''}`,
          f.load_1m,
        ]),
      ),
      '',
    );
  }
  const e = report.embedded;
  if (e) {
    lines.push(`## Embedded (SQLite, ${e.accepted + e.refused_submissions} submissions from 3 users, two kill -9 and a SIGTERM of the server)`, '');
    lines.push(...jobsTable(e), '');
    lines.push(`Refused submissions: ${e.refused_submissions}. Failed with: ${JSON.stringify(e.failed_errors)}. All ended ${e.all_ended_after_s} s after the first start.`, '');
    lines.push(`First start to listening: ${e.first_start_s} s.`, '');
    lines.push(
      ...table(
        ['restart', 'signal', 'jobs running at the signal', 'exit (grace 10 s)', 'signal to listening again s', 'submissions sent with the signal', 'load'],
        e.restarts.map((r: any, i: number) => [i + 1, r.signal, r.running_at_signal, `code ${r.exit_code} in ${r.exit_s} s`, r.signal_to_listening_s, r.burst_at_signal ?? '', r.load_1m]),
      ),
      '',
    );
    lines.push(`Audit: ${e.audit_verify}`, '');
  }
  if (report.full_disk) {
    lines.push('## A full disk (a real tmpfs, filled while jobs run)', '');
    for (const d of report.full_disk) {
      if (d.skipped) {
        lines.push(`Skipped: ${d.skipped}.`, '');
        continue;
      }
      lines.push(`### ${d.where === 'assets' ? 'The asset directory' : 'The whole data dir (SQLite store, audit trail, assets)'} full`, '');
      lines.push(
        ...table(
          ['full for s', '/ready while full', 'submissions while full', 'reads while full (non-200 of all)', '/ready 200 again after freeing, s', 'a submission after freeing', 'lost'],
          [[d.full_s, d.ready_while_full, d.submissions_while_full.join(', '), `${d.reads_while_full.non_200} of ${d.reads_while_full.total} (${d.reads_while_full.statuses.join(', ')})`, d.ready_again_after_freeing_s, d.submission_after_freeing, d.lost]],
        ),
        '',
      );
      lines.push(...table(['accepted job', 'ended', 'error'], d.accepted_jobs.map((j: any) => [j.prompt, j.status, j.error ?? ''])), '');
    }
  }
  const k = report.soak;
  if (k) {
    lines.push(`## Soak (${k.seconds} s of mixed load on one embedded server: submissions, reads, event streams, gallery, publishing)`, '');
    lines.push(`${k.requests} requests (by status: ${JSON.stringify(k.statuses)}), ${k.jobs_submitted} jobs.`, '');
    lines.push(
      ...table(
        ['minute', 'RSS MB (median)', 'JS heap in use, floor MB', 'at the end, after a full GC (* as found): JS heap used / V8 heap total / RSS / external / libvips cache MB',
          "V8's own major GCs: heap used after each, MB", 'requests', 'errors', 'p50 ms', 'p99 ms', 'p99 submit / read / events / gallery / publish ms', 'load'],
        k.minutes.map((m: any) => [
          m.minute,
          m.rss_mb,
          m.heap_used_floor_mb,
          memoryCell(m),
          m.v8_major_gcs ? m.v8_major_gcs.join(', ') || 'none' : '-',
          m.requests,
          m.errors,
          m.p50_ms,
          m.p99_ms,
          ['submit', 'read', 'events', 'gallery', 'publish'].map((c) => m.p99_by_class_ms[c] ?? '-').join(' / '),
          m.load_1m,
        ]),
      ),
      '',
    );
    lines.push(
      `After the first minute: RSS ${k.rss_min_mb}–${k.rss_max_mb} MB, spread ${k.rss_spread_pct} % (within 10 %: ${k.rss_flat_within_10pct}), drift of the last three minutes against the first three ${k.rss_drift_pct} %; ` +
        `JS heap floor ${k.heap_floor_min_mb}–${k.heap_floor_max_mb} MB, drift ${k.heap_floor_drift_pct} %; p99 from ${k.p99_min_ms} to ${k.p99_max_ms} ms, median ${k.p99_median_ms} ms.`,
      '',
      (k.heap_after_gc_min_mb === null || k.heap_after_gc_min_mb === undefined
        ? `No full GC was forced (CHAOS_SOAK_FORCE_GC=0): V8 alone decided when to collect; V8 heap total as found at the minutes' ends ${k.heap_total_found_min_mb}–${k.heap_total_found_max_mb} MB. `
        : `After a full GC at each minute's end (minutes 2–${k.minutes.length}, ${k.requests_after_warm_up} requests): JS heap used ${k.heap_after_gc_min_mb}–${k.heap_after_gc_max_mb} MB (drift ${k.heap_after_gc_drift_pct} %), ` +
          `V8 heap total ${k.heap_total_after_gc_min_mb}–${k.heap_total_after_gc_max_mb} MB, RSS ${k.rss_after_gc_min_mb}–${k.rss_after_gc_max_mb} MB (drift ${k.rss_after_gc_drift_pct} %); the forced collection of a minute counts among the next one's major GCs. `) +
        (k.heap_after_v8_majors_min_mb === null || k.heap_after_v8_majors_min_mb === undefined
          ? ''
          : `After V8's own major collections (minutes 2–${k.minutes.length}): JS heap used ${k.heap_after_v8_majors_min_mb}–${k.heap_after_v8_majors_max_mb} MB (drift ${k.heap_after_v8_majors_drift_pct} %). `) +
        outsideV8(k) +
        'What the server keeps is the heap after a major GC; the floor of the sampled heap and the RSS also hold garbage not yet collected and memory V8 or the allocator has not given back.',
      '',
      `Leak check: ${leakVerdict(k)}`,
      '',
    );
  }
  return `${lines.join('\n')}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2]!;
  writeFileSync(file.replace(/\.json$/, '.md'), markdown(JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>));
}
