import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import fastifyStatic from '@fastify/static';
import Fastify from 'fastify';
import { buildApp } from '../src/app.js';
import { originalKey } from '../src/assets/storage.js';
import { testConfig, type Config } from '../src/config/config.js';
import { insertJob } from '../src/production/store.js';
import { signIn } from '../test/support/users.js';

const FILE_BYTES = 20 * 1024 * 1024;
const CHUNK = 1024 * 1024;

export interface DeliveryMeasurement {
  name: string;
  megabytes_per_second: number;
  requests_per_second: number;
  latency_p50_ms: number;
  latency_p99_ms: number;
  non_2xx: number;
}

/** The 20 ranges of a 20 MiB file read in 1 MiB chunks, as a video player asks for them. */
const ranges = Array.from({ length: FILE_BYTES / CHUNK }, (_, i) => `bytes=${i * CHUNK}-${(i + 1) * CHUNK - 1}`);

/** One scenario measured by bench/range-reader.ts in a process of its own, 4 connections, after a second of warm-up. */
async function measureRanges(name: string, url: string, headers: Record<string, string>, seconds: number): Promise<DeliveryMeasurement> {
  const options = JSON.stringify({ url, headers, ranges, connections: 4, seconds, warmupSeconds: 1 });
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'range-reader.ts'), options], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`the range reader exited with ${code}`);
  return { name, ...(JSON.parse(output) as Omit<DeliveryMeasurement, 'name'>) };
}

