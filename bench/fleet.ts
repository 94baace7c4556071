import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.js';
import { DEFAULT_LIMITS, parseRateLimits, testConfig } from '../src/config/config.js';
import { claimFair, recordGpuUse, type ClaimOptions } from '../src/production/fleet/fair-share.js';
import type { LocalQueue } from '../src/production/local-queue.js';
import { JobWorker } from '../src/production/worker.js';
import { ComfyUIRenderer } from '../src/renderers/comfyui/renderer.js';
import type { Renderer } from '../src/renderers/renderer.js';
import { startComfyUIDouble, type ComfyUIDouble } from '../test/doubles/comfyui.js';
import { openStore } from '../src/db/database.js';
import { mintToken, startWorker, type WorkerProcess } from '../test/production/real-process.js';
import { createTestStorage, postgresAvailable } from '../test/support/dialects.js';
import { removeRedisKeys } from '../test/support/redis.js';
import { startServer, type RunningServer } from '../test/support/server.js';
import { signIn, type SignedIn } from '../test/support/users.js';
import { writeResults } from './harness.js';

/**
 * `npm run bench -- fleet`: a real Celforge (store, HTTP submission, job worker, ComfyUI renderer)
 * in front of ComfyUI doubles with a fixed render time and a slow result download, scheduled by
 * the fleet (fair share, backends kept two deep, work stealing) and by a naive baseline (one job
 * per backend at a time, arrival order), side by side in one run.
 */

const BACKENDS = Number(process.env.BENCH_BACKENDS ?? 4);
const RENDER_MS = Number(process.env.BENCH_RENDER_MS ?? 300);
const DOWNLOAD_MS = Number(process.env.BENCH_DOWNLOAD_MS ?? 150);
const UNLIMITED = 1_000_000_000;
const LIMITS = {
  ...DEFAULT_LIMITS,
  rates: parseRateLimits(['generation', 'read', 'write', 'anonymous'].map((p) => `${p}=${UNLIMITED}/60s`).join(',')),
  activeJobs: UNLIMITED,
  jobsPerDay: UNLIMITED,
};

type Variant = 'fleet' | 'naive';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

interface Run {
  app: FastifyInstance;
  doubles: ComfyUIDouble[];
  workers: JobWorker[];
  renderers: Renderer[];
}

/** The old way: the worker takes `backends` jobs at once in arrival order; a job holds its backend until its result is downloaded. */
function naiveRenderer(fleet: ComfyUIRenderer): Renderer {
  return { name: 'naive', render: (request, context) => fleet.render(request, context), health: () => fleet.health(), close: () => fleet.close() };
}

/** ComfyUI doubles with these render times and the slow download; each notes when prompts arrive (`posted`). */
async function startDoubles(renderMs: number[]): Promise<ComfyUIDouble[]> {
  const doubles = await Promise.all(renderMs.map(() => startComfyUIDouble({ stepDelayMs: 1 })));
  doubles.forEach((d, i) => {
    d.renderMs = renderMs[i]!;
    d.viewDelayMs = DOWNLOAD_MS;
    const times: number[] = [];
    posted.set(d, times);
    const push = d.prompts.push.bind(d.prompts);
    d.prompts.push = (...items) => {
      times.push(performance.timeOrigin + performance.now());
      return push(...items);
    };
  });
  return doubles;
}

/** when each double received each POST /prompt (epoch ms) */
const posted = new WeakMap<ComfyUIDouble, number[]>();

