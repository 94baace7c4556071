/**
 * `npm run chaos`: Celforge under faults, with real processes on loopback (the built `dist/`, as
 * `npm start` runs it; the npm script builds first).
 *
 * 1. scale-out: an API and two workers on a PostgreSQL and a Redis of this run's own (started in
 *    temporary directories, never the shared servers), under a steady 5 jobs/s from 3 users: a
 *    worker kill -9, a real Redis restart, a real PostgreSQL restart, a SIGTERM of a worker with
 *    jobs running and a SIGTERM of the API with requests in flight.
 * 2. embedded: CHAOS_JOBS (300) jobs from 3 users on SQLite with two kill -9 of the server; the
 *    audit chain checked.
 * 3. a full asset disk (a real tmpfs, where the machine lets us mount one).
 * 4. a soak: CHAOS_SOAK_SECONDS (600) of mixed load on one server, RSS and p99 per minute.
 *
 * CHAOS_PARTS (e.g. "scale-out,soak") runs some parts only. For every accepted job: did it end
 * exactly once (lost / doubled / stuck); per fault: 5xx answers (and whether each was
 * problem+json), whether any came for a request sent after the dependency was back, and the time
 * from its return to /ready answering 200. The report goes to bench/results/chaos-<time>.json and .md.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore, type Store } from '../src/db/database.js';
import { mintToken, renderedBy, startWorker, type WorkerProcess } from '../test/production/real-process.js';
import { runCli } from '../test/support/cli.js';
import { startServer, type RunningServer } from '../test/support/server.js';
import { canMountTmpfs, mountTmpfs } from '../test/support/tmpfs.js';
import { markdown } from './chaos-report.js';
import { soak } from './chaos-soak.js';
import { connectInspector, inspectorUrl } from './inspector.js';
import { createDatabase, startPrivatePostgres, startPrivateRedis } from './private-servers.js';

const PARTS = new Set((process.env.CHAOS_PARTS ?? 'scale-out,embedded,disk,soak').split(',').map((part) => part.trim()));
const EMBEDDED_JOBS = Number(process.env.CHAOS_JOBS ?? 300);
const SOAK_SECONDS = Number(process.env.CHAOS_SOAK_SECONDS ?? 600);
/** a folder for the soak's heap snapshots (first, middle and last minute); none without it */
const SOAK_SNAPSHOTS = process.env.CHAOS_SOAK_SNAPSHOTS;
/** "0": no full GC forced at each minute's end (the RSS as V8 alone leaves it) */
const SOAK_FORCE_GC = process.env.CHAOS_SOAK_FORCE_GC !== '0';
const ENTRY = 'built' as const;
/** A data dir of its own for an embedded (SQLite) server, removed by `drop`. */
function sqliteStorage() {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-chaos-'));
  return { dataDir, drop: async () => rmSync(dataDir, { recursive: true, force: true }) };
}

