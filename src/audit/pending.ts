import type { PendingRow } from './chain.js';
import type { AuditEvent } from './events.js';

/** Detail keys whose values are never stored, whatever a caller passes. */
const SECRET_KEY = /pass|token|secret|key|code|otp|prompt|authorization/i;
const MASK = '[masked]';
const MAX_TEXT = 500;
const MAX_DETAIL = 4000;
const MAX_DEPTH = 4;

function text(value: string | null | undefined, max = MAX_TEXT): string | null {
  if (value === undefined || value === null) return null;
  return value.length > max ? value.slice(0, max) : value;
}

function mask(value: unknown, depth: number): unknown {
  if (Array.isArray(value)) return depth >= MAX_DEPTH ? '[…]' : value.slice(0, 50).map((item) => mask(item, depth + 1));
  if (value !== null && typeof value === 'object') {
    if (depth >= MAX_DEPTH) return '[…]';
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) out[key] = SECRET_KEY.test(key) ? MASK : mask(inner, depth + 1);
    return out;
  }
  if (typeof value === 'string') return text(value);
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** Nothing to mask or bound: flat, short values under harmless keys (every request's own detail). */
function isPlain(detail: Record<string, unknown>): boolean {
  for (const key in detail) {
    const value = detail[key];
    if (typeof value === 'string' ? value.length > MAX_TEXT : value !== null && typeof value === 'object') return false;
    if (typeof value === 'bigint' || SECRET_KEY.test(key)) return false;
  }
  return true;
}

/** The detail as stored: secrets masked by key name, strings and depth bounded, JSON text. */
function maskDetail(detail: Record<string, unknown> | undefined): string | null {
  if (!detail) return null;
  const json = JSON.stringify(isPlain(detail) ? detail : mask(detail, 0));
  if (json === '{}') return null;
  return json.length > MAX_DETAIL ? JSON.stringify({ truncated: true, bytes: json.length }) : json;
}

export function pendingRow(event: AuditEvent, at: Date = new Date()): PendingRow {
  return {
    at: at.toISOString(),
    actor_id: text(event.actorId, 100),
    action: text(event.action, 100) ?? 'unknown',
    target: text(event.target),
    ip: text(event.ip, 64),
    request_id: text(event.requestId, 100),
    outcome: event.outcome,
    detail: maskDetail(event.detail),
  };
}

/**
 * An event as recorded: when (ms since the epoch) and what the caller said, as a tuple (a batch of
 * them is shorter JSON, quicker to write and to read, than the same events as objects).
 */
export type RecordedEvent = [
  at: number,
  action: string,
  outcome: AuditEvent['outcome'],
  actorId: string | null,
  target: string | null,
  ip: string | null,
  requestId: string | null,
  detail: Record<string, unknown> | null,
];

export function recorded(event: AuditEvent, at = Date.now()): RecordedEvent {
  const { action, outcome, actorId = null, target = null, ip = null, requestId = null, detail = null } = event;
  return [at, action, outcome, actorId, target, ip, requestId, detail];
}

export function rowOf([at, action, outcome, actorId, target, ip, requestId, detail]: RecordedEvent): PendingRow {
  return pendingRow({ action, outcome, actorId, target, ip, requestId, detail: detail ?? undefined }, new Date(at));
}

/**
 * A batch as one JSON text, the cheapest form to hand to another thread (one string, not a
 * structured clone of every row). Details JSON cannot carry as they are (a bigint, a cycle) are
 * masked first; an event that still cannot be written is left out and counted.
 */
export function encodeEvents(batch: RecordedEvent[]): { text: string; unwritable: number } {
  try {
    return { text: JSON.stringify(batch), unwritable: 0 };
  } catch {
    const parts: string[] = [];
    for (const event of batch) {
      try {
        const detail = event[7];
        parts.push(JSON.stringify(detail ? [...event.slice(0, 7), mask(detail, 0)] : event));
      } catch {
        // counted below
      }
    }
    return { text: `[${parts.join(',')}]`, unwritable: batch.length - parts.length };
  }
}

export function decodeEvents(text: string): PendingRow[] {
  return (JSON.parse(text) as RecordedEvent[]).map(rowOf);
}
