import type SQLite from 'better-sqlite3';
import { chainRows, type ChainHead, type PendingRow } from './chain.js';

const sqliteAppenders = new WeakMap<SQLite.Database, ReturnType<typeof sqliteAppender>>();

function sqliteAppender(database: SQLite.Database) {
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

/**
 * SQLite: locks the head (BEGIN IMMEDIATE takes the write lock, so other processes and threads
 * wait), links the rows to it, inserts them and moves the head, in one synchronous transaction.
 * Prepared statements, not the query builder: every answered request is a row.
 */
export function appendSqliteRows(database: SQLite.Database, pending: PendingRow[]): void {
  let append = sqliteAppenders.get(database);
  if (!append) sqliteAppenders.set(database, (append = sqliteAppender(database)));
  append.immediate(pending);
}
