import type { Redis } from 'ioredis';

/** Failures allowed before back-off starts, per kind of key. */
export const FREE_ATTEMPTS = { account: 5, client: 20 } as const;
const MAX_BACKOFF_MS = 15 * 60_000;
const WINDOW_MS = 15 * 60_000;

export type ThrottleKey = { kind: keyof typeof FREE_ATTEMPTS; id: string };
export type ThrottleResult = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * Login throttling per account and per client address. Every attempt counts when it starts (so
 * a parallel burst cannot slip past before the first failures land); beyond the free attempts each
 * further one waits twice as long as the last (1 s, 2 s, 4 s … 15 min). A success clears the account.
 */
export interface LoginThrottle {
  attempt(keys: ThrottleKey[]): Promise<ThrottleResult>;
  succeeded(keys: ThrottleKey[]): Promise<void>;
}

const backoff = (count: number, free: number) => Math.min(1000 * 2 ** (count - free - 1), MAX_BACKOFF_MS);

export class MemoryLoginThrottle implements LoginThrottle {
  private readonly entries = new Map<string, { count: number; until: number; expires: number }>();

  async attempt(keys: ThrottleKey[]): Promise<ThrottleResult> {
    const now = Date.now();
    let wait = 0;
    for (const key of keys) {
      const entry = this.live(`${key.kind}:${key.id}`, now);
      if (entry && entry.until > now) wait = Math.max(wait, entry.until - now);
    }
    if (wait > 0) return { allowed: false, retryAfterSeconds: Math.ceil(wait / 1000) };
    for (const key of keys) {
      const name = `${key.kind}:${key.id}`;
      const entry = this.live(name, now) ?? { count: 0, until: 0, expires: 0 };
      entry.count += 1;
      entry.expires = now + WINDOW_MS;
      const free = FREE_ATTEMPTS[key.kind];
      if (entry.count > free) entry.until = now + backoff(entry.count, free);
      this.entries.set(name, entry);
    }
    if (this.entries.size > 100_000) this.prune(now);
    return { allowed: true };
  }

  async succeeded(keys: ThrottleKey[]): Promise<void> {
    for (const key of keys) {
      const name = `${key.kind}:${key.id}`;
      if (key.kind === 'account') this.entries.delete(name);
      else {
        const entry = this.entries.get(name);
        if (entry) entry.count = Math.max(0, entry.count - 1);
      }
    }
  }

  private live(name: string, now: number) {
    const entry = this.entries.get(name);
    if (entry && entry.expires <= now) {
      this.entries.delete(name);
      return undefined;
    }
    return entry;
  }

  private prune(now: number) {
    for (const [name, entry] of this.entries) if (entry.expires <= now) this.entries.delete(name);
  }
}

// Same rules as the memory throttle, atomically in Redis. KEYS: counters; ARGV: now, window, max, free per key.
const ATTEMPT = `
local now = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  local u = tonumber(redis.call('HGET', key, 'until') or '0')
  if u - now > wait then wait = u - now end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  local count = redis.call('HINCRBY', key, 'count', 1)
  local free = tonumber(ARGV[3 + i])
  if count > free then
    redis.call('HSET', key, 'until', now + math.min(1000 * 2 ^ (count - free - 1), tonumber(ARGV[3])))
  end
  redis.call('PEXPIRE', key, tonumber(ARGV[2]))
end
return 0
`;

export class RedisLoginThrottle implements LoginThrottle {
  constructor(private readonly redis: Redis) {}

  async attempt(keys: ThrottleKey[]): Promise<ThrottleResult> {
    const names = keys.map((k) => `login:${k.kind}:${k.id}`);
    const frees = keys.map((k) => String(FREE_ATTEMPTS[k.kind]));
    const wait = Number(await this.redis.eval(ATTEMPT, names.length, ...names, String(Date.now()), String(WINDOW_MS), String(MAX_BACKOFF_MS), ...frees));
    return wait > 0 ? { allowed: false, retryAfterSeconds: Math.ceil(wait / 1000) } : { allowed: true };
  }

  async succeeded(keys: ThrottleKey[]): Promise<void> {
    const pipeline = this.redis.multi();
    for (const key of keys) {
      const name = `login:${key.kind}:${key.id}`;
      if (key.kind === 'account') pipeline.del(name);
      else pipeline.hincrby(name, 'count', -1);
    }
    await pipeline.exec();
  }
}
