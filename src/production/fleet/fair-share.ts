import { sql, type Kysely } from 'kysely';
import type { Config } from '../../config/config.js';
import type { Store } from '../../db/database.js';
import type { Database, FleetSharesTable } from '../../db/schema.js';
import { rolesOf, type UserRow } from '../../identity/store.js';
import { claimedBy, type JobRow } from '../store.js';

export interface FairSharePolicy {
  /** jobs one user may have running at once unless an admin set otherwise; null: no cap */
  maxRunning: number | null;
  /** a role's weight for its users whose own weight no admin set; a role not named: 1 */
  roleWeights: Partial<Record<Role, number>>;
  /** recorded GPU use halves every this many milliseconds */
  halfLifeMs: number;
}

export const DEFAULT_POLICY: FairSharePolicy = { maxRunning: null, roleWeights: {}, halfLifeMs: 10 * 60_000 };

type Role = UserRow['role'];

/** The policy the configuration sets (running cap, role weights) on the defaults. */
export function fairSharePolicy(config: Pick<Config, 'fleetUserMaxRunning' | 'fleetRoleWeights'>): FairSharePolicy {
  return { ...DEFAULT_POLICY, maxRunning: config.fleetUserMaxRunning ?? null, roleWeights: config.fleetRoleWeights ?? {} };
}

/**
 * A user's fair-share weight: the one an admin set for the user (a share row an admin wrote), else
 * the user's role's, else 1. Rows written only by GPU accounting carry no setting.
 */
export function weightOf(share: Pick<FleetSharesTable, 'weight' | 'updated_by'> | undefined, role: Role | undefined, policy: FairSharePolicy): number {
  if (hasOwnWeight(share)) return share.weight;
  return (role && policy.roleWeights[role]) ?? 1;
}

/** Whether an admin set this user's weight (rows written only by GPU accounting carry no setting). */
export function hasOwnWeight<T extends Pick<FleetSharesTable, 'updated_by'>>(share: T | undefined): share is T {
  return share !== undefined && share.updated_by !== null;
}

/** Every claim in every worker takes this PostgreSQL lock for its transaction: one decides at a time. */
const CLAIM_LOCK = 0x63_66_66_6c; // "cffl"

export interface ClaimOptions {
  /** only a job of a user with nothing running (it may start ahead of waiting prompts) */
  idleUsersOnly?: boolean;
}

interface Contender {
  userId: string;
  oldest: string;
  running: number;
  weight: number;
  usage: number;
  /** running jobs allowed; null: no cap */
  cap: number | null;
}

/** GPU milliseconds of a share row as of `now`, after the half-life decay. */
export function decayedUsage(share: Pick<FleetSharesTable, 'usage_ms' | 'usage_at'> | undefined, now: number, halfLifeMs: number): number {
  if (!share || !share.usage_at) return 0;
  const age = Math.max(0, now - Date.parse(share.usage_at));
  return share.usage_ms * 2 ** (-age / halfLifeMs);
}

/**
 * Weighted round-robin by user: the user with the fewest running jobs per unit of weight goes
 * first, then the one with the least recent GPU use per weight, then the one waiting longest.
 */
function compare(a: Contender, b: Contender): number {
  return a.running / a.weight - b.running / b.weight || a.usage / a.weight - b.usage / b.weight || a.oldest.localeCompare(b.oldest);
}

/**
 * Takes the next job by fair share instead of arrival order: among users with a due queued job
 * and room under their running cap, the first by `compare`; that user's oldest due job.
 * PostgreSQL: claims are serialised by an advisory lock held for the transaction, so caps hold
 * across workers. SQLite: no transaction spans an await (a synchronous writer elsewhere in the
 * process would wait on it with the event loop blocked); the single UPDATE re-checks the job's
 * state and the user's cap under SQLite's write lock instead.
 */
