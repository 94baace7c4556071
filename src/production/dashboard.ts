import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { JobStatus, JobType } from './store.js';

/**
 * The figures of the admin dashboard that are read from the store, so every instance answers the
 * same: jobs over time, waits, active people, rate-limit refusals. Times are ISO text in both
 * dialects, so an hour is the first 13 characters of a timestamp and a day the first 10.
 */

export const STATUSES: JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'canceled'];
export const TYPES: JobType[] = ['image', 'video'];

export interface JobBucket {
  /** start of the hour or day, ISO */
  at: string;
  by_status: Record<JobStatus, number>;
  by_type: Record<JobType, number>;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

function emptyBucket(at: string): JobBucket {
  return {
    at,
    by_status: Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>,
    by_type: Object.fromEntries(TYPES.map((t) => [t, 0])) as Record<JobType, number>,
  };
}

/** The starts of the last `count` hours (or days), oldest first, the current one last. */
function slots(now: number, count: number, unit: 'hour' | 'day'): string[] {
  const size = unit === 'hour' ? HOUR_MS : DAY_MS;
  const current = Math.floor(now / size) * size;
  return Array.from({ length: count }, (_, i) => new Date(current - (count - 1 - i) * size).toISOString());
}

/** Jobs created per hour (or day) by status and type, every slot present (zero when quiet). */
export async function jobSeries(db: Kysely<Database>, now: number, count: number, unit: 'hour' | 'day'): Promise<JobBucket[]> {
  const starts = slots(now, count, unit);
  const width = unit === 'hour' ? 13 : 10;
  const bucket = sql<string>`substr(created_at, 1, ${sql.lit(width)})`;
  const rows = await db
    .selectFrom('jobs')
    .select([bucket.as('slot'), 'status', 'type', (eb) => eb.fn.countAll<number>().as('n')])
    .where('created_at', '>=', starts[0]!)
    .groupBy([bucket, 'status', 'type'])
    .execute();
  const buckets = new Map(starts.map((at) => [at.slice(0, width), emptyBucket(at)]));
  for (const row of rows) {
    const into = buckets.get(row.slot);
    if (!into) continue;
    into.by_status[row.status] += Number(row.n);
    into.by_type[row.type] += Number(row.n);
  }
  return [...buckets.values()];
}

export interface Percentiles {
  count: number;
  p50: number | null;
  p95: number | null;
}

export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!);
  return { count: sorted.length, p50: at(0.5), p95: at(0.95) };
}

/** How long jobs that started since `since` waited in the queue (created → started), bounded. */
export async function waitTimes(db: Kysely<Database>, since: string, limit = 50_000): Promise<Percentiles> {
  const rows = await db
    .selectFrom('jobs')
    .select(['created_at', 'started_at'])
    .where('started_at', '>=', since)
    .orderBy('started_at', 'desc')
    .limit(limit)
    .execute();
  return percentiles(rows.map((row) => Math.max(0, Date.parse(row.started_at!) - Date.parse(row.created_at))));
}

/** The waits of the jobs still queued now: the oldest one is what a person notices. */
export async function oldestQueued(db: Kysely<Database>, now: number): Promise<number | null> {
  const row = await db.selectFrom('jobs').select((eb) => eb.fn.min('created_at').as('oldest')).where('status', '=', 'queued').executeTakeFirst();
  return row?.oldest ? Math.max(0, now - Date.parse(String(row.oldest))) : null;
}

/** People with a session used since `since` (not revoked). */
export async function activeUsers(db: Kysely<Database>, since: string): Promise<number> {
  const row = await db
    .selectFrom('sessions')
    .select(sql<number>`count(distinct user_id)`.as('n'))
    .where('last_seen_at', '>=', since)
    .where('revoked_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export interface Rejections {
  total: number;
  by_policy: Record<string, number>;
  /** per hour, the same slots as the hourly job series */
  hourly: { at: string; count: number }[];
}

/** Requests refused by a rate limit since the first hour of the series, from the audit trail. */
export async function rateRejections(db: Kysely<Database>, now: number, hours: number): Promise<Rejections> {
  const starts = slots(now, hours, 'hour');
  const rows = await db
    .selectFrom('audit_log')
    .select(['at', 'detail'])
    .where('action', '=', 'ratelimit.reject')
    .where('at', '>=', starts[0]!)
    .limit(100_000)
    .execute();
  const hourly = new Map(starts.map((at) => [at.slice(0, 13), 0]));
  const byPolicy: Record<string, number> = {};
  for (const row of rows) {
    const key = row.at.slice(0, 13);
    if (hourly.has(key)) hourly.set(key, hourly.get(key)! + 1);
    let policy = 'unknown';
    try {
      policy = String((JSON.parse(row.detail ?? '{}') as { policy?: unknown }).policy ?? 'unknown');
    } catch {
      // a detail that is not JSON counts as unknown
    }
    byPolicy[policy] = (byPolicy[policy] ?? 0) + 1;
  }
  return { total: rows.length, by_policy: byPolicy, hourly: starts.map((at) => ({ at, count: hourly.get(at.slice(0, 13))! })) };
}

export const SERIES = { hours: 24, days: 14 } as const;
