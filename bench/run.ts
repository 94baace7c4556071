import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp, type Services } from '../src/app.js';
import { testConfig } from '../src/config/config.js';
import { findJob } from '../src/production/store.js';
import { signIn } from '../test/support/users.js';
import { measure, printTable, securityCost, writeResults, type Measurement } from './harness.js';

/** The same job row as GET /api/anime/jobs/{id}, read with no security at all: the baseline. */
async function baselineRoutes(app: FastifyInstance, services: Services) {
  app.get<{ Params: { id: string } }>('/bench/raw/jobs/:id', { config: { auth: 'public' } }, async (request) => {
    const job = await findJob(services.store.db, request.params.id);
    return job && { job_id: job.id, type: job.type, status: job.status, progress: job.progress, prompt: job.prompt, created_at: job.created_at };
  });
}

const GENERATE_BODY = JSON.stringify({ prompt: 'bench: a lantern festival at dusk', type: 'image', width: 64, height: 64, steps: 1 });

async function withApp<T>(databaseUrl: string | undefined, options: { worker: boolean }, run: (app: FastifyInstance, base: string) => Promise<T>): Promise<T> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-bench-'));
  const config = testConfig({ dataDir, databaseUrl, previewStepMs: 0, workerConcurrency: 4 });
  const app = await buildApp(config, { extraRoutes: baselineRoutes, worker: options.worker });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    return await run(app, base);
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** POST /generate as fast as clients can send it; no worker runs, so only acceptance is measured. */
async function acceptance(name: string, databaseUrl: string | undefined, seconds: number): Promise<Measurement> {
  return withApp(databaseUrl, { worker: false }, async (app, base) => {
    const user = await signIn(app);
    return measure(name, {
      url: `${base}/api/anime/generate`,
      method: 'POST',
      headers: { ...user.authorization, 'content-type': 'application/json' },
      body: GENERATE_BODY,
      seconds,
    });
  });
}

/** Time from sending POST /generate to the worker reporting the job running, for jobs sent one after another. */
async function submitToRunning(databaseUrl: string | undefined, count: number) {
  return withApp(databaseUrl, { worker: true }, async (app) => {
    const user = await signIn(app);
    const { events } = app.services.production;
    const latencies: number[] = [];
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      const response = await app.inject({
        method: 'POST',
        url: '/api/anime/generate',
        headers: { ...user.authorization, 'content-type': 'application/json' },
        payload: GENERATE_BODY,
      });
      const id = (response.json() as { job_id: string }).job_id;
      const row = await findJob(app.services.store.db, id);
      if (row?.status !== 'queued') {
        latencies.push(performance.now() - started);
        continue;
      }
      await new Promise<void>((resolve) => {
        const stop = events.subscribe(id, (event) => {
          if (event.status !== 'queued') {
            stop();
            resolve();
          }
        });
        // the worker may have taken it between the read and the subscription
        void findJob(app.services.store.db, id).then((now) => {
          if (now && now.status !== 'queued') {
            stop();
            resolve();
          }
        });
      });
      latencies.push(performance.now() - started);
    }
    latencies.sort((a, b) => a - b);
    const at = (p: number) => Number(latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)]!.toFixed(2));
    return { store: app.services.store.dialect, jobs: count, p50_ms: at(0.5), p99_ms: at(0.99) };
  });
}

async function main() {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const databaseUrl = process.env.BENCH_DATABASE_URL;

  // (a)/(b): the price of security on one read, measured on the configured store.
  const pair = await withApp(databaseUrl, { worker: false }, async (app, base) => {
    const user = await signIn(app);
    const created = await app.inject({
      method: 'POST',
      url: '/api/anime/generate',
      headers: { ...user.authorization, 'content-type': 'application/json' },
      payload: GENERATE_BODY,
    });
    const id = (created.json() as { job_id: string }).job_id;
    return [
      await measure('(a) baseline: raw job row read, no security', { url: `${base}/bench/raw/jobs/${id}`, seconds }),
      await measure('(b) secured: GET /api/anime/jobs/{id} (bearer)', { url: `${base}/api/anime/jobs/${id}`, headers: user.authorization, seconds }),
    ];
  });

  const accepted = [await acceptance('jobs accepted: POST /generate [sqlite]', undefined, seconds)];
  if (databaseUrl) accepted.push(await acceptance('jobs accepted: POST /generate [postgres]', databaseUrl, seconds));
  const count = Number(process.env.BENCH_JOBS ?? 200);
  const latency = [await submitToRunning(undefined, count)];
  if (databaseUrl) latency.push(await submitToRunning(databaseUrl, count));

  const rows = [...pair, ...accepted];
  printTable(rows);
  const cost = securityCost(pair[0]!, pair[1]!);
  console.log(`\nsecured/baseline = ${cost.ratio}; security costs ${cost.cost_per_request_us} µs per request`);
  for (const l of latency) console.log(`submit → running [${l.store}]: p50 ${l.p50_ms} ms, p99 ${l.p99_ms} ms over ${l.jobs} jobs`);
  const file = writeResults(fileURLToPath(new URL('./results', import.meta.url)), {
    at: new Date().toISOString(),
    store: databaseUrl ? 'postgres' : 'sqlite',
    node: process.version,
    seconds,
    measurements: rows,
    security_cost: cost,
    submit_to_running: latency,
  });
  console.log(`results: ${path.relative(process.cwd(), file)}`);
}

await main();
