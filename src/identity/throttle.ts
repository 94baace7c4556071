import type { Redis } from 'ioredis';

/**
 * What is counted, and how:
 * - `pair`: one account from one address. Beyond the free attempts it refuses, with back-off.
 * - `client`: one address, whatever the account. Refuses, with back-off.
 * - `factor`: a signed-in user's password or second factor (password change, 2FA codes). Refuses.
 * - `account`: the account from every address. It never refuses — that would let anyone lock
 *   anyone out —, it only delays attempts from addresses that have not signed in to it before.
 */
export const FREE_ATTEMPTS = { pair: 5, client: 20, factor: 5, account: 10 } as const;
export type ThrottleKind = keyof typeof FREE_ATTEMPTS;
const MAX_BACKOFF_MS = 15 * 60_000;
/** The longest the account-wide limit holds an attempt back. */
export const MAX_ACCOUNT_DELAY_MS = 3_000;
const WINDOW_MS = 15 * 60_000;
/** An address that signed in to an account skips its account-wide delay for this long. */
const KNOWN_DEVICE_MS = 30 * 86_400_000;

export type ThrottleKey = { kind: ThrottleKind; id: string };
export type ThrottleResult = { allowed: true; delayMs: number } | { allowed: false; retryAfterSeconds: number };

/**
 * Sign-in and secret-check throttling. Every attempt counts when it starts (so a parallel burst
 * cannot slip past before the first failures land); beyond the free attempts each further one waits
 * twice as long as the last (1 s, 2 s, 4 s … 15 min), as a refusal (`pair`, `client`, `factor`) or,
 * for `account`, as a delay of at most MAX_ACCOUNT_DELAY_MS that known addresses skip. A success
 * clears its `pair` and `factor` counters, marks the pair's address as known, and gives one
 * attempt back to the address.
 */
export interface LoginThrottle {
  attempt(keys: ThrottleKey[]): Promise<ThrottleResult>;
  succeeded(keys: ThrottleKey[]): Promise<void>;
}

const backoff = (count: number, free: number) => Math.min(1000 * 2 ** (count - free - 1), MAX_BACKOFF_MS);
const refuses = (kind: ThrottleKind) => kind !== 'account';

export class MemoryLoginThrottle implements LoginThrottle {
  private readonly entries = new Map<string, { count: number; until: number; expires: number }>();
  private readonly known = new Map<string, number>();

  async attempt(keys: ThrottleKey[]): Promise<ThrottleResult> {
    const now = Date.now();
    let wait = 0;
    for (const key of keys) {
      const entry = refuses(key.kind) ? this.live(`${key.kind}:${key.id}`, now) : undefined;
      if (entry && entry.until > now) wait = Math.max(wait, entry.until - now);
    }
    if (wait > 0) return { allowed: false, retryAfterSeconds: Math.ceil(wait / 1000) };
    const knownDevice = keys.some((key) => key.kind === 'pair' && (this.known.get(key.id) ?? 0) > now);
    let delayMs = 0;
    for (const key of keys) {
      const name = `${key.kind}:${key.id}`;
      const entry = this.live(name, now) ?? { count: 0, until: 0, expires: 0 };
      entry.count += 1;
      entry.expires = now + WINDOW_MS;
      const free = FREE_ATTEMPTS[key.kind];
      if (entry.count > free) {
        if (refuses(key.kind)) entry.until = now + backoff(entry.count, free);
        else if (!knownDevice) delayMs = Math.max(delayMs, Math.min(backoff(entry.count, free), MAX_ACCOUNT_DELAY_MS));
      }
      this.entries.set(name, entry);
    }
    if (this.entries.size > 100_000) this.prune(now);
    return { allowed: true, delayMs };
  }

  async succeeded(keys: ThrottleKey[]): Promise<void> {
    for (const key of keys) {
      const name = `${key.kind}:${key.id}`;
      if (key.kind === 'pair') this.known.set(key.id, Date.now() + KNOWN_DEVICE_MS);
      if (key.kind === 'pair' || key.kind === 'factor') this.entries.delete(name);
      else if (key.kind === 'client') {
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
    for (const [id, until] of this.known) if (until <= now) this.known.delete(id);
  }
}

// Same rules as the memory throttle, atomically in Redis.
// KEYS: the counters, then the known-device marker. ARGV: now, window, max back-off, max delay,
// then per counter its free attempts and 'r' (refuses) or 'd' (delays). Returns {allowed, ms}.
const ATTEMPT = `
local now = tonumber(ARGV[1])
local n = #KEYS - 1
local wait = 0
for i = 1, n do
  if ARGV[4 + 2 * i] == 'r' then
    local u = tonumber(redis.call('HGET', KEYS[i], 'until') or '0')
    if u - now > wait then wait = u - now end
  end
end
if wait > 0 then return {0, wait} end
local known = redis.call('EXISTS', KEYS[n + 1]) == 1
local delay = 0
for i = 1, n do
  local count = redis.call('HINCRBY', KEYS[i], 'count', 1)
  local free = tonumber(ARGV[3 + 2 * i])
  if count > free then
    local b = math.min(1000 * 2 ^ (count - free - 1), tonumber(ARGV[3]))
    if ARGV[4 + 2 * i] == 'r' then
      redis.call('HSET', KEYS[i], 'until', now + b)
    elseif not known then
      delay = math.max(delay, math.min(b, tonumber(ARGV[4])))
    end
  end
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]))
end
return {1, delay}
`;

export class RedisLoginThrottle implements LoginThrottle {
  constructor(private readonly redis: Redis) {}

  async attempt(keys: ThrottleKey[]): Promise<ThrottleResult> {
    const names = keys.map((k) => `login:${k.kind}:${k.id}`);
    const pair = keys.find((k) => k.kind === 'pair');
    const marker = pair ? `login:known:${pair.id}` : 'login:known:-';
    const perKey = keys.flatMap((k) => [String(FREE_ATTEMPTS[k.kind]), refuses(k.kind) ? 'r' : 'd']);
    const args = [String(Date.now()), String(WINDOW_MS), String(MAX_BACKOFF_MS), String(MAX_ACCOUNT_DELAY_MS), ...perKey];
    const [allowed, ms] = (await this.redis.eval(ATTEMPT, names.length + 1, ...names, marker, ...args)) as [number, number];
    return allowed === 1 ? { allowed: true, delayMs: Number(ms) } : { allowed: false, retryAfterSeconds: Math.ceil(Number(ms) / 1000) };
  }

  async succeeded(keys: ThrottleKey[]): Promise<void> {
    const pipeline = this.redis.multi();
    for (const key of keys) {
      const name = `login:${key.kind}:${key.id}`;
      if (key.kind === 'pair') pipeline.set(`login:known:${key.id}`, '1', 'PX', KNOWN_DEVICE_MS);
      if (key.kind === 'pair' || key.kind === 'factor') pipeline.del(name);
      else if (key.kind === 'client') pipeline.hincrby(name, 'count', -1);
    }
    await pipeline.exec();
  }
}
