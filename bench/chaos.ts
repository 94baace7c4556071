/**
 * `npm run chaos`: Celforge under faults, with real processes on loopback, in a few minutes.
 *
 * 1. scale-out: an API and two workers on PostgreSQL and Redis (each reached through a TCP proxy
 *    this script can cut), under a steady 5 jobs/s from 3 users: a worker kill -9, a Redis outage,
 *    a PostgreSQL outage (every connection reset, new ones refused), a SIGTERM of the API.
 * 2. embedded: 60 jobs from 3 users on SQLite with two kill -9 of the server; the audit chain checked.
 * 3. a full asset disk (a real tmpfs, where the machine lets us mount one).
 *
 * For every accepted job: did it end exactly once (lost / doubled / stuck); per fault: 5xx answers
 * (and whether each was problem+json), how long they lasted, and the time from the dependency's
 * return to /ready answering 200. The report goes to bench/results/chaos-<time>.json and .md.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { openStore, type Store } from '../src/db/database.js';
import { mintToken, renderedBy, startWorker, type WorkerProcess } from '../test/production/real-process.js';
import { runCli } from '../test/support/cli.js';
import { createTestStorage, type TestStorage } from '../test/support/dialects.js';
import { startServer, type RunningServer } from '../test/support/server.js';
import { startTcpProxy } from '../test/support/tcp-proxy.js';
import { canMountTmpfs, mountTmpfs } from '../test/support/tmpfs.js';

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROOMY = {
  CELFORGE_RATE_LIMITS: 'generation=100000/60s,read=100000/60s,write=100000/60s,anonymous=100000/60s',
  CELFORGE_QUOTA_ACTIVE_JOBS: '100000',
  CELFORGE_QUOTA_JOBS_PER_DAY: '100000',
};
const TERMINAL = ['succeeded', 'failed', 'canceled'];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const t0 = Date.now();
const log = (text: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${text}`);

interface Answer {
  at: number;
  /** 0: no HTTP answer (connection refused or reset, timeout) */
  status: number;
  problem: boolean;
  /** the problem type of a 5xx */
  type?: string;
  jobId?: string;
}

/** Steady submissions at `perSecond` from several users to whatever URL `target()` names now. */
function steadyLoad(target: () => string, tokens: string[], perSecond: number) {
  const answers: Answer[] = [];
  let n = 0;
  const inFlight = new Set<Promise<void>>();
  const timer = setInterval(() => {
    const i = n++;
    const headers = { authorization: `Bearer ${tokens[i % tokens.length]}`, 'content-type': 'application/json' };
    const body = JSON.stringify(
      i % 10 === 9 ? { prompt: `chaos ${i}`, type: 'video', width: 64, height: 64, frames: 4 } : { prompt: `chaos ${i}`, type: 'image', width: 64, height: 64, steps: 4 },
    );
    const at = Date.now();
    const request = fetch(`${target()}/api/anime/generate`, { method: 'POST', headers, body, signal: AbortSignal.timeout(15_000) })
      .then(async (response) => {
        const problem = (response.headers.get('content-type') ?? '').startsWith('application/problem+json');
        const json = (await response.json().catch(() => ({}))) as { job_id?: string; type?: string };
        answers.push({
          at,
          status: response.status,
          problem,
          type: response.status >= 500 ? json.type?.replace('urn:celforge:problem:', '') : undefined,
          jobId: response.status === 202 ? json.job_id : undefined,
        });
      })
      .catch(() => void answers.push({ at, status: 0, problem: false }))
      .finally(() => inFlight.delete(request));
    inFlight.add(request);
  }, 1000 / perSecond);
  return {
    answers,
    async stop() {
      clearInterval(timer);
      await Promise.all(inFlight);
    },
  };
}

/** /ready polled every 250 ms. */
function readyProbe(target: () => string) {
  const samples: { at: number; status: number }[] = [];
  const timer = setInterval(() => {
    const at = Date.now();
    fetch(`${target()}/api/anime/ready`, { signal: AbortSignal.timeout(2000) })
      .then((response) => void samples.push({ at, status: response.status }))
      .catch(() => void samples.push({ at, status: 0 }));
  }, 250);
  return { samples, stop: () => clearInterval(timer) };
}

interface Fault {
  name: string;
  start: number;
  /** when the dependency came back (or the process was restarted) */
  restored: number;
  /** the window counted for this fault ends when the next one starts */
  end: number;
  extra?: Record<string, unknown>;
}

