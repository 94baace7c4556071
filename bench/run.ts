import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp, type Services } from '../src/app.js';
import { DEFAULT_LIMITS, parseRateLimits, testConfig } from '../src/config/config.js';
import { findUserById } from '../src/identity/store.js';
import { signIn } from '../test/support/users.js';
import { measure, printTable, securityCost, writeResults, type Measurement } from './harness.js';

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
  // Rate limiting stays in the secured path (the read is charged to the user on every request);
  // the budgets are raised so the benchmark measures the check, not 429 answers.
  const limits = { ...DEFAULT_LIMITS, rates: parseRateLimits('read=1000000000/60s,anonymous=1000000000/60s') };
  const app = await buildApp(testConfig({ dataDir, databaseUrl, limits }), { extraRoutes: baselineRoutes });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const user = await signIn(app);
    const rows: Measurement[] = [];
    rows.push(await measure('baseline: raw store read, no security', { url: `${base}/bench/raw/users/${user.userId}`, seconds }));
    rows.push(
      await measure('secured: GET /api/auth/me (bearer + rate limit)', { url: `${base}/api/auth/me`, headers: user.authorization, seconds }),
    );
    const apiKey = await app.services.apiKeys.create(
      { userId: user.userId, email: user.email, role: 'user', sessionId: user.sessionId, via: 'token', scopes: null },
      { name: 'bench', scopes: ['jobs:read'] },
    );
    rows.push(
      await measure('secured: GET /api/auth/me (API key + rate limit)', { url: `${base}/api/auth/me`, headers: { 'x-api-key': apiKey.key }, seconds }),
    );
    printTable(rows);
    const cost = securityCost(rows[0]!, rows[1]!);
    const apiKeyCost = securityCost(rows[0]!, rows[2]!);
    console.log(`\nsecured/baseline = ${cost.ratio}; security costs ${cost.cost_per_request_us} µs per request`);
    console.log(`API key/baseline = ${apiKeyCost.ratio}; an API key costs ${apiKeyCost.cost_per_request_us} µs per request`);
    const file = writeResults(fileURLToPath(new URL('./results', import.meta.url)), {
      at: new Date().toISOString(),
      store: app.services.store.dialect,
      node: process.version,
      seconds,
      measurements: rows,
      security_cost: cost,
      api_key_cost: apiKeyCost,
    });
    console.log(`results: ${path.relative(process.cwd(), file)}`);
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
