/**
 * A video player's reads as load, in a process of its own: keep-alive connections asking for the
 * 1 MiB ranges of a file in turn, bodies counted and dropped. bench/assets.ts runs it for each
 * measurement; it prints one JSON line. (autocannon keeps every response body as a string, which
 * costs 20–25 ms of CPU per MiB on the cores the servers measured share.)
 *
 * argv: a JSON object { url, headers, ranges, connections, seconds, warmupSeconds }
 */
import http from 'node:http';

interface Options {
  url: string;
  headers: Record<string, string>;
  ranges: string[];
  connections: number;
  seconds: number;
  warmupSeconds: number;
}

const options = JSON.parse(process.argv[2]!) as Options;
const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections });
let next = 0;

function read(range: string): Promise<{ ms: number; ok: boolean; bytes: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get(options.url, { agent, headers: { ...options.headers, range } }, (response) => {
        let bytes = 0;
        response.on('data', (chunk: Buffer) => (bytes += chunk.length));
        response.on('end', () => resolve({ ms: performance.now() - started, ok: response.statusCode === 206, bytes }));
        response.on('error', reject);
      })
      .on('error', reject);
  });
}

async function load(seconds: number) {
  const end = Date.now() + seconds * 1000;
  const latencies: number[] = [];
  let bytes = 0;
  let failed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.connections }, async () => {
      while (Date.now() < end) {
        const answer = await read(options.ranges[next++ % options.ranges.length]!);
        latencies.push(answer.ms);
        bytes += answer.bytes;
        if (!answer.ok) failed++;
      }
    }),
  );
  return { latencies, bytes, failed, elapsedMs: performance.now() - started };
}

await load(options.warmupSeconds);
const { latencies, bytes, failed, elapsedMs } = await load(options.seconds);
latencies.sort((a, b) => a - b);
const percentile = (p: number) => Number((latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))] ?? 0).toFixed(1));
console.log(
  JSON.stringify({
    megabytes_per_second: Number((bytes / (elapsedMs / 1000) / 1e6).toFixed(1)),
    requests_per_second: Math.round(latencies.length / (elapsedMs / 1000)),
    latency_p50_ms: percentile(50),
    latency_p99_ms: percentile(99),
    non_2xx: failed,
  }),
);
agent.destroy();
