import type { Transaction } from 'kysely';
import type { Store } from '../db/database.js';
import { paginate } from '../http/pagination.js';
import type { Database } from '../db/schema.js';
import { ChainVerifier, chainRows, type AuditRow, type ChainHead, type PendingRow } from './chain.js';
import type { AuditEvent, Auditor } from './events.js';
import { encodeEvents, pendingRow, recorded, rowOf, type RecordedEvent } from './pending.js';
import { AuditWriterThread } from './writer.js';
import {
  deleteThrough,
  filteredRowsAfter,
  listRows,
  insertRows,
  lockHead,
  newestOfAction,
  newestRowBefore,
  readHead,
  rowsAfter,
  setAnchor,
  setHead,
  type AuditFilter,
} from './store.js';

/** Chains rows onto a locked head inside the caller's transaction; returns the new head. */
async function appendLocked(trx: Transaction<Database>, head: ChainHead, pending: PendingRow[]): Promise<ChainHead> {
  const rows = chainRows(head, pending);
  const last = rows.at(-1)!;
  await insertRows(trx, rows);
  await setHead(trx, last.seq, last.hash);
  return { ...head, seq: last.seq, hash: last.hash };
}

function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}

/**
 * Appends rows in one transaction. The head lock serialises appenders in every process on both
 * dialects; the primary key on seq would refuse a fork anyway, and such a conflict is retried.
 * (The auditor of a SQLite store appends through its writer thread instead.)
 */
export async function appendRows(store: Store, pending: PendingRow[]): Promise<void> {
  if (pending.length === 0) return;
  for (let attempt = 1; ; attempt++) {
    try {
      await store.db.transaction().execute(async (trx) => appendLocked(trx, await lockHead(trx), pending));
      return;
    } catch (error) {
      if (!isUniqueViolation(error) || attempt >= 5) throw error;
    }
  }
}

export interface StoreAuditorOptions {
  /** events per transaction */
  batchSize?: number;
  /** how long an event may wait for company before it is written, ms */
  delayMs?: number;
  /** after a failed write, the next try waits this long, ms */
  retryMs?: number;
  /** events kept while the store is unreachable; beyond it the oldest are dropped, and said so */
  maxBuffered?: number;
  onError?: (message: string, error?: unknown) => void;
}

/**
 * The hash-chained audit trail. `record` only stamps and buffers the event (no I/O, never
 * throws), so no answer waits for it; the buffer is appended in batches, one transaction each,
 * every few milliseconds or when a batch is full, and on `flush()` (the app closes it on close).
 * On a SQLite file the batches go as JSON text to a writer thread with its own connection, which
 * masks, links and inserts them; otherwise they are masked here and appended through the store.
 */
export class StoreAuditor implements Auditor {
  private buffer: RecordedEvent[] = [];
  private writing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private retryAfter = 0;
  private dropped = 0;
  private inFlight = 0;
  private readonly batchSize: number;
  private readonly delayMs: number;
  private readonly retryMs: number;
  private readonly maxBuffered: number;
  private readonly thread: AuditWriterThread | null;

  constructor(
    private readonly store: Store,
    private readonly options: StoreAuditorOptions = {},
  ) {
    this.thread = store.sqlite ? new AuditWriterThread(store.sqlite.name) : null;
    this.batchSize = options.batchSize ?? 500;
    this.delayMs = options.delayMs ?? 5;
    this.retryMs = options.retryMs ?? 1000;
    this.maxBuffered = options.maxBuffered ?? 100_000;
  }

  record(event: AuditEvent): void {
    try {
      this.buffer.push(recorded(event));
      if (this.buffer.length > this.maxBuffered) {
        this.buffer.shift();
        this.dropped += 1;
      }
      this.schedule();
    } catch (error) {
      this.options.onError?.('audit: an event could not be recorded', error);
    }
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.retryAfter = 0;
    // Writes in progress first, then whatever is left; a failing store ends the wait (reported).
    while (this.writing || this.buffer.length > 0) {
      const ok = await this.drain();
      if (!ok) break;
    }
  }

  /** Flushes, then stops the writer thread. */
  async close(): Promise<void> {
    await this.flush();
    await this.thread?.close();
  }

  /** events not yet stored (waiting or being written) */
  get pending(): number {
    return this.buffer.length + this.inFlight;
  }

  private schedule(): void {
    if (this.writing || this.timer) return;
    const wait = this.buffer.length >= this.batchSize ? 0 : this.delayMs;
    const delay = Math.max(wait, this.retryAfter - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.drain();
    }, delay);
    this.timer.unref();
  }

  /** Writes a batch, and more while full ones wait; resolves false when a write failed. */
  private drain(): Promise<boolean> {
    if (this.writing) return this.writing.then(() => this.buffer.length === 0 || this.retryAfter === 0);
    let ok = true;
    this.writing = (async () => {
      while (this.buffer.length > 0) {
        const batch = this.buffer.splice(0, this.batchSize);
        this.inFlight = batch.length;
        try {
          await this.write(batch);
          this.retryAfter = 0;
        } catch (error) {
          this.buffer.unshift(...batch);
          this.retryAfter = Date.now() + this.retryMs;
          this.options.onError?.(`audit: could not store ${this.buffer.length} events; retrying`, error);
          ok = false;
          return;
        } finally {
          this.inFlight = 0;
        }
        // What came in meanwhile waits for company (see schedule) unless a full batch is ready:
        // one write per batch, not one per handful of rows.
        if (this.buffer.length < this.batchSize) break;
      }
      if (this.dropped > 0) {
        this.options.onError?.(`audit: ${this.dropped} events were dropped while the store was unreachable`);
        this.dropped = 0;
      }
    })().finally(() => {
      this.writing = null;
      if (this.buffer.length > 0) this.schedule();
    });
    return this.writing.then(() => ok);
  }

  private write(batch: RecordedEvent[]): Promise<void> {
    if (!this.thread) return appendRows(this.store, batch.map(rowOf));
    // A closed store takes no more rows, from this thread or the writer's.
    if (!this.store.sqlite!.open) return Promise.reject(new Error('the store is closed'));
    const { text, unwritable } = encodeEvents(batch);
    if (unwritable > 0) this.options.onError?.(`audit: ${unwritable} events could not be written as JSON and were left out`);
    return this.thread.append(text);
  }
}

