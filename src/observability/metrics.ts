import { Counter, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { RatePolicyName } from '../config/config.js';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One method × route pattern × status: its count and latency histogram, kept as plain numbers. */
interface RequestSeries {
  labels: { method: string; route: string; status: string };
  count: number;
  sum: number;
  /** per bucket, not cumulative; the last one is +Inf */
  buckets: Float64Array;
}

/** route pattern → method → status → series */
type SeriesByRoute = Map<string, Map<string, Map<number, RequestSeries>>>;

function* eachSeries(byRoute: SeriesByRoute): Generator<RequestSeries> {
  for (const byMethod of byRoute.values()) for (const byStatus of byMethod.values()) yield* byStatus.values();
}

/**
 * The request latency histogram in prom-client's metric shape, read from the request series at
 * scrape time: observing a request is a few array writes, not a label lookup per request.
 */
class RequestLatency {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly name = 'celforge_http_request_duration_seconds';
  readonly help = 'Time to answer, by route pattern and status';

  constructor(private readonly series: SeriesByRoute) {}

  async get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const { labels, count, sum, buckets } of eachSeries(this.series)) {
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, i) => {
        cumulative += buckets[i]!;
        values.push({ labels: { le, ...labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...labels }, value: count, metricName: `${this.name}_bucket` });
      values.push({ labels, value: sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.series.clear();
  }
}

/**
 * Prometheus metrics of one app (a registry of its own, so tests and the benchmark can build
 * several apps in one process). Capabilities add their own gauges to `registry` (jobs, the fleet),
 * read at scrape time.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly rateRejections: Counter<'policy'>;
  private readonly rateStoreFailures: Counter<'policy'>;
  private readonly signinFailures: Counter<'reason'>;
  /** the keys are strings Fastify hands over unchanged, so lookups hash nothing new */
  private readonly requestSeries: SeriesByRoute = new Map();

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'celforge_' });
    const series = this.requestSeries;
    new Counter({
      name: 'celforge_http_requests_total',
      help: 'HTTP requests answered, by route pattern and status',
      labelNames: ['method', 'route', 'status'],
      registers,
      // counted in plain numbers per request, handed over at scrape time
      collect() {
        this.reset();
        for (const { labels, count } of eachSeries(series)) this.inc(labels, count);
      },
    });
    // prom-client reads a metric through get(); this one is not one of its classes
    this.registry.registerMetric(new RequestLatency(series) as unknown as Metric);
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
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    let byMethod = this.requestSeries.get(route);
    if (!byMethod) this.requestSeries.set(route, (byMethod = new Map()));
    let byStatus = byMethod.get(method);
    if (!byStatus) byMethod.set(method, (byStatus = new Map()));
    let series = byStatus.get(status);
    if (!series) {
      // One series per method × route pattern × status: a small, bounded set.
      series = { labels: { method, route, status: String(status) }, count: 0, sum: 0, buckets: new Float64Array(LATENCY_BUCKETS.length + 1) };
      byStatus.set(status, series);
    }
    series.count += 1;
    series.sum += seconds;
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]!) bucket++;
    series.buckets[bucket]! += 1;
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