function faultFigures(fault: Fault, answers: Answer[], ready: { at: number; status: number }[]) {
  const inWindow = answers.filter((a) => a.at >= fault.start && a.at < fault.end);
  const fives = inWindow.filter((a) => a.status >= 500);
  const refused = inWindow.filter((a) => a.status === 0);
  const firstReady = ready.find((s) => s.at >= fault.restored && s.status === 200);
  const outageSeen = ready.some((s) => s.at >= fault.start && s.at <= fault.restored && s.status !== 200);
  return {
    fault: fault.name,
    outage_s: Number(((fault.restored - fault.start) / 1000).toFixed(1)),
    submissions: inWindow.length,
    accepted: inWindow.filter((a) => a.status === 202).length,
    '5xx': fives.length,
    '5xx_problem_json': fives.filter((a) => a.problem).length,
    '5xx_statuses': [...new Set(fives.map((a) => a.status))],
    '5xx_types': [...new Set(fives.map((a) => a.type ?? 'not a problem'))],
    '5xx_duration_s': fives.length ? Number(((fives.at(-1)!.at - fives[0]!.at) / 1000).toFixed(1)) : 0,
    '5xx_after_restore': fives.filter((a) => a.at > fault.restored + 1000).length,
    no_answer: refused.length,
    ready_reported_outage: outageSeen,
    time_to_ready_s: firstReady ? Number(((firstReady.at - fault.restored) / 1000).toFixed(1)) : null,
    ...fault.extra,
  };
}

/** What became of every accepted job: polled until all ended or `timeoutMs` passed. */
async function outcome(store: Store, ids: string[], logs: string[], timeoutMs: number) {
  const until = Date.now() + timeoutMs;
  let rows: { id: string; status: string; attempts: number; error: string | null }[] = [];
  for (;;) {
    rows = [];
    for (let i = 0; i < ids.length; i += 500) {
      rows.push(...(await store.db.selectFrom('jobs').select(['id', 'status', 'attempts', 'error']).where('id', 'in', ids.slice(i, i + 500)).execute()));
    }
    if (rows.every((row) => TERMINAL.includes(row.status)) || Date.now() > until) break;
    await sleep(500);
  }
  const rendered = new Map<string, number>();
  for (const id of logs.flatMap(renderedBy)) rendered.set(id, (rendered.get(id) ?? 0) + 1);
  const assets = new Map<string, number>();
  for (let i = 0; i < ids.length; i += 500) {
    for (const row of await store.db.selectFrom('assets').select('job_id').where('job_id', 'in', ids.slice(i, i + 500)).execute()) {
      assets.set(row.job_id, (assets.get(row.job_id) ?? 0) + 1);
    }
  }
  const failed = rows.filter((row) => row.status === 'failed');
  return {
    accepted: ids.length,
    succeeded: rows.filter((row) => row.status === 'succeeded').length,
    failed: failed.length,
    failed_errors: [...new Set(failed.map((row) => row.error))],
    lost: ids.length - rows.length,
    stuck: rows.filter((row) => !TERMINAL.includes(row.status)).length,
    doubled: [...rendered.values()].filter((count) => count > 1).length,
    succeeded_without_one_asset: rows.filter((row) => row.status === 'succeeded' && (assets.get(row.id) ?? 0) !== 1).length,
    rerun_after_fault: rows.filter((row) => row.attempts > 1).length,
  };
}