async function startRun(app: FastifyInstance, variant: Variant, renderMs: number[]): Promise<Run> {
  const doubles = await startDoubles(renderMs);
  const urls = doubles.map((d) => d.url);
  const { store, production } = app.services;
  const workers: JobWorker[] = [];
  const renderers: Renderer[] = [];
  {
    const fleet = new ComfyUIRenderer({ urls, depths: [variant === 'naive' ? 1 : 2], healthIntervalMs: 60_000 });
    const renderer = variant === 'naive' ? naiveRenderer(fleet) : fleet;
    renderers.push(renderer);
    workers.push(
      new JobWorker({
        store,
        renderer,
        events: production.events,
        assets: production.assets,
        concurrency: variant === 'naive' ? renderMs.length : 2,
        jobTimeoutMs: 600_000,
        leaseMs: 60_000,
        log: app.log,
        ...(variant !== 'naive' && {
          claimNext: (workerId: string, now: Date, leaseUntil: string, claim?: ClaimOptions) => claimFair(store, workerId, now, leaseUntil, undefined, claim),
          onRendered: (job, ms) => void recordGpuUse(store.db, job.user_id, ms, new Date()).catch(() => {}),
        }),
      }),
    );
  }
  (production.queue as LocalQueue).attach(workers[0]!);
  // Warm up: each backend's /object_info and the fleet's view of it.
  await Promise.all(renderers.map((r) => r.health()));
  await Promise.all(workers.map((w) => w.start()));
  return { app, doubles, workers, renderers };
}

async function endRun(run: Run): Promise<void> {
  (run.app.services.production.queue as LocalQueue).attach(null);
  await run.app.services.store.db.updateTable('jobs').set({ status: 'canceled' }).where('status', 'in', ['queued', 'running']).execute();
  await Promise.all(run.workers.map((w) => w.stop()));
  await Promise.all(run.renderers.map((r) => r.close?.()));
  await Promise.all(run.doubles.map((d) => d.close()));
}

async function submit(app: FastifyInstance, user: SignedIn, count: number): Promise<{ id: string; at: number }[]> {
  const jobs = [];
  for (let i = 0; i < count; i++) {
    const response = await app.inject({
      method: 'POST',
      url: '/api/anime/generate',
      headers: { ...user.authorization, 'content-type': 'application/json' },
      payload: JSON.stringify({ prompt: `fleet bench ${i}`, type: 'image', width: 64, height: 64, steps: 1 }),
    });
    jobs.push({ id: (response.json() as { job_id: string }).job_id, at: Date.now() });
  }
  return jobs;
}

/** Every execution on every double (past the first `skip[backend]`), with its job, in epoch milliseconds. */
function executions(doubles: ComfyUIDouble[], skip: number[] = []) {
  return doubles.flatMap((d, backend) => {
    const jobOf = new Map(d.prompts.map((p) => [p.prompt_id, /"celforge_([0-9a-f-]{36})"/.exec(JSON.stringify(p.prompt))?.[1]]));
    return d.executions.slice(skip[backend] ?? 0).map((e) => ({
      backend,
      promptId: e.promptId,
      job: jobOf.get(e.promptId),
      start: performance.timeOrigin + e.startedAt,
      end: performance.timeOrigin + e.endedAt,
    }));
  });
}

