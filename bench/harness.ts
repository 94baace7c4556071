import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import autocannon from 'autocannon';

export interface Measurement {
  name: string;
  requests_per_second: number;
  latency_p50_ms: number;
  latency_p99_ms: number;
  non_2xx: number;
  errors: number;
}

export interface MeasureOptions {
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections?: number;
  seconds?: number;
}

/** Runs autocannon against one URL after a short warm-up (a longer one first: the JIT warms up too). */
export async function measure(name: string, options: MeasureOptions): Promise<Measurement> {
  const base = {
    url: options.url,
    method: options.method ?? 'GET',
    headers: options.headers,
    body: options.body,
    connections: options.connections ?? 16,
    // The load comes from a thread of its own, so it does not share the server's event loop.
    workers: 1,
  };
  await autocannon({ ...base, duration: 1 });
  const result = await autocannon({ ...base, duration: options.seconds ?? 5 });
  return {
    name,
    requests_per_second: Math.round(result.requests.average),
    latency_p50_ms: result.latency.p50,
    latency_p99_ms: result.latency.p99,
    non_2xx: result.non2xx,
    errors: result.errors,
  };
}

/** The price of security per request: 1/rps(secured) − 1/rps(baseline), in microseconds. */
export function securityCost(baseline: Measurement, secured: Measurement) {
  return {
    baseline: baseline.name,
    secured: secured.name,
    ratio: Number((secured.requests_per_second / baseline.requests_per_second).toFixed(3)),
    cost_per_request_us: Number((1e6 / secured.requests_per_second - 1e6 / baseline.requests_per_second).toFixed(1)),
  };
}

export function printTable(rows: Measurement[]): void {
  const line = (cells: (string | number)[]) => cells.map((c, i) => String(c).padEnd(i === 0 ? 44 : 12)).join('');
  console.log(line(['scenario', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx']));
  for (const row of rows) console.log(line([row.name, row.requests_per_second, row.latency_p50_ms, row.latency_p99_ms, row.non_2xx]));
}

export function writeResults(directory: string, results: unknown): string {
  mkdirSync(directory, { recursive: true });
  const file = path.join(directory, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}
