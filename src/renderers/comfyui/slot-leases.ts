import type { Redis } from 'ioredis';
import type { EventBus } from '../../db/event-bus.js';
import { openRedis } from '../../db/redis.js';

/**
 * Backend places shared by every Celforge worker in scale-out: per backend a Redis sorted set of
 * leases (token → expiry, by Redis' clock), so however many processes schedule on a ComfyUI
 * server, it never holds more than its depth of their prompts. A lease is renewed while its
 * prompt runs and released when it ends; a crashed worker's leases run out on their own.
 */

/** How many leases a backend holds across all workers; `version` orders reports of it. */
export interface SlotCount {
  held: number;
  version: number;
  /** the backend's depth for every worker (the first live worker's setting), when one is set */
  depth?: number;
}

export interface SlotLedger {
  /**
   * takes a place of `backend` for `token` if one is free (expired leases first cleared): its
   * fleet-wide depth, one more for an urgent run. `depth` is this worker's setting; the fleet's
   * (the answer's) wins while any worker holds leases there.
   */
  reserve(backend: string, token: string, depth: number, urgent: boolean): Promise<SlotCount & { ok: boolean }>;
  /** gives the place back (no-op when it had already expired) */
  release(backend: string, token: string): Promise<SlotCount>;
  /** the current counts, clearing expired leases */
  count(backends: string[]): Promise<SlotCount[]>;
  /** a worker's mean render time of a job kind on a backend, for every process's ETAs */
  recordRenderMs(backend: string, kind: string, ms: number): Promise<void>;
  /** per backend: the mean render time per job kind the workers last recorded */
  renderTimes(backends: string[]): Promise<Record<string, number>[]>;
  /** told of every change any worker makes (a place taken, given back, or expired) */
  onChange(listener: (backend: string, count: SlotCount) => void): void;
  close(): Promise<void>;
}

// Redis' clock for every worker; before Redis 7 a script must replicate its effects to write after TIME.
const NOW = `if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;
// Clears expired leases; a change bumps the version and is announced.
const SWEEP = `
local function changed(key, versionKey, channel, backend)
  local v = redis.call('INCR', versionKey)
  local held = redis.call('ZCARD', key)
  redis.call('PUBLISH', channel, v .. ' ' .. held .. ' ' .. backend)
  return v
end
local function sweep(key, versionKey, channel, backend, now)
  if redis.call('ZREMRANGEBYSCORE', key, '-inf', now) > 0 then changed(key, versionKey, channel, backend) end
end`;

/**
 * KEYS: leases, version, depth. ARGV: token, depth, urgent (0/1), lease ms, channel, backend → ok,
 * held, version, depth. The depth key is the fleet's: set by the first worker to reserve, kept
 * while leases are, so every worker fills a backend to one depth.
 */
const RESERVE = `${NOW} ${SWEEP}
sweep(KEYS[1], KEYS[2], ARGV[5], ARGV[6], now)
local lease = tonumber(ARGV[4])
local depth = tonumber(redis.call('GET', KEYS[3]) or ARGV[2])
redis.call('SET', KEYS[3], depth, 'PX', lease * 2)
local ok = 0
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  ok = 1
elseif redis.call('ZCARD', KEYS[1]) < depth + tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  changed(KEYS[1], KEYS[2], ARGV[5], ARGV[6])
  ok = 1