export function claimFair(
  store: Store,
  workerId: string,
  now: Date,
  leaseUntil: string,
  policy: FairSharePolicy = DEFAULT_POLICY,
  options: ClaimOptions = {},
): Promise<JobRow | undefined> {
  if (store.dialect !== 'postgres') return pickAndClaim(store.db, workerId, now, leaseUntil, policy, options);
  return store.db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${CLAIM_LOCK})`.execute(trx);
    return pickAndClaim(trx, workerId, now, leaseUntil, policy, options);
  });
}

async function pickAndClaim(
  db: Kysely<Database>,
  workerId: string,
  now: Date,
  leaseUntil: string,
  policy: FairSharePolicy,
  options: ClaimOptions,
): Promise<JobRow | undefined> {
  const at = now.toISOString();
  const waiting = await db
    .selectFrom('jobs')
    .select(['user_id', (eb) => eb.fn.min<string>('created_at').as('oldest')])
    .where('status', '=', 'queued')
    .where((eb) => eb.or([eb('run_after', 'is', null), eb('run_after', '<=', at)]))
    .groupBy('user_id')
    .execute();
  if (waiting.length === 0) return undefined;
  const weighed = await contendersOf(db, waiting.map((row) => ({ userId: row.user_id, oldest: String(row.oldest) })), now, policy);
  const next = weighed
    .map((contender) => (options.idleUsersOnly ? { ...contender, cap: 1 } : contender))
    .filter((contender) => contender.cap === null || contender.running < contender.cap)
    .sort(compare)[0];
  if (!next) return undefined;
  const candidate = db
    .selectFrom('jobs')
    .select('id')
    .where('user_id', '=', next.userId)
    .where('status', '=', 'queued')
    .where((eb) => eb.or([eb('run_after', 'is', null), eb('run_after', '<=', at)]))
    .orderBy('created_at')
    .orderBy('id')
    .limit(1);
  let update = db.updateTable('jobs').set(claimedBy(workerId, at, leaseUntil)).where('id', '=', candidate).where('status', '=', 'queued');
  if (next.cap !== null) {
    update = update.where(sql<boolean>`(select count(*) from jobs as r where r.user_id = ${next.userId} and r.status = 'running') < ${next.cap}`);
  }
  return update.returningAll().executeTakeFirst();
}

/** Each waiting user as fair share weighs them now: jobs running, weight, decayed GPU use, running cap. */
async function contendersOf(db: Kysely<Database>, waiting: { userId: string; oldest: string }[], now: Date, policy: FairSharePolicy): Promise<Contender[]> {
  const users = waiting.map((user) => user.userId);
  const [running, shares, roles] = await Promise.all([
    db
      .selectFrom('jobs')
      .select(['user_id', (eb) => eb.fn.countAll<number>().as('n')])
      .where('status', '=', 'running')
      .where('user_id', 'in', users)
      .groupBy('user_id')
      .execute(),
    db.selectFrom('fleet_shares').selectAll().where('user_id', 'in', users).execute(),
    rolesOf(db, users),
  ]);
  const runningOf = new Map(running.map((row) => [row.user_id, Number(row.n)]));
  const shareOf = new Map(shares.map((row) => [row.user_id, row]));
  return waiting.map(({ userId, oldest }) => {
    const share = shareOf.get(userId);
    return {
      userId,
      oldest,
      running: runningOf.get(userId) ?? 0,
      weight: weightOf(share, roles.get(userId), policy),
      usage: decayedUsage(share, now.getTime(), policy.halfLifeMs),
      cap: share?.max_running ?? policy.maxRunning,
    };
  });
}

/**
 * Adds a job's GPU time to its user's decaying use. A read, then one upsert (no transaction across
 * an await, see claimFair): two workers ending jobs of one user at the same instant may lose one
 * addition, which only nudges an ordering.
 */
export async function recordGpuUse(db: Kysely<Database>, userId: string, ms: number, now: Date, policy: FairSharePolicy = DEFAULT_POLICY): Promise<void> {
  const at = now.toISOString();
  const share = await db.selectFrom('fleet_shares').select(['usage_ms', 'usage_at']).where('user_id', '=', userId).executeTakeFirst();
  const usage = decayedUsage(share, now.getTime(), policy.halfLifeMs) + Math.max(0, ms);
  await db
    .insertInto('fleet_shares')
    .values({ user_id: userId, weight: 1, max_running: null, usage_ms: usage, usage_at: at, updated_at: at, updated_by: null })
    .onConflict((oc) => oc.column('user_id').doUpdateSet({ usage_ms: usage, usage_at: at }))
    .execute();
}

export interface ShareSetting {
  weight: number;
  max_running: number | null;
}

/** An admin's setting of a user's weight and running cap; the user's recorded use is kept. */
export async function saveShare(db: Kysely<Database>, userId: string, setting: ShareSetting, by: string, now: Date): Promise<void> {
  const at = now.toISOString();
  await db
    .insertInto('fleet_shares')
    .values({ user_id: userId, weight: setting.weight, max_running: setting.max_running, usage_ms: 0, usage_at: null, updated_at: at, updated_by: by })
    .onConflict((oc) => oc.column('user_id').doUpdateSet({ weight: setting.weight, max_running: setting.max_running, updated_at: at, updated_by: by }))
    .execute();
}

export function findShare(db: Kysely<Database>, userId: string): Promise<FleetSharesTable | undefined> {
  return db.selectFrom('fleet_shares').selectAll().where('user_id', '=', userId).executeTakeFirst();
}

/** Per-user GPU use (decayed, in seconds) of every user who has some, largest first. */
export async function gpuSecondsByUser(db: Kysely<Database>, now: Date, policy: FairSharePolicy = DEFAULT_POLICY) {
  const rows = await db.selectFrom('fleet_shares').select(['user_id', 'usage_ms', 'usage_at']).where('usage_ms', '>', 0).execute();
  return rows
    .map((row) => ({ user_id: row.user_id, gpu_seconds: decayedUsage(row, now.getTime(), policy.halfLifeMs) / 1000 }))
    .sort((a, b) => b.gpu_seconds - a.gpu_seconds);
}

/** The most queued jobs an ETA looks through. */
const ETA_HORIZON = 5_000;

/**
 * The kinds of the queued jobs that fair share will start before this one, oldest first within a
 * user: the claims replayed with `compare` on today's running counts, weights and GPU use, each
 * start counted as one more running job of its user (ends are not foreseen). Caps hold while
 * another user can go; a job past the horizon counts as behind all of it.
 */
export async function startingBefore(db: Kysely<Database>, job: Pick<JobRow, 'id' | 'user_id'>, now: Date, policy: FairSharePolicy = DEFAULT_POLICY): Promise<JobRow['type'][]> {
  const at = now.toISOString();
  const queued = await db
    .selectFrom('jobs')
    .select(['id', 'user_id', 'type', 'created_at'])
    .where('status', '=', 'queued')
    .where((eb) => eb.or([eb('run_after', 'is', null), eb('run_after', '<=', at)]))
    .orderBy('created_at')
    .orderBy('id')
    .limit(ETA_HORIZON)
    .execute();
  if (!queued.some((row) => row.id === job.id)) return queued.map((row) => row.type);
  const lines = new Map<string, typeof queued>();
  for (const row of queued) {
    const line = lines.get(row.user_id);
    if (line) line.push(row);
    else lines.set(row.user_id, [row]);
  }
  const contenders = await contendersOf(db, [...lines].map(([userId, line]) => ({ userId, oldest: line[0]!.created_at })), now, policy);
  const ahead: JobRow['type'][] = [];
  for (;;) {
    const open = contenders.filter((c) => lines.get(c.userId)!.length > 0);
    const free = open.filter((c) => c.cap === null || c.running < c.cap);
    const next = (free.length > 0 ? free : open).sort(compare)[0]!;
    const line = lines.get(next.userId)!;
    const started = line.shift()!;
    if (started.id === job.id) return ahead;
    ahead.push(started.type);
    next.running++;
    if (line[0]) next.oldest = line[0].created_at;
  }
}