async function untilExecuted(doubles: ComfyUIDouble[], count: number, timeoutMs = 300_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  const executed = () => doubles.reduce((n, d) => n + d.executions.length, 0);
  while (executed() < count) {
    if (Date.now() > end) throw new Error(`only ${executed()} of ${count} executions in time`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!);
}

const round = (n: number, digits = 1) => Number(n.toFixed(digits));

/** Samples each double's queue (running + pending) to find the deepest it got. */
function depthSampler(doubles: ComfyUIDouble[]) {
  const max = doubles.map(() => 0);
  const timer = setInterval(() => {
    doubles.forEach((d, i) => {
      max[i] = Math.max(max[i]!, d.pending().length + (d.running() ? 1 : 0));
    });
  }, 5);
  return () => {
    clearInterval(timer);
    return max;
  };
}

// ---------------------------------------------------------------------------------------------
// scenarios

const SATURATION_JOBS = Number(process.env.BENCH_SATURATION_JOBS ?? 120);
const SATURATION_USERS = 3;

/** Saturation: 3 users' jobs on `BACKENDS` equal backends, embedded (this process) or naive. */
async function saturation(app: FastifyInstance, variant: Variant) {
  const run = await startRun(app, variant, Array(BACKENDS).fill(RENDER_MS));
  try {
    const users = await Promise.all(Array.from({ length: SATURATION_USERS }, () => signIn(app)));
    return await measureSaturation(variant, run.doubles, async (user, count) => void (await submit(app, users[user]!, count)));
  } finally {
    await endRun(run);
  }
}

/**
 * Saturation in scale-out: an API process and two `celforge worker` processes (BullMQ and slot
 * leases on Redis, the store on PostgreSQL when it is reachable, else SQLite), jobs over HTTP.
 */
async function saturationScaleOut() {
  const doubles = await startDoubles(Array(BACKENDS).fill(RENDER_MS));
  const prefix = `cf-bench-${randomBytes(6).toString('hex')}:`;
  const dialect = postgresAvailable ? 'postgres' : 'sqlite';
  const storage = await createTestStorage(dialect);
  const processes: (RunningServer | WorkerProcess)[] = [];
  const store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
  try {
    const env = {
      REDIS_URL,
      CELFORGE_REDIS_PREFIX: prefix,
      CELFORGE_RENDERER: 'comfyui',
      CELFORGE_COMFYUI_URLS: doubles.map((d) => d.url).join(','),
      CELFORGE_COMFYUI_DEPTH: '2',
      CELFORGE_LOG_LEVEL: 'info',
      CELFORGE_RATE_LIMITS: ['generation', 'read', 'write', 'anonymous'].map((p) => `${p}=100000/60s`).join(','),
      CELFORGE_QUOTA_ACTIVE_JOBS: '100000',
      CELFORGE_QUOTA_JOBS_PER_DAY: '100000',
    };
    const api = await startServer(storage, { args: ['serve', '--only', 'api'], env });
    processes.push(api);
    processes.push(...(await Promise.all([startWorker(storage, env), startWorker(storage, env)])));
    const tokens = await Promise.all(Array.from({ length: SATURATION_USERS }, () => mintToken(store, storage)));
    const post = async (user: number, count: number) => {
      for (let i = 0; i < count; i++) {
        const response = await fetch(`${api.url}/api/anime/generate`, {
          method: 'POST',
          headers: { authorization: `Bearer ${tokens[user]}`, 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: `fleet bench ${i}`, type: 'image', width: 64, height: 64, steps: 1 }),
        });
        if (response.status !== 202) throw new Error(`submission answered ${response.status}: ${await response.text()}`);
      }
    };
    // One unmeasured job per backend first: the workers' first renders pay for cold caches.
    await post(0, BACKENDS);
    await untilExecuted(doubles, BACKENDS);
    const warm = doubles.map((d) => d.executions.length);
    await new Promise((resolve) => setTimeout(resolve, 2 * (RENDER_MS + DOWNLOAD_MS)));
    return { ...(await measureSaturation('fleet, 2 worker processes', doubles, post, warm)), store: dialect };
  } finally {
    await Promise.all(processes.map((p) => p.stop('SIGTERM')));
    await store.close();
    await Promise.all(doubles.map((d) => d.close()));
    await storage.drop();
    await removeRedisKeys(REDIS_URL, prefix);
  }
}

/**
 * Throughput against the ideal, and the idle gaps: the pause on a backend between one prompt's end
 * and the next one's start, while jobs still wait. `refill_ms`: from a prompt's end to the arrival
 * of the prompt two after it on its backend, the one that takes its place (negative: it was there
 * already); within one render time, the backend never waits.
 */
