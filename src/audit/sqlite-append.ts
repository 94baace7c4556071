import type SQLite from 'better-sqlite3';
import { chainRows, type ChainHead, type PendingRow } from './chain.js';

/**
 * The SQLite audit append, prepared once for a connection: call `.immediate(rows)`. In one
 * `BEGIN IMMEDIATE` transaction (the write lock first, so other connections and processes wait
 * their turn) it locks the head, links the rows to it, inserts them and moves the head. Prepared
 * statements, not the query builder: every answered request is a row.
 */
export function sqliteAppender(database: SQLite.Database) {
  const lockHead = database.prepare<[], ChainHead>('UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash, anchor_seq, anchor_hash');
  const insert = database.prepare(
    `INSERT INTO audit_log (seq, at, actor_id, action, target, ip, request_id, outcome, detail, prev_hash, hash)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const setHead = database.prepare<[number, string]>('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1');
  return database.transaction((pending: PendingRow[]) => {
    const rows = chainRows(lockHead.get()!, pending);
    // positional parameters: binding by name costs a lookup per column
    for (const r of rows) insert.run(r.seq, r.at, r.actor_id, r.action, r.target, r.ip, r.request_id, r.outcome, r.detail, r.prev_hash, r.hash);
    const last = rows.at(-1);
    if (last) setHead.run(last.seq, last.hash);
  });
}
