import { mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { buildApp } from '../src/app.js';
import { DEFAULT_LIMITS, parseRateLimits, testConfig } from '../src/config/config.js';
import { findJob } from '../src/production/store.js';
import { ProductionService } from '../src/production/service.js';
import { JobView } from '../src/production/views.js';
import { signIn, TEST_PASSWORD, type SignedIn } from '../test/support/users.js';
import { measure, printTable, securityCost, writeResults, type Measurement } from './harness.js';
import { temporaryPostgres } from './postgres.js';
import { assetDelivery, printDelivery } from './assets.js';

/**
 * The benchmark keeps every security layer in the path (authentication, revocation view, rate
 * limits, audit) but gives the budgets room, so it measures their cost, not their 429s.
 */
const UNLIMITED = 1_000_000_000;
const BENCH_LIMITS = {
  ...DEFAULT_LIMITS,
  rates: parseRateLimits(
    ['signin-ip', 'signin-account', 'generation', 'read', 'write', 'anonymous'].map((p) => `${p}=${UNLIMITED}/60s`).join(','),
  ),
  activeJobs: UNLIMITED,
  jobsPerDay: UNLIMITED,
};

const GENERATE_BODY = JSON.stringify({ prompt: 'bench: a lantern festival at dusk', type: 'image', width: 64, height: 64, steps: 1 });

interface Bench {
  app: FastifyInstance;
  base: string;
  user: SignedIn;
}

async function withApp<T>(databaseUrl: string | undefined, options: { worker: boolean }, run: (bench: Bench) => Promise<T>): Promise<T> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-bench-'));
  // The login storm's clients sit behind a trusted proxy on 127.0.0.1 (X-Forwarded-For).
  const config = testConfig({ dataDir, databaseUrl, limits: BENCH_LIMITS, previewStepMs: 0, workerConcurrency: 4, trustProxy: ['127.0.0.1'] });
  const app = await buildApp(config, { worker: options.worker });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    return await run({ app, base, user: await signIn(app) });
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function submit(bench: Bench): Promise<string> {
  const response = await bench.app.inject({
    method: 'POST',
    url: '/api/anime/generate',
    headers: { ...bench.user.authorization, 'content-type': 'application/json' },
    payload: GENERATE_BODY,
  });
  return (response.json() as { job_id: string }).job_id;
}

/**
 * The unsecured reads, served by a bare Fastify (no plugin at all: no authentication, no security
 * headers, no limits, no audit, no request ids) on the same store:
 * - (a) the same read as GET /api/anime/jobs/{id}: the same service call for the job's owner, the
 *   same response schema, the same body — the read with its security taken away;
 * - (a0) only the job row, for reference: what the store and Fastify cost without the job view.
 */
async function baselineServer(bench: Bench): Promise<{ url: string; close: () => Promise<void> }> {
  const bare = Fastify({ forceCloseConnections: true }).withTypeProvider<TypeBoxTypeProvider>();
  bare.setValidatorCompiler(TypeBoxValidatorCompiler);
  const { store, production } = bench.app.services;
  const jobs = new ProductionService({ store, ...production, audit: bench.app.services.audit });
  const owner = { userId: bench.user.userId, email: bench.user.email, role: 'user' as const, sessionId: bench.user.sessionId, via: 'token' as const, scopes: null };
  const params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
  bare.get('/jobs/:id', { schema: { params, response: { 200: JobView } } }, (request) => jobs.get(owner, request.params.id));
  bare.get<{ Params: { id: string } }>('/raw/jobs/:id', async (request) => {
    const job = await findJob(store.db, request.params.id);
    return job && { job_id: job.id, type: job.type, status: job.status, progress: job.progress, prompt: job.prompt, created_at: job.created_at };
  });
  const url = await bare.listen({ host: '127.0.0.1', port: 0 });
  return { url, close: () => bare.close() };
}

/**
 * (a) against (b) and an API-key read, alternated for a few rounds after an uncounted warm-up
 * round; each keeps its best round, so a busy machine skews all alike, and each round's own
 * (b)/(a) ratio is kept: measured minutes apart at most, the pair shares the machine's state.
 */
async function securedReads(bench: Bench, seconds: number, rounds: number): Promise<{ reads: Measurement[]; roundRatios: number[] }> {
  const id = await submit(bench);
  const baseline = await baselineServer(bench);
  const principal = { userId: bench.user.userId, email: bench.user.email, role: 'user' as const, sessionId: bench.user.sessionId, via: 'token' as const, scopes: null };
  const key = await bench.app.services.apiKeys.create(principal, { name: 'bench', scopes: ['jobs:read'] });
  // (a) and (b) run back to back, so each round's pair shares the machine's state.
  const scenarios: [string, string, Record<string, string>][] = [
    ['(a) unsecured: the same job read, no security', `${baseline.url}/jobs/${id}`, {}],
    ['(b) secured: GET /api/anime/jobs/{id} (bearer)', `${bench.base}/api/anime/jobs/${id}`, bench.user.authorization],
    ['(a0) reference: the job row only, no security', `${baseline.url}/raw/jobs/${id}`, {}],
    ['(b2) secured: GET /api/anime/jobs/{id} (API key)', `${bench.base}/api/anime/jobs/${id}`, { authorization: `ApiKey ${key.key}` }],
  ];
  const best = new Map<string, Measurement>();
  const roundRatios: number[] = [];
  try {
    // A round that is not counted: every path warmed up (JIT tiers, the audit file grown to size).
    for (const [name, url, headers] of scenarios) await measure(name, { url, headers, seconds: 2 });
    for (let round = 0; round < rounds; round++) {
      const thisRound: Measurement[] = [];
      for (const [name, url, headers] of scenarios) {
        const result = await measure(name, { url, headers, seconds });
        thisRound.push(result);
        const kept = best.get(name);
        if (!kept || result.requests_per_second > kept.requests_per_second) best.set(name, result);
      }
      roundRatios.push(securityCost(thisRound[0]!, thisRound[1]!).ratio);
    }
  } finally {
    await baseline.close();
  }
  return { reads: ['(a)', '(a0)', '(b)', '(b2)'].map((tag) => [...best.values()].find((m) => m.name.startsWith(`${tag} `))!), roundRatios };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : Number(((sorted[middle - 1]! + sorted[middle]!) / 2).toFixed(3));
}

/** (c) 50 logins kept in flight from another thread while an authenticated read is measured. */
async function loginStorm(bench: Bench, seconds: number) {
  const id = await submit(bench);
  const users = await Promise.all(
    Array.from({ length: 50 }, (_, i) => bench.app.services.identity.createUser({ email: `storm-${i}@bench.test`, password: TEST_PASSWORD, role: 'user' })),
  );
  const storm = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
    let stop = false, logins = 0, failures = 0;
    parentPort.on('message', () => { stop = true; });
    const one = async (i) => {
      while (!stop) {
        const r = await fetch(workerData.base + '/api/auth/login', { method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': '10.77.0.' + i },
          body: JSON.stringify({ email: workerData.emails[i], password: workerData.password }) });
        await r.arrayBuffer();
        if (r.status === 200) logins++; else failures++;
      }
    };
    Promise.all(workerData.emails.map((_, i) => one(i))).then(() => parentPort.postMessage({ logins, failures }));`,
    { eval: true, workerData: { base: bench.base, emails: users.map((u) => u.email), password: TEST_PASSWORD } },
  );
  const done = new Promise<{ logins: number; failures: number }>((resolve) => storm.once('message', resolve));
  const started = Date.now();
  const read = await measure('(c) secured read during a 50-login storm', {
    url: `${bench.base}/api/anime/jobs/${id}`,
    headers: bench.user.authorization,
    seconds,
    connections: 4,
  });
  storm.postMessage('stop');
  const { logins, failures } = await done;
  await storm.terminate();
  const elapsed = (Date.now() - started) / 1000;
  return { read, logins_per_second: Number((logins / elapsed).toFixed(1)), login_failures: failures };
}

/** (d) POST /generate as fast as clients send it; no worker runs, so only acceptance is measured. */
function acceptance(bench: Bench, name: string, seconds: number): Promise<Measurement> {
  return measure(name, {
    url: `${bench.base}/api/anime/generate`,
    method: 'POST',
    headers: { ...bench.user.authorization, 'content-type': 'application/json' },
    body: GENERATE_BODY,
    seconds,
  });
}

/** (e) Time from sending POST /generate to the worker reporting the job running, one job after another. */
async function submitToRunning(bench: Bench, count: number) {
  const { events } = bench.app.services.production;
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const id = await submit(bench);
    await new Promise<void>((resolve) => {
      const stop = events.subscribe(id, (event) => {
        if (event.status !== 'queued') {
          stop();
          resolve();
        }
      });
      // the worker may have taken it before the subscription
      void findJob(bench.app.services.store.db, id).then((now) => {
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
  return { store: bench.app.services.store.dialect, jobs: count, p50_ms: at(0.5), p99_ms: at(0.99) };
}

interface BenchStore {
  name: string;
  /** a fresh store for one phase: jobs left queued by one phase must not wait in front of the next */
  open(): Promise<{ url?: string; drop: () => Promise<void> }>;
}

async function benchStores(): Promise<BenchStore[]> {
  const stores: BenchStore[] = [{ name: 'sqlite', open: async () => ({ drop: async () => {} }) }];
  const given = process.env.BENCH_DATABASE_URL;
  const probe = await temporaryPostgres(given);
  if (!probe) {
    console.log('PostgreSQL not reachable: its figures are skipped');
    return stores;
  }
  await probe.drop();
  stores.push({ name: 'postgres', open: async () => (given ? { url: given, drop: async () => {} } : (await temporaryPostgres(undefined))!) });
  return stores;
}

async function onStore<T>(store: BenchStore, run: (url: string | undefined) => Promise<T>): Promise<T> {
  const database = await store.open();
  try {
    return await run(database.url);
  } finally {
    await database.drop();
  }
}

async function main() {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const jobs = Number(process.env.BENCH_JOBS ?? 200);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  if (process.env.BENCH_ONLY === 'assets') {
    printDelivery(await assetDelivery(seconds, rounds, BENCH_LIMITS));
    return;
  }
  const { reads, roundRatios } = await withApp(undefined, { worker: false }, (bench) => securedReads(bench, seconds, rounds));
  const spread = `(b)/(a) per round: ${roundRatios.join(', ')} (median ${median(roundRatios)})`;
  if (process.env.BENCH_ONLY === 'reads') {
    printTable(reads);
    for (const secured of reads.slice(2)) console.log(securityCost(reads[0]!, secured));
    console.log(spread);
    return;
  }
  const storm = await withApp(undefined, { worker: false }, (bench) => loginStorm(bench, seconds));
  const accepted: Measurement[] = [];
  const latency = [];
  for (const store of await benchStores()) {
    const name = `(d) jobs accepted: POST /generate [${store.name}]`;
    accepted.push(await onStore(store, (url) => withApp(url, { worker: false }, (bench) => acceptance(bench, name, seconds))));
    latency.push(await onStore(store, (url) => withApp(url, { worker: true }, (bench) => submitToRunning(bench, jobs))));
  }

  const delivery = await assetDelivery(seconds, rounds, BENCH_LIMITS);

  const rows = [...reads, storm.read, ...accepted];
  printTable(rows);
  const [baseline, raw, bearer, apiKey] = reads;
  const costs = [securityCost(baseline!, bearer!), securityCost(baseline!, apiKey!), securityCost(raw!, bearer!)];
  console.log(`\nload average ${os.loadavg().map((n) => n.toFixed(1)).join(' ')} on ${os.availableParallelism()} cores`);
  for (const cost of costs) console.log(`${cost.secured}: ${cost.ratio}× ${cost.baseline}; security costs ${cost.cost_per_request_us} µs per request`);
  console.log(spread);
  console.log(`login storm: ${storm.logins_per_second} logins/s; authenticated read p99 ${storm.read.latency_p99_ms} ms during it`);
  for (const l of latency) console.log(`submit → running [${l.store}]: p50 ${l.p50_ms} ms, p99 ${l.p99_ms} ms over ${l.jobs} jobs`);
  printDelivery(delivery);
  const file = writeResults(fileURLToPath(new URL('./results', import.meta.url)), {
    at: new Date().toISOString(),
    node: process.version,
    load_average: os.loadavg().map((n) => Number(n.toFixed(2))),
    seconds,
    measurements: rows,
    security_cost: costs,
    secured_to_unsecured_per_round: roundRatios,
    login_storm: { logins_per_second: storm.logins_per_second, login_failures: storm.login_failures, read_p99_ms: storm.read.latency_p99_ms },
    submit_to_running: latency,
    asset_delivery: delivery,
  });
  console.log(`results: ${path.relative(process.cwd(), file)}`);
}

if (process.argv[2] === 'fleet') await (await import('./fleet.js')).main();
else await main();