async function measureSaturation(
  variant: string,
  doubles: ComfyUIDouble[],
  submitJobs: (user: number, count: number) => Promise<void>,
  skip: number[] = doubles.map(() => 0),
) {
  const sample = depthSampler(doubles);
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  const total = SATURATION_JOBS;
  for (let user = 0; user < SATURATION_USERS; user++) await submitJobs(user, total / SATURATION_USERS);
  await untilExecuted(doubles, total + skip.reduce((a, b) => a + b, 0));
  lag.disable();
  const maxDepth = sample();
  const all = executions(doubles, skip);
  const first = Math.min(...all.map((e) => e.start));
  const last = Math.max(...all.map((e) => e.end));
  const meanExec = all.reduce((s, e) => s + (e.end - e.start), 0) / all.length;
  const lastStart = Math.max(...all.map((e) => e.start));
  const gaps: number[] = [];
  const refills: number[] = [];
  for (let b = 0; b < doubles.length; b++) {
    const mine = all.filter((e) => e.backend === b).sort((x, y) => x.start - y.start);
    const posts = posted.get(doubles[b]!) ?? [];
    for (let i = 1; i < mine.length; i++) {
      if (mine[i]!.start > lastStart) continue;
      gaps.push(mine[i]!.start - mine[i - 1]!.end);
      if (process.env.BENCH_DEBUG && mine[i]!.start - mine[i - 1]!.end > 5) console.log('gap', b, i, round(mine[i - 1]!.end - first), round(mine[i]!.start - first));
    }
    // Two deep: when prompt i ends, i+1 starts and i+2 must arrive before i+1 ends.
    const postedAt = new Map(doubles[b]!.prompts.map((p, k) => [p.prompt_id, posts[k]]));
    for (let i = 0; i + 2 < mine.length; i++) {
      const arrived = postedAt.get(mine[i + 2]!.promptId);
      if (arrived !== undefined) refills.push(arrived - mine[i]!.end);
    }
  }
  const ideal = (total * meanExec) / doubles.length;
  return {
    variant,
    jobs: total,
    makespan_ms: round(last - first),
    ideal_ms: round(ideal),
    throughput_vs_ideal: round(ideal / (last - first), 3),
    idle_gap_ms: { p50: percentile(gaps, 0.5), p99: percentile(gaps, 0.99), max: percentile(gaps, 1), samples: gaps.length },
    refill_ms: { p50: percentile(refills, 0.5), p99: percentile(refills, 0.99), max: percentile(refills, 1) },
    bench_event_loop_lag_ms: { p99: round(lag.percentile(99) / 1e6), max: round(lag.max / 1e6) },
    max_prompts_on_a_backend: maxDepth,
  };
}

/** A heavy user submits 100 jobs; once the fleet is busy a light user submits 1: its wait to start. */
async function lightUser(app: FastifyInstance, variant: Variant) {
  const run = await startRun(app, variant, Array(BACKENDS).fill(RENDER_MS));
  try {
    const heavy = await signIn(app);
    const light = await signIn(app);
    await submit(app, heavy, 100);
    await untilExecuted(run.doubles, BACKENDS * 2);
    const [job] = await submit(app, light, 1);
    const end = Date.now() + 120_000;
    let started: number | undefined;
    while (started === undefined && Date.now() < end) {
      started = executions(run.doubles).find((e) => e.job === job!.id)?.start;
      // A naive queue would need minutes: give up after two minutes of waiting.
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const waitMs = started === undefined ? null : round(started - job!.at);
    return { variant, light_job_wait_ms: waitMs, goal_ms: RENDER_MS + 50 };
  } finally {
    await endRun(run);
  }
}

/** 5 users with unequal demand submit at once (one batch after another); Jain's index of what each got by mid-run. */
async function jain(app: FastifyInstance, variant: Variant) {
  const demand = [2, 5, 10, 20, 40];
  const run = await startRun(app, variant, Array(BACKENDS).fill(RENDER_MS));
  try {
    const users = await Promise.all(demand.map(() => signIn(app)));
    const owner = new Map<string, number>();
    let t0 = 0;
    for (const [i, user] of users.entries()) {
      const jobs = await submit(app, user, demand[i]!);
      if (i === 0) t0 = jobs[0]!.at;
      for (const job of jobs) owner.set(job.id, i);
    }
    const total = demand.reduce((a, b) => a + b, 0);
    const window = ((total * RENDER_MS) / BACKENDS) / 2;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, t0 + window - Date.now())));
    const got = demand.map(() => 0);
    for (const e of executions(run.doubles)) if (e.job && e.start <= t0 + window) got[owner.get(e.job)!]! += 1;
    // Max-min fair share of what was started by then, by water-filling.
    const capacity = got.reduce((a, b) => a + b, 0);
    const fair = waterFill(demand, capacity);
    const x = got.map((g, i) => g / fair[i]!);
    const index = x.reduce((a, b) => a + b, 0) ** 2 / (x.length * x.reduce((a, b) => a + b * b, 0));
    return { variant, demand, started_by_mid_run: got, fair_share: fair.map((f) => round(f, 2)), jain_index: round(index, 3) };
  } finally {
    await endRun(run);
  }
}