export const PRUNE_ACTION = 'audit.prune';

export interface VerifyResult {
  ok: boolean;
  rows: number;
  /** the first problem, naming its row */
  problem?: string;
  head: ChainHead;
}

/** Checks the whole trail: every row's hash, every link, no gap from the retention anchor to the head. */
export async function verifyTrail(store: Store, pageSize = 1000): Promise<VerifyResult> {
  const head = await readHead(store.db);
  const verifier = new ChainVerifier(head);
  const fail = (problem: string): VerifyResult => ({ ok: false, rows: verifier.count, problem, head });

  if (Number(head.anchor_seq) > 0) {
    // The anchor was set by a prune that recorded it in the chain; moving it by hand shows here.
    const prune = await newestOfAction(store.db, PRUNE_ACTION);
    const said = prune?.detail ? (JSON.parse(prune.detail) as { through_seq?: number; last_hash?: string }) : undefined;
    if (!said || said.through_seq !== Number(head.anchor_seq) || said.last_hash !== head.anchor_hash) {
      return fail(`row ${Number(head.anchor_seq) + 1}: the retention anchor does not match the last ${PRUNE_ACTION} event`);
    }
  }
  let after = -Infinity;
  for (;;) {
    const page = await rowsAfter(store.db, after === -Infinity ? Number.MIN_SAFE_INTEGER : after, pageSize);
    for (const row of page) {
      const problem = verifier.push(row);
      if (problem) return fail(problem);
    }
    if (page.length < pageSize) break;
    after = Number(page.at(-1)!.seq);
  }
  const problem = verifier.finish();
  return problem ? fail(problem) : { ok: true, rows: verifier.count, head };
}

/** A row as exported and served: detail as an object. */
export function publicRow(row: AuditRow) {
  return {
    seq: Number(row.seq),
    at: row.at,
    actor_id: row.actor_id,
    action: row.action,
    target: row.target,
    ip: row.ip,
    request_id: row.request_id,
    outcome: row.outcome,
    detail: row.detail === null ? null : (JSON.parse(row.detail) as Record<string, unknown>),
    prev_hash: row.prev_hash,
    hash: row.hash,
  };
}

/** Every row in the filter, oldest first, a page at a time. */
export async function* exportTrail(store: Store, filter: AuditFilter, pageSize = 1000) {
  let after = Number.MIN_SAFE_INTEGER;
  for (;;) {
    const page = await filteredRowsAfter(store.db, filter, after, pageSize);
    for (const row of page) yield publicRow(row);
    if (page.length < pageSize) return;
    after = Number(page.at(-1)!.seq);
  }
}

export interface AuditPage {
  items: ReturnType<typeof publicRow>[];
  next_cursor: number | null;
}

export async function listTrail(store: Store, filter: AuditFilter, cursor: number | undefined, limit: number): Promise<AuditPage> {
  const rows = await listRows(store.db, filter, cursor, limit + 1);
  const { page, next } = paginate(rows, limit, (last) => Number(last.seq));
  return { items: page.map(publicRow), next_cursor: next };
}

export interface PruneResult {
  deleted: number;
  /** the new retention anchor */
  throughSeq?: number;
}

/**
 * Deletes rows older than the retention and keeps verify whole: in one transaction the anchor
 * moves to the last deleted row, and an `audit.prune` event naming that row's seq and hash is
 * appended to the chain (verify checks the anchor against it).
 */
export async function pruneTrail(store: Store, retentionDays: number, now: Date = new Date()): Promise<PruneResult> {
  if (retentionDays <= 0) return { deleted: 0 };
  const cutoff = new Date(now.getTime() - retentionDays * 86_400_000).toISOString();
  return store.db.transaction().execute(async (trx) => {
    const head = await lockHead(trx);
    const last = await newestRowBefore(trx, cutoff);
    if (!last) return { deleted: 0 };
    const deleted = await deleteThrough(trx, Number(last.seq));
    await setAnchor(trx, Number(last.seq), last.hash);
    await appendLocked(trx, { ...head, anchor_seq: Number(last.seq), anchor_hash: last.hash }, [
      pendingRow(
        {
          action: PRUNE_ACTION,
          outcome: 'success',
          detail: { through_seq: Number(last.seq), last_hash: last.hash, deleted, retention_days: retentionDays, cutoff },
        },
        now,
      ),
    ]);
    return { deleted, throughSeq: Number(last.seq) };
  });
}

const PRUNE_EVERY_MS = 6 * 3600_000;

/** Applies the retention now and then (first a minute after start); returns the stop function. */
export function startRetention(store: Store, retentionDays: number, onError: (error: unknown) => void): () => void {
  if (retentionDays <= 0) return () => {};
  const run = () => void pruneTrail(store, retentionDays).catch(onError);
  const first = setTimeout(run, 60_000);
  const every = setInterval(run, PRUNE_EVERY_MS);
  first.unref();
  every.unref();
  return () => {
    clearTimeout(first);
    clearInterval(every);
  };
}
