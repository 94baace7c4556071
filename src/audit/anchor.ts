import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { appendFileSync, readFileSync } from 'node:fs';
import type { Store } from '../db/database.js';
import type { ChainHead } from './chain.js';
import { readHead } from './store.js';

/**
 * Anchors for the audit chain outside the database. Whoever can write the database can delete the
 * newest rows and rewind `audit_head`, and the chain still verifies. Two things they cannot do:
 * - make a checkpoint: an HMAC over (seq, hash, time) keyed with a key derived from the
 *   URL-signing key, which the database does not hold. The server writes one to its log (and to
 *   CELFORGE_AUDIT_CHECKPOINT_FILE) whenever the head moved, every minute and at shutdown;
 * - change a hash someone kept: `audit verify --expect-head <seq>:<hash>`.
 * Each names a row that must still be in the chain with that hash.
 */
export interface Checkpoint {
  v: 1;
  seq: number;
  hash: string;
  at: string;
  mac: string;
}

export interface ExpectedRow {
  seq: number;
  hash: string;
}

const LABEL = 'celforge-audit-checkpoint-v1';

/** The checkpoint key: HKDF of the URL-signing key, so it is never the signing key itself. */
export function checkpointKey(urlSigningKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', urlSigningKey, 'celforge', 'audit checkpoint v1', 32));
}

function macOf(key: Buffer, seq: number, hash: string, at: string): string {
  return createHmac('sha256', key).update(JSON.stringify([LABEL, seq, hash, at])).digest('base64url');
}

export function signCheckpoint(key: Buffer, head: { seq: number; hash: string }, at = new Date()): Checkpoint {
  const seq = Number(head.seq);
  const time = at.toISOString();
  return { v: 1, seq, hash: head.hash, at: time, mac: macOf(key, seq, head.hash, time) };
}

export function checkpointValid(key: Buffer, checkpoint: Checkpoint): boolean {
  const expected = Buffer.from(macOf(key, Number(checkpoint.seq), String(checkpoint.hash), String(checkpoint.at)));
  const given = Buffer.from(String(checkpoint.mac));
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** `<seq>:<hash>` as printed by `audit verify`. */
export function parseExpectedHead(text: string): ExpectedRow | null {
  const match = /^(\d{1,15}):([0-9a-f]{64})$/.exec(text.trim());
  return match ? { seq: Number(match[1]), hash: match[2]! } : null;
}

/**
 * Reads a checkpoint file: the lines whose MAC holds. A line that is not a checkpoint, or whose
 * MAC fails, is a problem — the file itself was edited.
 */
export function readCheckpoints(file: string, key: Buffer): { checkpoints: Checkpoint[]; problem?: string } {
  const checkpoints: Checkpoint[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (const [index, line] of lines.entries()) {
    if (line.trim() === '') continue;
    let value: Checkpoint;
    try {
      value = JSON.parse(line) as Checkpoint;
    } catch {
      return { checkpoints, problem: `checkpoint line ${index + 1}: not a checkpoint` };
    }
    if (value?.v !== 1 || !checkpointValid(key, value)) return { checkpoints, problem: `checkpoint line ${index + 1}: its MAC does not hold` };
    checkpoints.push(value);
  }
  return { checkpoints };
}

/**
 * Each expected row must still be in the chain with its hash, or lie at or before the retention
 * anchor (pruned: only the anchor row itself can be compared). Run after the chain verified.
 */
export async function checkExpected(store: Store, head: ChainHead, expected: ExpectedRow[]): Promise<string | null> {
  for (const want of [...expected].sort((a, b) => b.seq - a.seq)) {
    if (want.seq > Number(head.seq)) {
      return `row ${want.seq} (hash ${want.hash}) was recorded outside the database but the chain ends at row ${Number(head.seq)}: newest rows removed`;
    }
    if (want.seq === Number(head.anchor_seq)) {
      if (head.anchor_hash !== want.hash) return `row ${want.seq}: hash differs from the one recorded outside the database`;
      continue;
    }
    if (want.seq < Number(head.anchor_seq)) continue;
    const row = await store.db.selectFrom('audit_log').select('hash').where('seq', '=', want.seq).executeTakeFirst();
    if (!row) return `row ${want.seq} missing (recorded outside the database)`;
    if (row.hash !== want.hash) return `row ${want.seq}: hash differs from the one recorded outside the database`;
  }
  return null;
}

interface Logger {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Writes a signed checkpoint whenever the head moved: every `everyMs`, and once more on `stop`. */
export function startCheckpoints(options: { store: Store; key: Buffer; file?: string; log: Logger; everyMs?: number }): () => Promise<void> {
  let last = '';
  const write = async () => {
    try {
      const head = await readHead(options.store.db);
      const id = `${Number(head.seq)}:${head.hash}`;
      if (id === last || Number(head.seq) === 0) return;
      last = id;
      const checkpoint = signCheckpoint(options.key, head);
      options.log.info({ audit_checkpoint: checkpoint }, 'audit checkpoint');
      if (options.file) appendFileSync(options.file, `${JSON.stringify(checkpoint)}\n`, { mode: 0o600 });
    } catch (error) {
      options.log.error({ err: error }, 'audit: checkpoint not written');
    }
  };
  const timer = setInterval(() => void write(), options.everyMs ?? 60_000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await write();
  };
}