end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return { ok, redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'), depth }`;

/** KEYS: leases, version. ARGV: token, channel, backend → held, version */
const RELEASE = `${NOW} ${SWEEP}
if redis.call('ZREM', KEYS[1], ARGV[1]) > 0 then changed(KEYS[1], KEYS[2], ARGV[2], ARGV[3]) end
sweep(KEYS[1], KEYS[2], ARGV[2], ARGV[3], now)
return { redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0') }`;

/**
 * KEYS: leases, version, depth. ARGV: lease ms, channel, backend, tokens… → how many had been lost.
 * A lost lease (a stalled worker, Redis restarted without its data) is taken again even above the
 * cap: its prompt is on the backend, so the count must say so.
 */
const RENEW = `${NOW} ${SWEEP}
sweep(KEYS[1], KEYS[2], ARGV[2], ARGV[3], now)
local lease = tonumber(ARGV[1])
local lost = 0
for i = 4, #ARGV do
  if redis.call('ZADD', KEYS[1], now + lease, ARGV[i]) > 0 then lost = lost + 1 end
end
if lost > 0 then changed(KEYS[1], KEYS[2], ARGV[2], ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], lease * 2)
redis.call('PEXPIRE', KEYS[3], lease * 2)
return lost`;

/** KEYS: leases, version, depth. ARGV: channel, backend → held, version, depth (0: none set) */
const COUNT = `${NOW} ${SWEEP}
sweep(KEYS[1], KEYS[2], ARGV[1], ARGV[2], now)
return { redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(redis.call('GET', KEYS[3]) or '0') }`;

/** How long a command waits for the first connection before it is tried (and fails) anyway. */
const CONNECT_WAIT_MS = 2_000;

interface LeaseCommands {
  fleetReserve(leases: string, version: string, depthKey: string, token: string, depth: number, urgent: number, leaseMs: number, channel: string, backend: string): Promise<[number, number, number, number]>;
  fleetRelease(leases: string, version: string, token: string, channel: string, backend: string): Promise<[number, number]>;
  fleetRenew(leases: string, version: string, depthKey: string, leaseMs: number, channel: string, backend: string, ...tokens: string[]): Promise<number>;
  fleetCount(leases: string, version: string, depthKey: string, channel: string, backend: string): Promise<[number, number, number]>;
}

export interface RedisSlotLedgerOptions {
  url: string;
  /** the deployment's key prefix (CELFORGE_REDIS_PREFIX); the change channel carries it too */
  prefix: string;
  /** how long a lease lasts without renewal: a crashed worker's places return after this */
  leaseMs: number;
  /** the process's pub/sub, on which changes are heard */
  bus: EventBus;
}

export class RedisSlotLedger implements SlotLedger {
  readonly #redis: Redis & LeaseCommands;
  readonly #stopListening: () => void;
  readonly #channel: string;
  readonly #leaseMs: number;
  /** this process's live leases: backend → tokens */
  readonly #held = new Map<string, Set<string>>();
  readonly #listeners: ((backend: string, count: SlotCount) => void)[] = [];
  readonly #renewTimer: NodeJS.Timeout;
  #connecting: Promise<void> | undefined;

  constructor(options: RedisSlotLedgerOptions) {
    this.#leaseMs = options.leaseMs;
    this.#channel = `${options.prefix}fleet:slots`;
    const redis = openRedis(options.url, options.prefix);
    redis.defineCommand('fleetReserve', { numberOfKeys: 3, lua: RESERVE });
    redis.defineCommand('fleetRelease', { numberOfKeys: 2, lua: RELEASE });
    redis.defineCommand('fleetRenew', { numberOfKeys: 3, lua: RENEW });
    redis.defineCommand('fleetCount', { numberOfKeys: 3, lua: COUNT });
    this.#redis = redis as Redis & LeaseCommands;
    this.#stopListening = options.bus.subscribe(this.#channel, (message) => this.#announce(message));
    this.#renewTimer = setInterval(() => void this.#renew(), Math.max(50, Math.floor(options.leaseMs / 3)));
    this.#renewTimer.unref();
  }

  async reserve(backend: string, token: string, depth: number, urgent: boolean): Promise<SlotCount & { ok: boolean }> {
    await this.#connected();
    const [ok, held, version, fleetDepth] = await this.#redis.fleetReserve(...keys(backend), depthKey(backend), token, depth, urgent ? 1 : 0, this.#leaseMs, this.#channel, backend);
    if (ok === 1) this.#tokens(backend).add(token);
    return { ok: ok === 1, held, version, depth: fleetDepth };
  }

  async release(backend: string, token: string): Promise<SlotCount> {
    this.#held.get(backend)?.delete(token);
    await this.#connected();
    const [held, version] = await this.#redis.fleetRelease(...keys(backend), token, this.#channel, backend);
    return { held, version };
  }

  async count(backends: string[]): Promise<SlotCount[]> {
    await this.#connected();
    return Promise.all(
      backends.map(async (backend) => {
        const [held, version, depth] = await this.#redis.fleetCount(...keys(backend), depthKey(backend), this.#channel, backend);
        return depth > 0 ? { held, version, depth } : { held, version };
      }),
    );
  }

  async recordRenderMs(backend: string, kind: string, ms: number): Promise<void> {
    await this.#connected();
    await this.#redis.hset(renderKey(backend), kind, String(Math.round(ms)));
  }

  async renderTimes(backends: string[]): Promise<Record<string, number>[]> {
    await this.#connected();
    return Promise.all(
      backends.map(async (backend) => {
        const times: Record<string, number> = {};
        for (const [kind, ms] of Object.entries(await this.#redis.hgetall(renderKey(backend)))) if (Number(ms) > 0) times[kind] = Number(ms);
        return times;
      }),
    );
  }

  onChange(listener: (backend: string, count: SlotCount) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    clearInterval(this.#renewTimer);
    this.#stopListening();
    // Leases still held are left to expire: their prompts may still be on the backends.
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }

  /** Waits for the first connection (commands fail fast without one); a lost connection fails at once. */
  #connected(): Promise<void> {
    const status = this.#redis.status;
    if (status === 'ready' || !['wait', 'connecting', 'connect'].includes(status)) return Promise.resolve();
    this.#connecting ??= new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#redis.off('ready', done);
        this.#connecting = undefined;
        resolve();
      };
      const timer = setTimeout(done, CONNECT_WAIT_MS);
      this.#redis.once('ready', done);
    });
    return this.#connecting;
  }

  #tokens(backend: string): Set<string> {
    let tokens = this.#held.get(backend);
    if (!tokens) this.#held.set(backend, (tokens = new Set()));
    return tokens;
  }

  async #renew(): Promise<void> {
    for (const [backend, tokens] of this.#held) {
      if (tokens.size === 0) continue;
      // A failed renewal is retried on the next tick, well within the lease.
      await this.#redis.fleetRenew(...keys(backend), depthKey(backend), this.#leaseMs, this.#channel, backend, ...tokens).catch(() => undefined);
    }
  }

  #announce(message: string): void {
    const match = /^(\d+) (\d+) (.+)$/s.exec(message);
    if (!match) return;
    const count = { version: Number(match[1]), held: Number(match[2]) };
    for (const listener of this.#listeners) {
      try {
        listener(match[3]!, count);
      } catch {
        // a listener's fault is its own
      }
    }
  }
}

function keys(backend: string): [string, string] {
  return [`fleet:slots:${backend}`, `fleet:slots-version:${backend}`];
}

function renderKey(backend: string): string {
  return `fleet:render-ms:${backend}`;
}

function depthKey(backend: string): string {
  return `fleet:depth:${backend}`;
}
