import type { Store } from '../db/database.js';
import type { EventBus } from '../db/event-bus.js';
import { sessionsRevokedSince, usersChangedSince } from './store.js';
import type { Role } from '../access/principal.js';
import type { AccessClaims } from './tokens.js';

/** A change that must end access tokens before they expire. `at` is epoch milliseconds. */
export type RevocationEvent =
  | { kind: 'session'; sid: string; userId: string; at: number }
  | { kind: 'user'; userId: string; role: Role; disabled: boolean; at: number };

export type Verdict = 'live' | 'revoked' | 'unavailable';

type Listener = (event: RevocationEvent) => void;

/**
 * The revocation view: what the bearer hot path asks after the (cached) signature check, with no
 * database round trip. It holds the sessions revoked and the users changed within the access-token
 * lifetime (older entries cannot matter: every token issued before them has expired).
 *
 * Sources of changes: this process (always applied at once), Redis pub/sub between API instances,
 * or the auth service's feed on a split API node. When its source is down the view says
 * "unavailable" and the caller answers 503: it never guesses "live".
 */
export class RevocationView {
  private readonly sessions = new Map<string, number>();
  private readonly users = new Map<string, { role: Role; disabled: boolean; at: number }>();
  private readonly listeners = new Set<Listener>();
  private readonly retentionMs: number;
  private ready = true;
  private timer?: NodeJS.Timeout;
  private lastPrune = Date.now();

  constructor(accessTokenTtlSeconds: number) {
    // token lifetime + the verifier's clock tolerance + a margin
    this.retentionMs = (accessTokenTtlSeconds + 65) * 1000;
  }

  check(claims: AccessClaims): Verdict {
    if (!this.ready) return 'unavailable';
    if (this.sessions.has(claims.sid)) return 'revoked';
    const user = this.users.get(claims.sub);
    if (user && (user.disabled || user.role !== claims.role)) return 'revoked';
    return 'live';
  }

  /** Applies a change here; the publisher (if any) also tells the other instances. */
  apply(event: RevocationEvent): void {
    const now = Date.now();
    if (event.at < now - this.retentionMs) return;
    if (event.kind === 'session') {
      this.sessions.set(event.sid, event.at);
    } else {
      const known = this.users.get(event.userId);
      // the same change again (a resync) is no news: listeners hear each change once
      if (known && known.at >= event.at) return;
      this.users.set(event.userId, { role: event.role, disabled: event.disabled, at: event.at });
    }
    for (const listener of this.listeners) listener(event);
    if (now - this.lastPrune > 60_000) this.prune(now);
  }

  /** Everything still relevant, for a feed subscriber that just connected. */
  snapshot(): RevocationEvent[] {
    this.prune(Date.now());
    const events: RevocationEvent[] = [];
    // The user id of a session is not kept in memory; subscribers need only the sid.
    for (const [sid, at] of this.sessions) events.push({ kind: 'session', sid, userId: '', at });
    for (const [userId, u] of this.users) events.push({ kind: 'user', userId, role: u.role, disabled: u.disabled, at: u.at });
    return events;
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  setReady(ready: boolean): void {
    this.ready = ready;
  }

  isReady(): boolean {
    return this.ready;
  }

  /** Loads the recent changes from the store (start, reconnect, periodic resync). */
  async loadFrom(store: Store): Promise<void> {
    const since = new Date(Date.now() - this.retentionMs).toISOString();
    const [sessions, users] = await Promise.all([sessionsRevokedSince(store.db, since), usersChangedSince(store.db, since)]);
    for (const s of sessions) this.apply({ kind: 'session', sid: s.id, userId: s.user_id, at: Date.parse(s.revoked_at!) });
    for (const u of users) this.apply({ kind: 'user', userId: u.id, role: u.role, disabled: u.disabled === 1, at: Date.parse(u.updated_at) });
  }

  /** Resyncs from the store now and then, so a missed message heals within `everyMs`. */
  resyncEvery(store: Store, everyMs: number, onError: (error: unknown) => void): void {
    this.timer = setInterval(() => void this.loadFrom(store).catch(onError), everyMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.listeners.clear();
  }

  private prune(now: number): void {
    this.lastPrune = now;
    const cutoff = now - this.retentionMs;
    for (const [sid, at] of this.sessions) if (at < cutoff) this.sessions.delete(sid);
    for (const [userId, u] of this.users) if (u.at < cutoff) this.users.delete(userId);
  }
}

/** Publishes changes: applied here at once, and sent to the other instances when there are any. */
export interface RevocationPublisher {
  publish(event: RevocationEvent): Promise<void>;
  close(): Promise<void>;
}

export function localPublisher(view: RevocationView): RevocationPublisher {
  return {
    async publish(event) {
      view.apply(event);
    },
    async close() {
      view.close();
    },
  };
}

export function isRevocationEvent(value: unknown): value is RevocationEvent {
  if (typeof value !== 'object' || value === null) return false;
  const e = value as Record<string, unknown>;
  if (typeof e.at !== 'number' || !Number.isFinite(e.at)) return false;
  if (e.kind === 'session') return typeof e.sid === 'string' && typeof e.userId === 'string';
  if (e.kind === 'user') return typeof e.userId === 'string' && (e.role === 'admin' || e.role === 'user') && typeof e.disabled === 'boolean';
  return false;
}

/**
 * Redis pub/sub between API instances, on the process's event bus. Until the subscription is live
 * and the view reloaded from the store (at start and after every reconnect), the view is
 * unavailable (fail closed).
 */
export async function redisPublisher(options: {
  view: RevocationView;
  bus: EventBus;
  prefix: string;
  store: Store;
  onError: (error: unknown) => void;
}): Promise<RevocationPublisher> {
  const { view, bus, store, onError } = options;
  const channel = `${options.prefix}revocations`;
  view.setReady(false);
  const unsubscribe = bus.subscribe(
    channel,
    (message) => {
      try {
        const event: unknown = JSON.parse(message);
        if (isRevocationEvent(event)) view.apply(event);
      } catch {
        // not ours: ignore
      }
    },
    { onResync: () => view.loadFrom(store), onLive: (live) => view.setReady(live) },
  );
  // A Redis that is down at start does not block start-up: the view stays unavailable (503) until it is back.
  await within(bus.ready(), 3_000);
  view.resyncEvery(store, 30_000, onError);
  return {
    async publish(event) {
      view.apply(event);
      // The store already holds the change; if Redis does not take it (the bus logs that), the
      // others heal at their next resync or reconnect.
      await bus.publish(channel, JSON.stringify(event)).catch(() => undefined);
    },
    async close() {
      unsubscribe();
      view.close();
    },
  };
}

/** Waits for `promise`, but no longer than `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
