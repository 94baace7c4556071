/**
 * The SQLite audit writer: a thread with a connection of its own that appends the batches it is
 * sent, so masking, hashing and inserting every request's row happens beside the event loop, not
 * on it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';
import { decodeEvents } from './pending.js';
import { sqliteAppender } from './sqlite-append.js';

/** `events`: a batch as `encodeEvents` wrote it */
export type WriterMessage = { id: number; events: string } | { close: true };

export interface AppendReply {
  id: number;
  error?: { message: string; code?: string };
}

const database = new SQLite((workerData as { file: string }).file, { timeout: 5000 });
database.pragma('synchronous = NORMAL');
const append = sqliteAppender(database);

parentPort!.on('message', (message: WriterMessage) => {
  if ('close' in message) {
    database.close();
    parentPort!.close();
    return;
  }
  const { id, events } = message;
  let reply: AppendReply = { id };
  try {
    append.immediate(decodeEvents(events));
  } catch (error) {
    const { message: text, code } = error as { message?: unknown; code?: unknown };
    reply = { id, error: { message: String(text), ...(typeof code === 'string' && { code }) } };
  }
  parentPort!.postMessage(reply);
});