async function scaleOut() {
  log('scale-out: PostgreSQL + Redis through proxies, an API and two workers');
  const storage = await createTestStorage('postgres');
  const prefix = `cf-chaos-${randomBytes(4).toString('hex')}:`;
  const pgTarget = new URL(storage.databaseUrl!);
  const pgProxy = await startTcpProxy(pgTarget.hostname, Number(pgTarget.port || 5432));
  const redisTarget = new URL(REDIS_URL);
  const redisProxy = await startTcpProxy(redisTarget.hostname, Number(redisTarget.port || 6379));
  const proxied = { dataDir: storage.dataDir, databaseUrl: pgProxy.url(storage.databaseUrl!) };
  const env = {
    ...ROOMY,
    REDIS_URL: redisProxy.url(REDIS_URL),
    CELFORGE_REDIS_PREFIX: prefix,
    CELFORGE_JOB_LEASE: '3s',
    CELFORGE_PREVIEW_STEP_MS: '5',
    CELFORGE_SHUTDOWN_GRACE: '5s',
  };
  const store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
  const logs: (() => string)[] = [];
  const processes: { stop(signal?: NodeJS.Signals): Promise<number | null> }[] = [];
  const startApi = async () => {
    const api = await startServer(proxied, { args: ['serve', '--only', 'api'], env: { ...env, CELFORGE_LOG_LEVEL: 'info' } });
    processes.push(api);
    return api;
  };
  const startOneWorker = async () => {
    const worker = await startWorker(proxied, { ...env, CELFORGE_LOG_LEVEL: 'info' });
    logs.push(worker.output);
    processes.push(worker);
    return worker;
  };
  let api: RunningServer = await startApi();
  const workers: WorkerProcess[] = [await startOneWorker(), await startOneWorker()];
  const tokens = [await mintToken(store, storage), await mintToken(store, storage), await mintToken(store, storage)];
  const target = () => api.url;
  const ready = readyProbe(target);
  const load = steadyLoad(target, tokens, 5);
  const faults: Fault[] = [];
  const mark = (name: string, start: number, restored: number, extra?: Record<string, unknown>) => {
    if (faults.length) faults.at(-1)!.end = start;
    faults.push({ name, start, restored, end: Number.MAX_SAFE_INTEGER, extra });
  };
  try {
    await sleep(8000);
    log('fault: kill -9 of a worker (restarted 5 s later)');
    let start = Date.now();
    await workers[0]!.stop('SIGKILL');
    await sleep(5000);
    workers[0] = await startOneWorker();
    mark('worker kill -9', start, Date.now());
    await sleep(10_000);

    log('fault: Redis unreachable for 5 s');
    start = Date.now();
    redisProxy.cut();
    await sleep(5000);
    redisProxy.restore();
    mark('Redis outage', start, Date.now());
    await sleep(12_000);

    log('fault: PostgreSQL unreachable for 5 s (every connection reset)');
    start = Date.now();
    pgProxy.cut();
    await sleep(5000);
    pgProxy.restore();
    mark('PostgreSQL outage', start, Date.now());
    await sleep(12_000);

    log('fault: SIGTERM of the API under load (restarted when it has exited)');
    start = Date.now();
    const code = await api.stop('SIGTERM');
    const exitMs = Date.now() - start;
    api = await startApi();
    mark('API SIGTERM + restart', start, Date.now(), { exit_code: code, exit_ms: exitMs });
    await sleep(8000);
  } finally {
    await load.stop();
    ready.stop();
  }
  log('load stopped; waiting for every accepted job to end');
  const ids = load.answers.filter((a) => a.jobId).map((a) => a.jobId!);
  const jobs = await outcome(store, ids, logs.map((l) => l()), 60_000);
  const figures = faults.map((fault) => faultFigures(fault, load.answers, ready.samples));
  const baseline = load.answers.filter((a) => faults.length && a.at < faults[0]!.start);
  await Promise.all(processes.map((p) => p.stop('SIGKILL')));
  await pgProxy.close();
  await redisProxy.close();
  await store.close();
  await storage.drop();
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix.replace(/:$/, '')}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  const statuses: Record<string, number> = {};
  for (const answer of load.answers) statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
  return {
    submissions: load.answers.length,
    statuses,
    baseline_before_faults: { submissions: baseline.length, '5xx': baseline.filter((a) => a.status >= 500).length, no_answer: baseline.filter((a) => a.status === 0).length },
    jobs,
    faults: figures,
  };
}