/** s3rver in a process of its own (as an object store is), with one bucket. */
async function startS3(directory: string): Promise<{ endpoint: string; stop: () => void }> {
  const script = `import S3rver from 's3rver';
    const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: ${JSON.stringify(directory)}, configureBuckets: [{ name: 'celforge-bench' }] });
    const { port } = await server.run();
    console.log('port ' + port);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      const match = /port (\d+)/.exec(chunk.toString());
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
  });
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => child.kill('SIGKILL') };
}

/** A Celforge app holding one 20 MiB video result of a signed-in user; the URL and headers that read it. */
async function appWithVideo(assets: Config['assets'], data: Buffer, limits: Config['limits']) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-bench-assets-'));
  const app = await buildApp(testConfig({ dataDir, limits, assets }), { worker: false });
  const user = await signIn(app);
  const jobId = randomUUID();
  const now = new Date().toISOString();
  await insertJob(app.services.store.db, {
    id: jobId, user_id: user.userId, type: 'video', status: 'succeeded', prompt: 'bench video', negative_prompt: '', params: '{}', progress: 100,
    error: null, idempotency_key: null, request_hash: null, attempts: 1, locked_by: null, locked_until: null, run_after: null, visibility: null,
    published_at: null, created_at: now, updated_at: now, started_at: now, finished_at: now,
  });
  const storageKey = `${jobId}-0.mp4`;
  await app.services.production.assets.objects.put(originalKey(storageKey), data, 'video/mp4');
  const assetId = randomUUID();
  await app.services.store.db
    .insertInto('assets')
    .values({ id: assetId, job_id: jobId, user_id: user.userId, position: 0, content_type: 'video/mp4', byte_size: data.length, storage_key: storageKey, created_at: now })
    .execute();
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const presign = app.services.production.assets.objects.presign;
  return {
    url: `${base}/api/anime/assets/${assetId}`,
    headers: user.authorization,
    /** a presigned GET straight at the object store, for the store's own speed */
    direct: presign
      ? () => presign.call(app.services.production.assets.objects, originalKey(storageKey), { contentType: 'video/mp4', disposition: 'inline', expiresInSeconds: 3600 })
      : undefined,
    close: async () => {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * (f) Asset delivery: a 20 MiB video read in 1 MiB Range chunks through GET /api/anime/assets/{id}
 * (owner's bearer token, every check in the path) from the data dir and from S3 (s3rver, its own
 * process), beside a bare Fastify with @fastify/static serving the same file from disk.
 */
export async function assetDelivery(seconds: number, rounds: number, limits: Config['limits']) {
  const data = randomBytes(FILE_BYTES);
  const work = mkdtempSync(path.join(tmpdir(), 'celforge-bench-static-'));
  mkdirSync(path.join(work, 'files'));
  writeFileSync(path.join(work, 'files', 'video.mp4'), data);
  const bare = Fastify();
  await bare.register(fastifyStatic, { root: path.join(work, 'files') });
  const staticUrl = `${await bare.listen({ host: '127.0.0.1', port: 0 })}/video.mp4`;
  const s3 = await startS3(path.join(work, 's3'));
  const defaults = testConfig().assets;
  const disk = await appWithVideo(defaults, data, limits);
  const onS3 = await appWithVideo(
    {
      ...defaults,
      backend: 's3',
      s3: { endpoint: s3.endpoint, bucket: 'celforge-bench', region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true, prefix: 'bench/' },
    },
    data,
    limits,
  );
  try {
    const scenarios: [string, string, Record<string, string>][] = [
      ['(f0) @fastify/static, no security, disk', staticUrl, {}],
      ['(f1) GET /api/anime/assets/{id}, data dir', disk.url, disk.headers],
      ['(f2) GET /api/anime/assets/{id}, S3 (s3rver)', onS3.url, onS3.headers],
      ['(f3) presigned GET straight at s3rver', await onS3.direct!(), {}],
    ];
    // Alternated for a few rounds, each keeping its best: a busy moment of the machine does not
    // land on one scenario only. Each round's own ratios are kept too: measured back to back, the
    // scenarios of a round share the machine's state.
    const best = new Map<string, DeliveryMeasurement>();
    const roundRatios: RoundRatios[] = [];
    for (let round = 0; round < rounds; round++) {
      const thisRound: DeliveryMeasurement[] = [];
      for (const [name, url, headers] of scenarios) {
        const result = await measureRanges(name, url, headers, seconds);
        thisRound.push(result);
        const kept = best.get(name);
        if (!kept || result.megabytes_per_second > kept.megabytes_per_second) best.set(name, result);
      }
      roundRatios.push(ratiosOf(thisRound));
    }
    return { best: scenarios.map(([name]) => best.get(name)!), roundRatios, loadAverage: os.loadavg().map((n) => Number(n.toFixed(2))) };
  } finally {
    await Promise.all([disk.close(), onS3.close(), bare.close()]);
    s3.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

interface RoundRatios {
  data_dir_to_static: number;
  s3_to_static: number;
  s3_to_direct: number;
}

/** The ratios of one set of measurements (f0, f1, f2, f3 in that order). */
function ratiosOf([plain, disk, s3, direct]: DeliveryMeasurement[]): RoundRatios {
  const ratio = (a: DeliveryMeasurement, b: DeliveryMeasurement) => Number((a.megabytes_per_second / b.megabytes_per_second).toFixed(2));
  return { data_dir_to_static: ratio(disk!, plain!), s3_to_static: ratio(s3!, plain!), s3_to_direct: ratio(s3!, direct!) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : Number(((sorted[middle - 1]! + sorted[middle]!) / 2).toFixed(2));
}

export function printDelivery({ best, roundRatios, loadAverage }: Awaited<ReturnType<typeof assetDelivery>>): void {
  const line = (cells: (string | number)[]) => cells.map((c, i) => String(c).padEnd(i === 0 ? 48 : 10)).join('');
  console.log(line(['asset delivery (1 MiB ranges of 20 MiB)', 'MB/s', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx']));
  for (const row of best) console.log(line([row.name, row.megabytes_per_second, row.requests_per_second, row.latency_p50_ms, row.latency_p99_ms, row.non_2xx]));
  const bests = ratiosOf(best);
  const medians = (key: keyof RoundRatios) => median(roundRatios.map((round) => round[key]));
  console.log(`best rounds: data dir ${bests.data_dir_to_static}× @fastify/static; S3 ${bests.s3_to_static}× @fastify/static, ${bests.s3_to_direct}× of s3rver read directly`);
  console.log(
    `median of each round's own ratios: data dir ${medians('data_dir_to_static')}×; S3 ${medians('s3_to_static')}× @fastify/static, ${medians('s3_to_direct')}× of s3rver read directly`,
  );
  console.log(`load average ${loadAverage.join(' ')} on ${os.availableParallelism()} cores`);
}
