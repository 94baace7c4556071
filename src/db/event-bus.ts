import { Redis } from 'ioredis';
import { openRedis, reconnectDelayMs, reportErrors, type RedisLog } from './redis.js';

export type MessageHandler = (message: string) => void;

export interface SubscribeOptions {
  /**
   * Runs each time the subscription is (re)established, before it counts as live: messages sent
   * while it was down are lost, so this reloads what they would have said. A failure is logged and
   * tried again a second later.
   */
  onResync?: () => unknown;
  /** Told when the subscription becomes live (subscribed and resynced) and when the connection is lost. */
  onLive?: (live: boolean) => void;
}

interface Subscription {
  channel: string;
  handler: MessageHandler;
  options: SubscribeOptions;
  live: boolean;
}

export interface EventBusOptions {
  url: string;
  /** the shared connection messages are published on (a subscribed connection can do nothing else) */
  publisher: Redis;
  log?: RedisLog;
  /** the subscriber's CLIENT SETNAME */
  connectionName?: string;
  /** close the publisher with the bus (it was opened for it) */
  ownsPublisher?: boolean;
}

const RESYNC_RETRY_MS = 1000;

/**
 * Redis pub/sub for the whole process: one subscriber connection that every capability subscribes
 * through, and publishing through the shared connection. Channels are not covered by ioredis'
 * keyPrefix, so callers name them with the deployment's prefix. After a reconnect every channel is
 * subscribed again and its `onResync` runs; each distinct failure is logged once, with its channel,
 * until it clears.
 */
export class EventBus {
  readonly #subscriber: Redis;
  readonly #publisher: Redis;
  readonly #ownsPublisher: boolean;
  readonly #log: RedisLog | undefined;
  readonly #subscriptions = new Set<Subscription>();
  readonly #reported = new Set<string>();
  #waiters: (() => void)[] = [];
  /** bumped on every (re)connect and loss, so work begun on an earlier connection does not count */
  #epoch = 0;
  #up = false;
  #closed = false;

  /** A bus with a shared connection of its own (a process without the store plugin's). */
  static open(url: string, keyPrefix: string, log?: RedisLog): EventBus {
    return new EventBus({ url, publisher: openRedis(url, keyPrefix, log), log, ownsPublisher: true });
  }

  constructor(options: EventBusOptions) {
    this.#publisher = options.publisher;
    this.#ownsPublisher = options.ownsPublisher ?? false;
    this.#log = options.log;
    // Subscribed again on 'ready' by the bus itself, so that resyncs follow the subscription.
    const subscriber = new Redis(options.url, {
      connectionName: options.connectionName ?? 'celforge-events',
      connectTimeout: 2000,
      maxRetriesPerRequest: null,
      enableOfflineQueue: false,
      autoResubscribe: false,
      retryStrategy: reconnectDelayMs,
    });
    this.#subscriber = reportErrors(subscriber, options.log, 'event bus (subscribe)');
    subscriber.on('ready', () => this.#connected());
    subscriber.on('close', () => this.#lost());
    subscriber.on('message', (channel: string, message: string) => this.#deliver(channel, message));
  }

  /** Calls `handler` with each message on `channel` until the returned function is called. */
  subscribe(channel: string, handler: MessageHandler, options: SubscribeOptions = {}): () => void {
    const subscription: Subscription = { channel, handler, options, live: false };
    this.#subscriptions.add(subscription);
    if (this.#up) void this.#activate(subscription, this.#epoch);
    return () => this.#unsubscribe(subscription);
  }

  /** Resolves once connected with every subscription made so far live. */
  ready(): Promise<void> {
    if (this.#allLive()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Publishes on the shared connection; resolves to how many subscriber connections received it. */
  async publish(channel: string, message: string): Promise<number> {
    const failure = `publish:${channel}`;
    try {
      const receivers = await this.#publisher.publish(channel, message);
      this.#reported.delete(failure);
      return receivers;
    } catch (err) {
      this.#report(failure, { err, channel }, 'event bus: could not publish');
      throw err;
    }
  }

  close(): void {
    this.#closed = true;
    this.#epoch++;
    this.#up = false;
    this.#subscriptions.clear();
    this.#waiters = [];
    this.#subscriber.disconnect();
    if (this.#ownsPublisher) this.#publisher.disconnect();
  }

  #connected(): void {
    this.#up = true;
    const epoch = ++this.#epoch;
    for (const subscription of this.#subscriptions) void this.#activate(subscription, epoch);
    this.#settleWaiters();
  }

  #lost(): void {
    if (!this.#up) return;
    this.#up = false;
    this.#epoch++;
    for (const subscription of this.#subscriptions) {
      if (!subscription.live) continue;
      subscription.live = false;
      subscription.options.onLive?.(false);
    }
  }

  /** Subscribes and resyncs; counts as live only if the connection it began on is still up. */
  async #activate(subscription: Subscription, epoch: number): Promise<void> {
    const current = () => epoch === this.#epoch && this.#subscriptions.has(subscription);
    const failure = `subscribe:${subscription.channel}`;
    try {
      await this.#subscriber.subscribe(subscription.channel);
      if (!current()) return;
      await subscription.options.onResync?.();
    } catch (err) {
      if (!current()) return;
      this.#report(failure, { err, channel: subscription.channel }, 'event bus: could not subscribe and resync; retrying');
      setTimeout(() => current() && void this.#activate(subscription, epoch), RESYNC_RETRY_MS).unref();
      return;
    }
    if (!current()) return;
    this.#reported.delete(failure);
    subscription.live = true;
    subscription.options.onLive?.(true);
    this.#settleWaiters();
  }

  #unsubscribe(subscription: Subscription): void {
    if (!this.#subscriptions.delete(subscription)) return;
    const { channel } = subscription;
    if (!this.#up || [...this.#subscriptions].some((other) => other.channel === channel)) return;
    this.#subscriber.unsubscribe(channel).catch((err: unknown) => this.#report(`unsubscribe:${channel}`, { err, channel }, 'event bus: could not unsubscribe'));
  }

  #deliver(channel: string, message: string): void {
    for (const subscription of this.#subscriptions) {
      if (subscription.channel !== channel) continue;
      try {
        subscription.handler(message);
      } catch (err) {
        this.#report(`handler:${channel}`, { err, channel }, 'event bus: a message handler failed');
      }
    }
  }

  #allLive(): boolean {
    return this.#up && [...this.#subscriptions].every((subscription) => subscription.live);
  }

  #settleWaiters(): void {
    if (!this.#allLive()) return;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Logs a failure once until it clears (a handler's, once per channel). */
  #report(failure: string, details: object, message: string): void {
    // what fails while closing (an unsubscribe cut short) is no news
    if (this.#closed || this.#reported.has(failure)) return;
    this.#reported.add(failure);
    this.#log?.warn({ ...details, redis: 'event bus' }, message);
  }
}