async function embedded() {
  log('embedded: 60 jobs on SQLite, two kill -9 of the server');
  const storage = await createTestStorage('sqlite');
  const env = { ...ROOMY, CELFORGE_LOG_LEVEL: 'info', CELFORGE_JOB_LEASE: '2s', CELFORGE_PREVIEW_STEP_MS: '20' };
  const store = openStore({ dataDir: storage.dataDir });
  const logs: string[] = [];
  let server = await startServer(storage, { env });
  const tokens = [await mintToken(store, storage), await mintToken(store, storage), await mintToken(store, storage)];
  const ids: string[] = [];
  let refused = 0;
  const submit = async (i: number) => {
    const response = await fetch(`${server.url}/api/anime/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens[i % 3]}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: `embedded ${i}`, type: 'image', width: 64, height: 64, steps: 8 }),
    }).catch(() => null);
    if (response?.status === 202) ids.push(((await response.json()) as { job_id: string }).job_id);
    else refused++;
  };
  const kills: number[] = [];
  for (let round = 0; round < 3; round++) {
    await Promise.all(Array.from({ length: 20 }, (_, k) => submit(round * 20 + k)));
    if (round < 2) {
      await sleep(1500);
      logs.push(server.output());
      await server.stop('SIGKILL');
      kills.push(Date.now());
      const restart = Date.now();
      server = await startServer(storage, { env });
      kills[kills.length - 1] = Date.now() - restart;
    }
  }
  const result = await (async () => {
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      const open = await store.db.selectFrom('jobs').select('id').where('status', 'in', ['queued', 'running']).execute();
      if (open.length === 0) break;
      await sleep(500);
    }
    logs.push(server.output());
    return outcome(store, ids, logs, 1000);
  })();
  await server.stop('SIGTERM');
  const verify = await runCli(['audit', 'verify'], storage);
  await store.close();
  await storage.drop();
  return { ...result, refused_submissions: refused, restart_to_listening_s: kills.map((ms) => Number((ms / 1000).toFixed(1))), audit_verify: verify.code === 0 ? verify.stdout.trim() : `FAILED: ${verify.stderr.trim()}` };
}

async function fullDisk() {
  if (!canMountTmpfs) return { skipped: 'cannot mount a tmpfs on this machine' };
  log('full disk: the asset directory on a 512 KiB tmpfs, filled up');
  const storage = await createTestStorage('sqlite');
  const disk = mountTmpfs(path.join(storage.dataDir, 'assets'), '512k');
  const store = openStore({ dataDir: storage.dataDir });
  const server = await startServer(storage, { env: { ...ROOMY, CELFORGE_PREVIEW_STEP_MS: '2' } });
  try {
    const headers = { authorization: `Bearer ${await mintToken(store, storage)}`, 'content-type': 'application/json' };
    disk.fill();
    await sleep(1200);
    const readyWhileFull = (await fetch(`${server.url}/api/anime/ready`)).status;
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const response = await fetch(`${server.url}/api/anime/generate`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ prompt: `full ${i}`, type: 'image', width: 64, height: 64, steps: 2 }),
      });
      if (response.status === 202) ids.push(((await response.json()) as { job_id: string }).job_id);
    }
    const statuses: number[] = [];
    const until = Date.now() + 60_000;
    let rows: { status: string; error: string | null }[] = [];
    while (Date.now() < until) {
      statuses.push((await fetch(`${server.url}/api/anime/jobs`, { headers })).status);
      rows = await store.db.selectFrom('jobs').select(['status', 'error']).where('id', 'in', ids).execute();
      if (rows.every((row) => TERMINAL.includes(row.status))) break;
      await sleep(500);
    }
    disk.free();
    await sleep(1200);
    const readyAfter = (await fetch(`${server.url}/api/anime/ready`)).status;
    return {
      ready_while_full: readyWhileFull,
      ready_after_freeing: readyAfter,
      jobs: rows,
      reads_while_full: { total: statuses.length, non_200: statuses.filter((s) => s !== 200).length },
    };
  } finally {
    await server.stop('SIGKILL');
    await store.close();
    disk.unmount();
    await storage.drop();
  }
}

function markdown(report: Record<string, any>): string {
  const lines = [`# Celforge chaos run ${report.started}`, '', `${report.duration_s} s in all; loopback only; real processes.`, ''];
  const s = report.scale_out;
  lines.push('## Scale-out (API + 2 workers, PostgreSQL + Redis through proxies, 5 jobs/s from 3 users)', '');
  lines.push(`Answers by status (0: no answer): ${JSON.stringify(s.statuses)}.`, '');
  lines.push(`Submissions: ${s.submissions}. Before any fault: ${s.baseline_before_faults.submissions} submissions, ${s.baseline_before_faults['5xx']} 5xx, ${s.baseline_before_faults.no_answer} without answer.`, '');
  lines.push('| accepted | succeeded | failed | lost | doubled | stuck | re-run after a fault |', '|---|---|---|---|---|---|---|');
  lines.push(`| ${s.jobs.accepted} | ${s.jobs.succeeded} | ${s.jobs.failed} | ${s.jobs.lost} | ${s.jobs.doubled} | ${s.jobs.stuck} | ${s.jobs.rerun_after_fault} |`, '');
  lines.push('| fault | outage s | submissions | 5xx | of them problem+json | 5xx for s | 5xx > 1 s after return | no answer | /ready said so | time to ready s |', '|---|---|---|---|---|---|---|---|---|---|');
  for (const f of s.faults) {
    lines.push(`| ${f.fault} | ${f.outage_s} | ${f.submissions} | ${f['5xx']} ${f['5xx_types'].length ? `(${f['5xx_statuses'].join(', ')}: ${f['5xx_types'].join(', ')})` : ''} | ${f['5xx_problem_json']} | ${f['5xx_duration_s']} | ${f['5xx_after_restore']} | ${f.no_answer} | ${f.ready_reported_outage} | ${f.time_to_ready_s} |`);
  }
  lines.push('', '## Embedded (SQLite, 60 jobs, two kill -9)', '', '```json', JSON.stringify(report.embedded, null, 2), '```', '');
  lines.push('## Full asset disk (tmpfs)', '', '```json', JSON.stringify(report.full_disk, null, 2), '```', '');
  return `${lines.join('\n')}\n`;
}

const started = new Date().toISOString();
const report: Record<string, unknown> = { started };
report.scale_out = await scaleOut();
report.embedded = await embedded();
report.full_disk = await fullDisk();
report.duration_s = Math.round((Date.now() - t0) / 1000);
const directory = fileURLToPath(new URL('./results', import.meta.url));
mkdirSync(directory, { recursive: true });
const stem = path.join(directory, `chaos-${started.replace(/[:.]/g, '-')}`);
writeFileSync(`${stem}.json`, `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(`${stem}.md`, markdown(report));
console.log(markdown(report));
log(`report: ${stem}.json and .md`);
process.exit(0);
