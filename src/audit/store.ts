import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import type { AuditRow, ChainHead } from './chain.js';

type Db = Kysely<Database> | Transaction<Database>;

/** rows per INSERT statement: 11 parameters each, well under both dialects' limits */
const INSERT_CHUNK = 200;

/**
 * Reads the chain head and locks it until the transaction ends. Writing is the first thing the
 * transaction does, so SQLite takes its write lock here (as BEGIN IMMEDIATE would) and PostgreSQL
 * a row lock that the next appender waits on; both then read the newest head.
 */
export async function lockHead(trx: Transaction<Database>): Promise<ChainHead> {
  return trx
    .updateTable('audit_head')
    .set((eb) => ({ seq: eb.ref('seq') }))
    .where('id', '=', 1)
    .returning(['seq', 'hash', 'anchor_seq', 'anchor_hash'])
    .executeTakeFirstOrThrow();
}

export async function readHead(db: Db): Promise<ChainHead> {
  return db.selectFrom('audit_head').select(['seq', 'hash', 'anchor_seq', 'anchor_hash']).where('id', '=', 1).executeTakeFirstOrThrow();
}

export async function insertRows(trx: Transaction<Database>, rows: AuditRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    await trx.insertInto('audit_log').values(rows.slice(i, i + INSERT_CHUNK)).execute();
  }
}

export async function setHead(trx: Transaction<Database>, seq: number, hash: string): Promise<void> {
  await trx.updateTable('audit_head').set({ seq, hash }).where('id', '=', 1).execute();
}

export async function setAnchor(trx: Transaction<Database>, seq: number, hash: string): Promise<void> {
  await trx.updateTable('audit_head').set({ anchor_seq: seq, anchor_hash: hash }).where('id', '=', 1).execute();
}

/** Rows in chain order after `seq`, a page at a time. */
export async function rowsAfter(db: Db, seq: number, limit: number): Promise<AuditRow[]> {
  return db.selectFrom('audit_log').selectAll().where('seq', '>', seq).orderBy('seq', 'asc').limit(limit).execute();
}

export interface AuditFilter {
  /** action prefix, e.g. "auth." */
  action?: string;
  actorId?: string;
  outcome?: string;
  /** ISO UTC, inclusive */
  from?: string;
  /** ISO UTC, exclusive */
  to?: string;
}

function filtered(db: Db, filter: AuditFilter) {
  let query = db.selectFrom('audit_log').selectAll();
  if (filter.action) query = query.where(sql<string>`substr(action, 1, ${filter.action.length})`, '=', filter.action);
  if (filter.actorId) query = query.where('actor_id', '=', filter.actorId);
  if (filter.outcome) query = query.where('outcome', '=', filter.outcome);
  if (filter.from) query = query.where('at', '>=', filter.from);
  if (filter.to) query = query.where('at', '<', filter.to);
  return query;
}

/** Newest first, before the cursor seq. */
export async function listRows(db: Db, filter: AuditFilter, before: number | undefined, limit: number): Promise<AuditRow[]> {
  let query = filtered(db, filter);
  if (before !== undefined) query = query.where('seq', '<', before);
  return query.orderBy('seq', 'desc').limit(limit).execute();
}

/** Oldest first, after the seq: for export. */
export async function filteredRowsAfter(db: Db, filter: AuditFilter, after: number, limit: number): Promise<AuditRow[]> {
  return filtered(db, filter).where('seq', '>', after).orderBy('seq', 'asc').limit(limit).execute();
}

/** The newest row written before the cutoff, or undefined. */
export async function newestRowBefore(db: Db, cutoff: string): Promise<{ seq: number; hash: string } | undefined> {
  return db.selectFrom('audit_log').select(['seq', 'hash']).where('at', '<', cutoff).orderBy('seq', 'desc').limit(1).executeTakeFirst();
}

export async function deleteThrough(trx: Transaction<Database>, seq: number): Promise<number> {
  const result = await trx.deleteFrom('audit_log').where('seq', '<=', seq).executeTakeFirst();
  return Number(result.numDeletedRows);
}

export async function newestOfAction(db: Db, action: string): Promise<AuditRow | undefined> {
  return db.selectFrom('audit_log').selectAll().where('action', '=', action).orderBy('seq', 'desc').limit(1).executeTakeFirst();
}