const ROOMY = {
  CELFORGE_RATE_LIMITS: 'generation=100000/60s,read=100000/60s,write=100000/60s,anonymous=100000/60s',
  CELFORGE_QUOTA_ACTIVE_JOBS: '100000',
  CELFORGE_QUOTA_JOBS_PER_DAY: '100000',
};
const TERMINAL = ['succeeded', 'failed', 'canceled'];
/** "202 ×8, ECONNREFUSED ×2" */
function tally(outcomes: (number | string)[]): string {
  const counts = new Map<number | string, number>();
  for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
  return [...counts].map(([outcome, count]) => `${outcome} ×${count}`).join(', ');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const t0 = Date.now();
const log = (text: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${text}`);

interface Answer {
  at: number;
  done: number;
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
  const inFlight = new Set<Promise<number | string>>();
  /** resolves to the status, or to why there was none (ECONNREFUSED: it never reached the server) */
  const submit = (token: string): Promise<number | string> => {
    const i = n++;
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
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
          done: Date.now(),
          status: response.status,
          problem,
          type: response.status >= 500 ? json.type?.replace('urn:celforge:problem:', '') : undefined,
          jobId: response.status === 202 ? json.job_id : undefined,
        });
        return response.status;
      })
      .catch((error: Error & { cause?: { code?: string } }) => {
        answers.push({ at, done: Date.now(), status: 0, problem: false });
        return error.cause?.code ?? error.name;
      })
      .finally(() => inFlight.delete(request));
    inFlight.add(request);
    return request;
  };
  const timer = setInterval(() => void submit(tokens[n % tokens.length]!), 1000 / perSecond);
  return {
    answers,
    submitNow: submit,
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
  // requests already in flight when the fault began, and whether each was answered
  const inFlight = answers.filter((a) => a.at < fault.start && a.done > fault.start);
  return {
    fault: fault.name,
    outage_s: Number(((fault.restored - fault.start) / 1000).toFixed(1)),
    submissions: inWindow.length,
    accepted: inWindow.filter((a) => a.status === 202).length,
    '5xx': fives.length,
    '5xx_problem_json': fives.filter((a) => a.problem).length,
    '5xx_statuses': [...new Set(fives.map((a) => a.status))],
    '5xx_types': [...new Set(fives.map((a) => a.type ?? 'not a problem'))],
    '5xx_duration_s': fives.length ? Number(((fives.at(-1)!.done - fives[0]!.at) / 1000).toFixed(1)) : 0,
    // a 5xx for a request sent after the dependency was back is one too many
    '5xx_sent_after_return': fives.filter((a) => a.at > fault.restored).length,
    '5xx_sent_after_return_at_s': fives.filter((a) => a.at > fault.restored).map((a) => Number(((a.at - fault.restored) / 1000).toFixed(2))),
    last_5xx_after_return_s: fives.length ? Number(((fives.at(-1)!.done - fault.restored) / 1000).toFixed(1)) : null,
    no_answer: refused.length,
    in_flight_at_fault: inFlight.length,
    in_flight_unanswered: inFlight.filter((a) => a.status === 0).length,
    ready_reported_outage: outageSeen,
    time_to_ready_s: firstReady ? Number(((firstReady.at - fault.restored) / 1000).toFixed(1)) : null,
    ...fault.extra,
  };
}

/** What became of every accepted job: polled until all ended or `timeoutMs` passed. */
async function outcome(store: Store, ids: string[], logs: () => string[], timeoutMs: number) {
  const until = Date.now() + timeoutMs;
  let rows: { id: string; type: string; status: string; attempts: number; error: string | null }[] = [];
  for (;;) {
    rows = [];
    for (let i = 0; i < ids.length; i += 500) {
      rows.push(...(await store.db.selectFrom('jobs').select(['id', 'type', 'status', 'attempts', 'error']).where('id', 'in', ids.slice(i, i + 500)).execute()));
    }
    if (rows.every((row) => TERMINAL.includes(row.status)) || Date.now() > until) break;
    await sleep(500);
  }
  const rendered = new Map<string, number>();
  for (const id of logs().flatMap(renderedBy)) rendered.set(id, (rendered.get(id) ?? 0) + 1);
  const assets = new Map<string, number>();
  for (let i = 0; i < ids.length; i += 500) {
    for (const row of await store.db.selectFrom('assets').select('job_id').where('job_id', 'in', ids.slice(i, i + 500)).execute()) {
      assets.set(row.job_id, (assets.get(row.job_id) ?? 0) + 1);
    }
  }
  const audited = new Map<string, number>();
  for (let i = 0; i < ids.length; i += 500) {
    const rows = await store.db.selectFrom('audit_log').select('target').where('action', '=', 'job.create').where('target', 'in', ids.slice(i, i + 500)).execute();
    for (const row of rows) audited.set(row.target!, (audited.get(row.target!) ?? 0) + 1);
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
    // an image has one asset, a video its frames and perhaps an MP4
    succeeded_without_its_assets: rows.filter((row) => row.status === 'succeeded' && (row.type === 'image' ? assets.get(row.id) !== 1 : !assets.get(row.id))).length,
    rerun_after_fault: rows.filter((row) => row.attempts > 1).length,
    without_one_create_audit_row: ids.filter((id) => audited.get(id) !== 1).length,
  };
}

async function scaleOut() {
  log('scale-out: a private PostgreSQL and Redis, an API and two workers');
  const redis = await startPrivateRedis();
  const postgres = await startPrivatePostgres();
  const storage = { dataDir: mkdtempSync(path.join(tmpdir(), 'celforge-chaos-')), databaseUrl: await createDatabase(postgres, 'celforge_chaos') };
  const env = {
    ...ROOMY,
    REDIS_URL: redis.url,
    CELFORGE_REDIS_PREFIX: `cf-chaos-${randomBytes(4).toString('hex')}:`,
    CELFORGE_JOB_LEASE: '3s',
    CELFORGE_PREVIEW_STEP_MS: '100',
    CELFORGE_SHUTDOWN_GRACE: '5s',
    CELFORGE_LOG_LEVEL: 'info',
  };
  const store = openStore(storage);
  const logs: (() => string)[] = [];
  const processes: { stop(signal?: NodeJS.Signals): Promise<number | null> }[] = [];
  const startApi = async () => {
    const api = await startServer(storage, { args: ['serve', '--only', 'api'], env, entry: ENTRY });
    processes.push(api);
    return api;
  };
  const startOneWorker = async () => {
    const worker = await startWorker(storage, env, ENTRY);
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
  let runningAtFault = 0;
  const faultBegins = async (what: string) => {
    log(`fault: ${what}`);
    runningAtFault = (await store.db.selectFrom('jobs').select('id').where('status', '=', 'running').execute()).length;
    return Date.now();
  };
  const mark = (name: string, start: number, restored: number, extra?: Record<string, unknown>) => {
    if (faults.length) faults.at(-1)!.end = start;
    faults.push({ name, start, restored, end: Number.MAX_SAFE_INTEGER, extra: { jobs_running_at_fault: runningAtFault, load_1m: Number(loadavg()[0]!.toFixed(2)), ...extra } });
  };
  /** submissions sent together just before a signal, so that some are in flight when it lands */
  const burst = () => Array.from({ length: 10 }, (_, i) => load.submitNow(tokens[i % tokens.length]!));
  try {
    await sleep(8000);
    let start = await faultBegins('kill -9 of a worker (restarted 5 s later)');
    await workers[0]!.stop('SIGKILL');
    await sleep(5000);
    workers[0] = await startOneWorker();
    mark('worker kill -9', start, Date.now());
    await sleep(10_000);

    start = await faultBegins('Redis restart (SIGTERM, 5 s down, started again)');
    await redis.stop();
    await sleep(5000);
    await redis.start();
    mark('Redis restart', start, Date.now());
    await sleep(15_000);

    start = await faultBegins('PostgreSQL restart (fast shutdown, 5 s down, started again)');
    await postgres.stop();
    await sleep(5000);
    await postgres.start();
    mark('PostgreSQL restart', start, Date.now());
    await sleep(15_000);

    start = await faultBegins('SIGTERM of a worker with jobs running (restarted when it has exited)');
    let code = await workers[1]!.stop('SIGTERM');
    let exitMs = Date.now() - start;
    workers[1] = await startOneWorker();
    mark('worker SIGTERM + restart', start, Date.now(), { exit_code: code, exit_ms: exitMs });
    await sleep(8000);

    start = await faultBegins('SIGTERM of the API with requests in flight (restarted when it has exited)');
    const inFlight = burst();
    await sleep(30);
    code = await api.stop('SIGTERM');
    exitMs = Date.now() - start;
    const burstAnswers = await Promise.all(inFlight);
    api = await startApi();
    mark('API SIGTERM + restart', start, Date.now(), {
      exit_code: code,
      exit_ms: exitMs,
      burst_at_signal: tally(burstAnswers),
    });
    await sleep(8000);
  } finally {
    await load.stop();
    ready.stop();
  }
  log('load stopped; waiting for every accepted job to end');
  const ids = load.answers.filter((a) => a.jobId).map((a) => a.jobId!);
  const jobs = await outcome(store, ids, () => logs.map((l) => l()), 90_000);
  const figures = faults.map((fault) => faultFigures(fault, load.answers, ready.samples));
  const baseline = load.answers.filter((a) => faults.length && a.at < faults[0]!.start);
  await Promise.all(processes.map((p) => p.stop('SIGKILL')));
  await store.close();
  await redis.destroy();
  await postgres.destroy();
  rmSync(storage.dataDir, { recursive: true, force: true });
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
  log(`embedded: ${EMBEDDED_JOBS} jobs on SQLite, two kill -9 of the server`);
  const storage = sqliteStorage();
  const env = { ...ROOMY, CELFORGE_LOG_LEVEL: 'info', CELFORGE_JOB_LEASE: '2s', CELFORGE_PREVIEW_STEP_MS: '25', CELFORGE_SHUTDOWN_GRACE: '10s' };
  const store = openStore({ dataDir: storage.dataDir });
  const logs: string[] = [];
  const began = Date.now();
  let server = await startServer(storage, { env, entry: ENTRY });
  const firstStartMs = Date.now() - began;
  const tokens = [await mintToken(store, storage), await mintToken(store, storage), await mintToken(store, storage)];
  const ids: string[] = [];
  let refused = 0;
  const submit = async (i: number): Promise<number | string> => {
    let failure = '';
    const response = await fetch(`${server.url}/api/anime/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens[i % 3]}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: `embedded ${i}`, type: 'image', width: 64, height: 64, steps: 8 }),
    }).catch((error: Error & { cause?: { code?: string } }) => void (failure = error.cause?.code ?? error.name));
    if (response?.status === 202) ids.push(((await response.json()) as { job_id: string }).job_id);
    else refused++;
    return response?.status ?? failure;
  };
  const restarts: { signal: string; running_at_signal: number; exit_code: number | null; exit_s: number; signal_to_listening_s: number; burst_at_signal?: string; load_1m: number }[] = [];
  const restart = async (signal: NodeJS.Signals, inFlight: Promise<number | string>[] = []) => {
    const running = await store.db.selectFrom('jobs').select('id').where('status', '=', 'running').execute();
    const signalled = Date.now();
    const code = await server.stop(signal);
    const exitS = Number(((Date.now() - signalled) / 1000).toFixed(2));
    const burst = await Promise.all(inFlight);
    logs.push(server.output());
    server = await startServer(storage, { env, entry: ENTRY });
    restarts.push({
      signal,
      running_at_signal: running.length,
      exit_code: code,
      exit_s: exitS,
      signal_to_listening_s: Number(((Date.now() - signalled) / 1000).toFixed(2)),
      ...(inFlight.length && { burst_at_signal: tally(burst) }),
      load_1m: Number(loadavg()[0]!.toFixed(2)),
    });
  };
  const round = Math.ceil(EMBEDDED_JOBS / 3);
  for (let r = 0; r < 3; r++) {
    const count = Math.min(round, EMBEDDED_JOBS - r * round);
    // the last round keeps 10 to send together just before the SIGTERM
    const batch = r === 2 ? count - 10 : count;
    // 10 at a time, as a few busy users would
    for (let i = 0; i < batch; i += 10) await Promise.all(Array.from({ length: Math.min(10, batch - i) }, (_, k) => submit(r * round + i + k)));
    await sleep(1500);
    if (r < 2) await restart('SIGKILL');
    else {
      const inFlight = Array.from({ length: 10 }, (_, k) => submit(r * round + batch + k));
      await sleep(30);
      await restart('SIGTERM', inFlight);
    }
  }
  const result = await outcome(store, ids, () => [...logs, server.output()], 300_000);
  const allEndedS = Number(((Date.now() - began) / 1000).toFixed(1));
  await server.stop('SIGTERM');
  const verify = await runCli(['audit', 'verify'], storage);
  await store.close();
  await storage.drop();
  return {
    ...result,
    refused_submissions: refused,
    first_start_s: Number((firstStartMs / 1000).toFixed(2)),
    restarts,
    all_ended_after_s: allEndedS,
    audit_verify: verify.code === 0 ? verify.stdout.trim() : `FAILED: ${verify.stderr.trim()}`,
  };
}

