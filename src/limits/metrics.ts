import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Store } from '../db/database.js';
import type { RatePolicyName } from '../config/config.js';

interface RequestSeries {
  labels: { method: string; route: string; status: string };
  count: number;
  latency: Histogram.Internal<string>;
}

const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;

/**
 * Prometheus metrics of one app (a registry of its own, so tests and the benchmark can build
 * several apps in one process). Job figures are read from the store at scrape time.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly latency: Histogram<'method' | 'route' | 'status'>;
  private readonly rateRejections: Counter<'policy'>;
  private readonly rateStoreFailures: Counter<'policy'>;
  private readonly signinFailures: Counter<'reason'>;
  /** the labelled series of each request kind, resolved once (label lookup costs more than the increment) */
  private readonly requestSeries = new Map<string, RequestSeries>();

  constructor(store: Store) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'celforge_' });
    const series = this.requestSeries;
    this.requests = new Counter({
      name: 'celforge_http_requests_total',
      help: 'HTTP requests answered, by route pattern and status',
      labelNames: ['method', 'route', 'status'],
      registers,
      // counted in plain numbers per request, handed over at scrape time
      collect() {
        this.reset();
        for (const { labels, count } of series.values()) this.inc(labels, count);
      },
    });
    this.latency = new Histogram({
      name: 'celforge_http_request_duration_seconds',
      help: 'Time to answer, by route pattern and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.rateRejections = new Counter({
      name: 'celforge_rate_limit_rejections_total',
      help: 'Requests refused with 429 by a rate-limit policy',
      labelNames: ['policy'],
      registers,
    });
    this.rateStoreFailures = new Counter({
      name: 'celforge_rate_limit_store_failures_total',
      help: 'Rate-limit checks the store could not answer (fail-closed policies answered 503)',
      labelNames: ['policy'],
      registers,
    });
    this.signinFailures = new Counter({
      name: 'celforge_signin_failures_total',
      help: 'Failed sign-in attempts, by reason',
      labelNames: ['reason'],
      registers,
    });
    new Gauge({
      name: 'celforge_jobs',
      help: 'Jobs in the store by state',
      labelNames: ['state'],
      registers,
      async collect() {
        const rows = await store.db.selectFrom('jobs').select(['status', (eb) => eb.fn.countAll<number>().as('count')]).groupBy('status').execute();
        const counts = new Map(rows.map((row) => [row.status, Number(row.count)]));
        for (const state of JOB_STATES) this.set({ state }, counts.get(state) ?? 0);
      },
    });
    new Gauge({
      name: 'celforge_queue_depth',
      help: 'Jobs waiting to run (queued)',
      registers,
      async collect() {
        const row = await store.db
          .selectFrom('jobs')
          .select((eb) => eb.fn.countAll<number>().as('count'))
          .where('status', '=', 'queued')
          .executeTakeFirst();
        this.set(Number(row?.count ?? 0));
      },
    });
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${route} ${status}`;
    let series = this.requestSeries.get(key);
    if (!series) {
      // One series per method × route pattern × status: a small, bounded set.
      const labels = { method, route, status: String(status) };
      series = { labels, count: 0, latency: this.latency.labels(labels) };
      this.requestSeries.set(key, series);
    }
    series.count += 1;
    series.latency.observe(seconds);
  }

  rateLimited(policy: RatePolicyName): void {
    this.rateRejections.inc({ policy });
  }

  rateStoreFailed(policy: RatePolicyName): void {
    this.rateStoreFailures.inc({ policy });
  }

  /** For the sign-in code: one failed attempt (reason like `credentials`, `otp`, `disabled`, `throttled`). */
  signinFailed(reason: string): void {
    this.signinFailures.inc({ reason });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
