import { Redis } from 'ioredis';

/** Where a connection's errors go: a logger's `warn` (pino's shape). */
export interface RedisLog {
  warn(details: object, message: string): void;
}

/**
 * How long a lost connection waits before its next try: 50 ms more each time, at most 250 ms
 * (ioredis' own ramp reaches 2 s, and a Redis back from a restart would go unused, and requests
 * refused, for up to that long). One try a quarter second per connection costs Redis nothing.
 */
export function reconnectDelayMs(attempt: number): number {
  return Math.min(attempt * 50, 250);
}

/**
 * Logs a connection's errors once per outage, naming what the connection is for: ioredis emits
 * 'error' on every failed reconnect, and an unheard 'error' would crash the process. The next
 * outage (after 'ready') is logged again.
 */
export function reportErrors(redis: Redis, log: RedisLog | undefined, role: string): Redis {
  let reported = false;
  redis.on('error', (err: Error) => {
    if (reported) return;
    reported = true;
    log?.warn({ err, redis: role }, 'redis connection failing; retrying');
  });
  redis.on('ready', () => {
    reported = false;
  });
  return redis;
}

/**
 * A Redis connection for limits, revocations and replay guards. Commands fail fast while Redis is
 * down (no offline queue), so callers can decide to fail closed instead of hanging.
 */
export function openRedis(url: string, keyPrefix: string, log?: RedisLog): Redis {
  const redis = new Redis(url, {
    keyPrefix,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 2000,
    lazyConnect: false,
    retryStrategy: reconnectDelayMs,
  });
  // Connection errors also surface through failing commands, which their callers handle.
  return reportErrors(redis, log, 'shared');
}