interface Submission {
  status: number;
  problem: boolean;
  type?: string;
  jobId?: string;
}

async function submitOne(url: string, token: string, prompt: string, steps: number): Promise<Submission> {
  const response = await fetch(`${url}/api/anime/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, type: 'image', width: 64, height: 64, steps }),
  }).catch(() => null);
  if (!response) return { status: 0, problem: false };
  const json = (await response.json().catch(() => ({}))) as { job_id?: string; type?: string };
  return {
    status: response.status,
    problem: (response.headers.get('content-type') ?? '').startsWith('application/problem+json'),
    type: json.type?.replace('urn:celforge:problem:', ''),
    jobId: response.status === 202 ? json.job_id : undefined,
  };
}

/**
 * A disk that fills up under a running server: only the asset directory, or the whole data dir
 * (the SQLite store, its journal and the audit trail with it). Jobs are running when it fills;
 * more are submitted while it is full; then room is made again.
 */
async function fullDisk(where: 'assets' | 'data dir') {
  if (!canMountTmpfs) return { skipped: 'cannot mount a tmpfs on this machine' };
  log(`full disk: ${where === 'assets' ? 'the asset directory' : 'the whole data dir'} on a tmpfs, filled up`);
  const storage = sqliteStorage();
  const disk = mountTmpfs(where === 'assets' ? path.join(storage.dataDir, 'assets') : storage.dataDir, where === 'assets' ? '512k' : '64m');
  const store = openStore({ dataDir: storage.dataDir });
  const server = await startServer(storage, { env: { ...ROOMY, CELFORGE_PREVIEW_STEP_MS: '100' }, entry: ENTRY });
  const get = (route: string, token: string) =>
    fetch(`${server.url}${route}`, { headers: { authorization: `Bearer ${token}` } })
      .then((response) => response.status)
      .catch(() => 0);
  try {
    const token = await mintToken(store, storage);
    const before = await Promise.all([0, 1, 2].map((i) => submitOne(server.url, token, `before ${i}`, 20)));
    await sleep(500);
    disk.fill();
    await sleep(1200);
    const readyWhileFull = await get('/api/anime/ready', token);
    const whileFull = await Promise.all([0, 1, 2].map((i) => submitOne(server.url, token, `while full ${i}`, 2)));
    const reads: number[] = [];
    // The asset disk stays full until the jobs have ended (a save waits for room, the job is run
    // again later, then it fails); the full data dir for 15 s, then the jobs go on.
    const ended = async () => {
      const ids = [...before, ...whileFull].filter((s) => s.jobId).map((s) => s.jobId!);
      const rows = await store.db.selectFrom('jobs').select('status').where('id', 'in', ids).execute();
      return rows.every((row) => TERMINAL.includes(row.status));
    };
    const fullSince = Date.now();
    while (where === 'assets' ? Date.now() - fullSince < 90_000 && !(await ended()) : Date.now() - fullSince < 15_000) {
      reads.push(await get('/api/anime/jobs', token), await get(`/api/anime/jobs/${before[0]!.jobId}`, token), await get('/api/anime/gallery', token));
      await sleep(250);
    }
    const fullS = Number(((Date.now() - fullSince) / 1000).toFixed(1));
    disk.free();
    const freed = Date.now();
    let readyAfterS: number | null = null;
    while (Date.now() - freed < 20_000) {
      if ((await get('/api/anime/ready', token)) === 200) {
        readyAfterS = Number(((Date.now() - freed) / 1000).toFixed(1));
        break;
      }
      await sleep(250);
    }
    const after = await submitOne(server.url, token, 'after freeing', 2);
    const accepted = [...before, ...whileFull, after].filter((s) => s.jobId).map((s) => s.jobId!);
    const until = Date.now() + 60_000;
    let rows: { id: string; prompt: string; status: string; error: string | null }[] = [];
    while (Date.now() < until) {
      rows = await store.db.selectFrom('jobs').select(['id', 'prompt', 'status', 'error']).where('id', 'in', accepted).execute();
      if (rows.length === accepted.length && rows.every((row) => TERMINAL.includes(row.status))) break;
      await sleep(500);
    }
    const describe = (s: Submission) => (s.status === 202 ? '202' : `${s.status}${s.problem ? ` problem+json ${s.type}` : ' (not problem+json)'}`);
    return {
      where,
      full_s: fullS,
      ready_while_full: readyWhileFull,
      submissions_while_full: whileFull.map(describe),
      reads_while_full: { total: reads.length, non_200: reads.filter((s) => s !== 200).length, statuses: [...new Set(reads)] },
      ready_again_after_freeing_s: readyAfterS,
      submission_after_freeing: describe(after),
      accepted_jobs: rows.map((row) => ({ prompt: row.prompt, status: row.status, error: row.error })),
      lost: accepted.length - rows.length,
    };
  } finally {
    await server.stop('SIGKILL');
    await store.close();
    disk.unmount();
    await storage.drop();
  }
}

async function soakRun() {
  log(`soak: ${SOAK_SECONDS} s of mixed load on one embedded server`);
  const storage = sqliteStorage();
  const store = openStore({ dataDir: storage.dataDir });
  const metricsToken = randomBytes(16).toString('hex');
  // the inspector forces a full collection at the end of each minute, so the heap the server keeps is measured, not guessed from a floor
  const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} --inspect=127.0.0.1:0`.trim();
  const server = await startServer(storage, { env: { ...ROOMY, CELFORGE_PREVIEW_STEP_MS: '5', CELFORGE_METRICS_TOKEN: metricsToken, NODE_OPTIONS: nodeOptions }, entry: ENTRY });
  const inspector = await connectInspector(inspectorUrl(server.output())!);
  try {
    const tokens = [await mintToken(store, storage), await mintToken(store, storage), await mintToken(store, storage)];
    if (SOAK_SNAPSHOTS) mkdirSync(SOAK_SNAPSHOTS, { recursive: true });
    return await soak(server.url, server.process.pid!, tokens, SOAK_SECONDS, log, metricsToken, { inspector, snapshots: SOAK_SNAPSHOTS, forceGc: SOAK_FORCE_GC });
  } finally {
    inspector.close();
    await server.stop('SIGTERM');
    await store.close();
    await storage.drop();
  }
}

const started = new Date().toISOString();
const report: Record<string, unknown> = { started };
if (PARTS.has('scale-out')) report.scale_out = await scaleOut();
if (PARTS.has('embedded')) report.embedded = await embedded();
if (PARTS.has('disk')) report.full_disk = [await fullDisk('assets'), await fullDisk('data dir')];
if (PARTS.has('soak')) report.soak = await soakRun();
report.duration_s = Math.round((Date.now() - t0) / 1000);
report.cores = cpus().length;
report.load_average = loadavg().map((value) => Number(value.toFixed(2)));
const directory = fileURLToPath(new URL('./results', import.meta.url));
mkdirSync(directory, { recursive: true });
const stem = path.join(directory, `chaos-${started.replace(/[:.]/g, '-')}`);
writeFileSync(`${stem}.json`, `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(`${stem}.md`, markdown(report));
console.log(markdown(report));
log(`report: ${stem}.json and .md`);
process.exit(0);