function waterFill(demand: number[], capacity: number): number[] {
  const share = demand.map(() => 0);
  let left = capacity;
  let open = demand.map((_, i) => i);
  while (left > 1e-9 && open.length > 0) {
    const each = left / open.length;
    for (const i of open) {
      const add = Math.min(each, demand[i]! - share[i]!);
      share[i]! += add;
      left -= add;
    }
    open = open.filter((i) => share[i]! < demand[i]! - 1e-9);
  }
  return share;
}

/** One backend 3× slower: makespan of 40 jobs against the ideal for that fleet. */
async function heterogeneous(app: FastifyInstance, variant: Variant) {
  const times = Array(BACKENDS).fill(RENDER_MS);
  times[BACKENDS - 1] = RENDER_MS * 3;
  const run = await startRun(app, variant, times);
  try {
    const user = await signIn(app);
    const total = 40;
    const jobs = await submit(app, user, total);
    await untilExecuted(run.doubles, total);
    const all = executions(run.doubles);
    const perBackend = run.doubles.map((_, b) => {
      const mine = all.filter((e) => e.backend === b);
      return mine.length > 0 ? mine.reduce((s, e) => s + (e.end - e.start), 0) / mine.length : times[b]!;
    });
    const rate = perBackend.reduce((s, ms) => s + 1 / ms, 0);
    const ideal = total / rate;
    const makespan = Math.max(...all.map((e) => e.end)) - jobs[0]!.at;
    return {
      variant,
      jobs: total,
      makespan_ms: round(makespan),
      ideal_ms: round(ideal),
      makespan_vs_ideal: round(makespan / ideal, 3),
      jobs_per_backend: run.doubles.map((_, b) => all.filter((e) => e.backend === b).length),
    };
  } finally {
    await endRun(run);
  }
}

export async function main(): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-bench-fleet-'));
  const app = await buildApp(testConfig({ dataDir, limits: LIMITS, renderer: 'preview' }), { worker: false });
  try {
    // One unmeasured round first: the first jobs of a process pay for JIT compilation and cold caches.
    await saturation(app, 'fleet');
    if (process.env.BENCH_ONLY === 'light') {
      for (let i = 0; i < 3; i++) console.log(JSON.stringify(await lightUser(app, 'fleet')));
      return;
    }
    if (process.env.BENCH_ONLY === 'saturation') {
      if (process.env.BENCH_VARIANT !== 'scale-out') console.log(JSON.stringify(await saturation(app, 'fleet')));
      console.log(JSON.stringify(await saturationScaleOut()));
      if (process.env.BENCH_VARIANT !== 'scale-out') console.log(JSON.stringify(await saturation(app, 'naive')));
      return;
    }
    const results = {
      saturation: [] as unknown[],
      light_user: [] as unknown[],
      fairness: [] as unknown[],
      heterogeneous: [] as unknown[],
    };
    results.saturation.push(await saturation(app, 'fleet'), await saturationScaleOut(), await saturation(app, 'naive'));
    for (const variant of ['fleet', 'naive'] as const) results.light_user.push(await lightUser(app, variant));
    for (const variant of ['fleet', 'naive'] as const) results.fairness.push(await jain(app, variant));
    for (const variant of ['fleet', 'naive'] as const) results.heterogeneous.push(await heterogeneous(app, variant));
    console.log(JSON.stringify(results, null, 2));
    const file = writeResults(fileURLToPath(new URL('./results', import.meta.url)), {
      bench: 'fleet',
      at: new Date().toISOString(),
      node: process.version,
      load_average: os.loadavg().map((n) => Number(n.toFixed(2))),
      cores: os.availableParallelism(),
      settings: { backends: BACKENDS, render_ms: RENDER_MS, download_ms: DOWNLOAD_MS, saturation_jobs: SATURATION_JOBS, embedded_store: 'sqlite', scale_out: 'API + 2 celforge worker processes, BullMQ and slot leases on Redis, store on PostgreSQL (SQLite when unreachable)' },
      ...results,
    });
    console.log(`results: ${path.relative(process.cwd(), file)}`);
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
