import { randomBytes } from 'node:crypto';
import type { EventBus } from '../../db/event-bus.js';

export type Eviction = { kind: 'key'; id: string } | { kind: 'user'; id: string };

interface Logger {
  warn(obj: object, msg: string): void;
}

const ACK_WAIT_MS = 1000;

/**
 * Tells every instance to drop cached key rows (scale-out mode).
 *
 * Each instance subscribes to `<channel>` and `<channel>:ack` on its event bus. An instance that
 * applies an eviction acknowledges it; `publish` returns once as many instances as Redis delivered
 * the message to have acknowledged (or after a second), so when a revoke answers, every instance
 * already refuses the key. While an instance's subscription is not live (starting, Redis down,
 * reconnecting) it must not trust its cache (`live` is false), and it clears the cache whenever the
 * subscription comes back, since evictions may have been missed meanwhile.
 */
export class EvictionBus {
  #live = false;
  readonly #unsubscribe: (() => void)[] = [];
  readonly #waiting = new Map<string, { needed: number; seen: number; done: () => void }>();
  readonly #ackChannel: string;

  constructor(
    private readonly bus: EventBus | null,
    private readonly channel: string,
    private readonly apply: (eviction: Eviction | 'all') => void,
    private readonly log: Logger,
  ) {
    this.#ackChannel = `${channel}:ack`;
    if (!bus) {
      this.#live = true;
      return;
    }
    this.#unsubscribe.push(
      bus.subscribe(this.#ackChannel, (nonce) => this.#acknowledged(nonce)),
      bus.subscribe(channel, (text) => this.#evicted(text), {
        onResync: () => this.apply('all'),
        onLive: (live) => (this.#live = live),
      }),
    );
  }

  /** True when cached rows may be trusted: no Redis, or a live subscription. */
  get live(): boolean {
    return this.#live;
  }

  /** Publishes an eviction (the caller has applied it locally) and waits for every instance to apply it. */
  async publish(eviction: Eviction): Promise<void> {
    if (!this.bus) return;
    const nonce = randomBytes(12).toString('base64url');
    let entry!: { needed: number; seen: number; done: () => void };
    const confirmed = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => finish(false), ACK_WAIT_MS);
      timer.unref();
      const waiting = this.#waiting;
      function finish(all: boolean) {
        clearTimeout(timer);
        waiting.delete(nonce);
        resolve(all);
      }
      entry = { needed: Number.POSITIVE_INFINITY, seen: 0, done: () => finish(true) };
      waiting.set(nonce, entry);
    });
    try {
      entry.needed = await this.bus.publish(this.channel, JSON.stringify({ ...eviction, nonce }));
      if (entry.seen >= entry.needed) entry.done();
    } catch {
      // (logged by the bus) Instances that share this Redis lose their subscription too and stop trusting their caches.
      entry.done();
      return;
    }
    if (!(await confirmed)) this.log.warn({ eviction: eviction.kind }, 'api key eviction not confirmed by every instance within 1 s');
  }

  close(): void {
    this.#live = false;
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    for (const entry of [...this.#waiting.values()]) entry.done();
  }

  #evicted(text: string): void {
    const message = parse(text);
    if (!message) return;
    this.apply(message.eviction);
    this.bus!.publish(this.#ackChannel, message.nonce).catch(() => {
      // (logged by the bus) the evicting instance waits out its timeout
    });
  }

  #acknowledged(nonce: string): void {
    const entry = this.#waiting.get(nonce);
    if (!entry) return;
    entry.seen++;
    if (entry.seen >= entry.needed) entry.done();
  }
}

function parse(text: string): { eviction: Eviction; nonce: string } | null {
  try {
    const value = JSON.parse(text) as { kind?: unknown; id?: unknown; nonce?: unknown };
    if ((value.kind !== 'key' && value.kind !== 'user') || typeof value.id !== 'string' || typeof value.nonce !== 'string') return null;
    return { eviction: { kind: value.kind, id: value.id }, nonce: value.nonce };
  } catch {
    return null;
  }
}
