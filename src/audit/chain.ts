import { hash } from 'node:crypto';
import type { AuditLogTable } from '../db/schema.js';

/** prev_hash of the very first row */
export const GENESIS_HASH = '0'.repeat(64);

export type AuditRow = AuditLogTable;
export type ChainedFields = Omit<AuditRow, 'hash'>;
/** An event stamped and cleaned, waiting for its place in the chain. */
export type PendingRow = Omit<AuditRow, 'seq' | 'prev_hash' | 'hash'>;

/**
 * SHA-256 over a canonical serialisation: a JSON array of the fields in a fixed order, led by a
 * version label. `detail` is hashed as the stored text, so verifying never re-serialises it.
 */
export function rowHash(row: ChainedFields): string {
  const canonical = JSON.stringify([
    'celforge-audit-v1',
    Number(row.seq),
    row.at,
    row.actor_id,
    row.action,
    row.target,
    row.ip,
    row.request_id,
    row.outcome,
    row.detail,
    row.prev_hash,
  ]);
  return hash('sha256', canonical, 'hex');
}

/** Links pending rows onto a head: each row's prev_hash is the hash of the row before it. */
export function chainRows(head: ChainHead, pending: PendingRow[]): AuditRow[] {
  let seq = Number(head.seq);
  let prev = head.hash;
  return pending.map((row) => {
    seq += 1;
    // every field named: an object spread here costs more than the hash (every request is a row)
    const chained: AuditRow = {
      seq,
      at: row.at,
      actor_id: row.actor_id,
      action: row.action,
      target: row.target,
      ip: row.ip,
      request_id: row.request_id,
      outcome: row.outcome,
      detail: row.detail,
      prev_hash: prev,
      hash: '',
    };
    chained.hash = prev = rowHash(chained);
    return chained;
  });
}

export interface ChainHead {
  seq: number;
  hash: string;
  /** the last row removed by retention: the oldest remaining row follows it */
  anchor_seq: number;
  anchor_hash: string;
}

/**
 * Walks rows in seq order and names the first one that breaks the chain. Starts at the anchor
 * (the last pruned row, or the genesis) and ends at the head, so a deletion anywhere — the first
 * rows, the middle or the newest — is found, not only an edit.
 */
export class ChainVerifier {
  private expectedSeq: number;
  private expectedPrev: string;
  private lastHash: string;
  count = 0;

  constructor(private readonly head: ChainHead) {
    this.expectedSeq = Number(head.anchor_seq) + 1;
    this.expectedPrev = head.anchor_hash;
    this.lastHash = head.anchor_hash;
  }

  /** null when the row fits, else what is wrong with it */
  push(row: AuditRow): string | null {
    const seq = Number(row.seq);
    if (seq < this.expectedSeq) return `row ${seq}: older than the retention anchor (row ${this.expectedSeq - 1})`;
    if (seq > this.expectedSeq) return `row ${this.expectedSeq} missing (gap after ${this.expectedSeq - 1})`;
    if (rowHash(row) !== row.hash) return `row ${seq}: hash mismatch`;
    if (row.prev_hash !== this.expectedPrev) {
      return seq === Number(this.head.anchor_seq) + 1 && seq > 1
        ? `row ${seq}: prev_hash does not match the retention anchor (row ${seq - 1})`
        : `row ${seq}: prev_hash does not match row ${seq - 1}`;
    }
    this.count += 1;
    this.expectedSeq = seq + 1;
    this.expectedPrev = row.hash;
    this.lastHash = row.hash;
    return null;
  }

  /** after the last row: the trail must reach the head */
  finish(): string | null {
    const last = this.expectedSeq - 1;
    const headSeq = Number(this.head.seq);
    if (last < headSeq) return `row ${last + 1} missing (gap after ${last}; the chain head is row ${headSeq})`;
    if (last > headSeq) return `row ${last}: beyond the chain head (row ${headSeq})`;
    if (this.lastHash !== this.head.hash) return `row ${last}: hash does not match the chain head`;
    return null;
  }
}
