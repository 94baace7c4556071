import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp, type Services } from '../src/app.js';
import { testConfig } from '../src/config/config.js';
import { findUserById } from '../src/identity/store.js';
import { signIn, TEST_PASSWORD } from '../test/support/users.js';
import { measure, printTable, securityCost, writeResults, type Measurement } from './harness.js';

/**
 * (c) A login storm: 50 logins kept in flight (50 accounts, 50 client addresses behind a trusted
 * proxy, so throttling does not cut the storm short) while an authenticated read is measured.
 */
async function loginStorm(app: FastifyInstance, base: string, authorization: Record<string, string>, seconds: number) {
  const users = await Promise.all(
    Array.from({ length: 50 }, (_, i) => app.services.identity.createUser({ email: `storm-${i}@bench.test`, password: TEST_PASSWORD, role: 'user' })),
  );
  // The storm's clients run on a thread of their own, so their work does not slow the server's event loop.
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
    { eval: true, workerData: { base, emails: users.map((u) => u.email), password: TEST_PASSWORD } },
  );
  const done = new Promise<{ logins: number; failures: number }>((resolve) => storm.once('message', resolve));
  const started = Date.now();
  const read = await measure('secured read during a 50-login storm', { url: `${base}/api/auth/me`, headers: authorization, seconds, connections: 4 });
  storm.postMessage('stop');
  const { logins, failures } = await done;
  await storm.terminate();
  const elapsed = (Date.now() - started) / 1000;
  return { read, logins_per_second: Number((logins / elapsed).toFixed(1)), login_failures: failures };
}

/** The same store read as GET /api/auth/me, with no security at all: the baseline. */
async function baselineRoutes(app: FastifyInstance, services: Services) {
  app.get<{ Params: { id: string } }>('/bench/raw/users/:id', { config: { auth: 'public' } }, async (request) => {
    const user = await findUserById(services.store.db, request.params.id);
    return user && { id: user.id, email: user.email, role: user.role, totp_enabled: user.totp_enabled === 1, created_at: user.created_at };
  });
}

async function main() {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-bench-'));
  const databaseUrl = process.env.BENCH_DATABASE_URL;
  // The storm's clients sit behind a trusted proxy on 127.0.0.1 (X-Forwarded-For).
  const app = await buildApp(testConfig({ dataDir, databaseUrl, trustProxy: ['127.0.0.1'] }), { extraRoutes: baselineRoutes });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const user = await signIn(app);
    // Alternate the two, twice, and keep each one's best round: a busy machine then skews both alike.
    const best = (a: Measurement, b: Measurement) => (b.requests_per_second > a.requests_per_second ? b : a);
    let baseline: Measurement | undefined;
    let secured: Measurement | undefined;
    for (let round = 0; round < 2; round++) {
      const b = await measure('baseline: raw store read, no security', { url: `${base}/bench/raw/users/${user.userId}`, seconds });
      const s = await measure('secured: GET /api/auth/me (bearer)', { url: `${base}/api/auth/me`, headers: user.authorization, seconds });
      baseline = baseline ? best(baseline, b) : b;
      secured = secured ? best(secured, s) : s;
    }
    const rows: Measurement[] = [baseline!, secured!];
    const storm = await loginStorm(app, base, user.authorization, seconds);
    rows.push(storm.read);
    printTable(rows);
    const cost = securityCost(rows[0]!, rows[1]!);
    console.log(`\nload average ${os.loadavg().map((n) => n.toFixed(1)).join(' ')} on ${os.availableParallelism()} cores`);
    console.log(`secured/baseline = ${cost.ratio}; security costs ${cost.cost_per_request_us} µs per request`);
    console.log(
      `login storm: ${storm.logins_per_second} logins/s (${storm.login_failures} failed); authenticated read p99 ${storm.read.latency_p99_ms} ms during it (UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? 4})`,
    );
    const file = writeResults(fileURLToPath(new URL('./results', import.meta.url)), {
      at: new Date().toISOString(),
      store: app.services.store.dialect,
      node: process.version,
      load_average: os.loadavg().map((n) => Number(n.toFixed(2))),
      seconds,
      measurements: rows,
      security_cost: cost,
      login_storm: { logins_per_second: storm.logins_per_second, login_failures: storm.login_failures, read_p99_ms: storm.read.latency_p99_ms },
    });
    console.log(`results: ${path.relative(process.cwd(), file)}`);
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
