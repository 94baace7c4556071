import { once } from 'node:events';
import type { Redis } from 'ioredis';

/** The outcome of charging one key: whether it fit, what is left and when the window ends. */
export interface RateDecision {
  allowed: boolean;
  /** units left in the window after this charge (0 when refused) */
  remaining: number;
  /** milliseconds until the window resets */
  resetMs: number;
}

/**
 * Fixed windows: the first charge of a key opens a window of `windowMs`; charges are added while
 * they fit in `quota`; a charge that does not fit is refused and not counted, so a weighted video
 * refused near the limit leaves the remaining units for cheaper requests.
 */
export interface RateStore {
  /** answered at once by a store in this process, by a promise from a shared one */
  consume(key: string, cost: number, quota: number, windowMs: number): RateDecision | Promise<RateDecision>;
  close?(): void;
}

interface Window {
  used: number;
  resetAt: number;
}

/** Embedded mode: one process, one Map; bounded, expired windows pruned as it grows. */
export class MemoryRateStore implements RateStore {
  private readonly windows = new Map<string, Window>();
  private nextSweep = 0;

  constructor(
    private readonly maxKeys = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  consume(key: string, cost: number, quota: number, windowMs: number): RateDecision {
    const now = this.now();
    let window = this.windows.get(key);
    if (!window || window.resetAt <= now) {
      if (window) this.windows.delete(key);
      this.makeRoom(now);
      window = { used: 0, resetAt: now + windowMs };
      this.windows.set(key, window);
    }
    const resetMs = window.resetAt - now;
    if (window.used + cost > quota) return { allowed: false, remaining: Math.max(0, quota - window.used), resetMs };
    window.used += cost;
    return { allowed: true, remaining: quota - window.used, resetMs };
  }

  get size(): number {
    return this.windows.size;
  }

  private makeRoom(now: number): void {
    if (this.windows.size < this.maxKeys && now < this.nextSweep) return;
    this.nextSweep = now + 10_000;
    for (const [key, window] of this.windows) if (window.resetAt <= now) this.windows.delete(key);
    // Still full of live windows (a flood of distinct keys): drop the oldest ones. A dropped key
    // starts afresh, which errs toward letting a request through, never toward refusing one.
    for (const key of this.windows.keys()) {
      if (this.windows.size < this.maxKeys) break;
      this.windows.delete(key);
    }
  }
}

/**
 * Check, charge and read the window in one atomic step (one round trip). Returns
 * {allowed 0|1, used, pttl}. A refused charge is not counted.
 */
const CONSUME_SCRIPT = `
local cost = tonumber(ARGV[1])
local quota = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('DEL', KEYS[1])
  used = 0
  ttl = tonumber(ARGV[3])
end
if used + cost > quota then
  return {0, used, ttl}
end
used = redis.call('INCRBY', KEYS[1], cost)
if used == cost then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, used, ttl}
`;

type ConsumeCommand = (key: string, cost: number, quota: number, windowMs: number) => Promise<[number, number, number]>;

/** Scale-out mode: every API instance charges the same Redis keys, so they share one budget. */
export class RedisRateStore implements RateStore {
  constructor(private readonly redis: Redis) {
    if (!(redis as unknown as { celforgeRateConsume?: unknown }).celforgeRateConsume) {
      redis.defineCommand('celforgeRateConsume', { numberOfKeys: 1, lua: CONSUME_SCRIPT });
    }
  }

  /**
   * Waits until the connection is up (or has failed once, or `timeoutMs` passed), so the first
   * requests after start are not refused for a connection still being made.
   */
  async ready(timeoutMs = 2000): Promise<void> {
    if (this.redis.status === 'ready') return;
    // an 'error' ends the wait too (events.once rejects on it): the first answer decides
    await once(this.redis, 'ready', { signal: AbortSignal.timeout(timeoutMs) }).catch(() => undefined);
  }

  async consume(key: string, cost: number, quota: number, windowMs: number): Promise<RateDecision> {
    const command = (this.redis as unknown as { celforgeRateConsume: ConsumeCommand }).celforgeRateConsume;
    const [allowed, used, ttl] = await command.call(this.redis, `rl:${key}`, cost, quota, windowMs);
    return { allowed: allowed === 1, remaining: Math.max(0, quota - used), resetMs: Math.max(0, ttl) };
  }
}
