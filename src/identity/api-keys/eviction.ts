import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

export type Eviction = { kind: 'key'; id: string } | { kind: 'user'; id: string };

interface Logger {
  warn(obj: object, msg: string): void;
}

const ECHO_WAIT_MS = 1000;

/**
 * Tells every instance to drop cached key rows (scale-out mode). Each instance subscribes on a
 * second connection; while that subscription is not live (starting, Redis down, reconnecting) the
 * instance must not trust its cache (`live` is false), and it clears the cache whenever the
 * subscription comes back, since evictions may have been missed meanwhile.
 */
export class EvictionBus {
  #live = false;
  readonly #subscriber: Redis | null;
  readonly #waiting = new Map<string, () => void>();

  constructor(
    private readonly redis: Redis | null,
    private readonly channel: string,
    private readonly apply: (eviction: Eviction | 'all') => void,
    private readonly log: Logger,
  ) {
    if (!redis) {
      this.#subscriber = null;
      this.#live = true;
      return;
    }
    const subscriber = redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined });
    this.#subscriber = subscriber;
    subscriber.on('error', () => {});
    subscriber.on('close', () => {
      this.#live = false;
    });
    subscriber.on('ready', () => {
      subscriber.subscribe(channel).then(
        () => {
          this.apply('all');
          this.#live = true;
        },
        () => {},
      );
    });
    subscriber.on('message', (from: string, text: string) => {
      if (from !== channel) return;
      const message = parse(text);
      if (!message) return;
      this.apply(message.eviction);
      this.#waiting.get(message.nonce)?.();
    });
  }

  /** True when cached rows may be trusted: no Redis, or a live subscription. */
  get live(): boolean {
    return this.#live;
  }

  /**
   * Publishes an eviction (the caller has applied it locally) and waits, briefly, until it has come
   * back through Redis to this instance — by then Redis has handed it to every subscriber.
   */
  async publish(eviction: Eviction): Promise<void> {
    if (!this.redis) return;
    const nonce = randomBytes(12).toString('base64url');
    const echoed = new Promise<void>((resolve) => {
      const timer = setTimeout(done, ECHO_WAIT_MS);
      timer.unref();
      const waiting = this.#waiting;
      function done() {
        clearTimeout(timer);
        waiting.delete(nonce);
        resolve();
      }
      waiting.set(nonce, done);
    });
    try {
      await this.redis.publish(this.channel, JSON.stringify({ ...eviction, nonce }));
    } catch (error) {
      // Instances that share this Redis lose their subscription too and stop trusting their caches.
      this.#waiting.get(nonce)?.();
      this.log.warn({ err: error }, 'api key eviction not published');
      return;
    }
    await echoed;
  }

  close(): void {
    this.#live = false;
    this.#subscriber?.disconnect();
    for (const done of [...this.#waiting.values()]) done();
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
