import { Redis } from 'ioredis';

/**
 * A Redis connection for limits, revocations and replay guards. Commands fail fast while Redis is
 * down (no offline queue), so callers can decide to fail closed instead of hanging.
 */
export function openRedis(url: string, keyPrefix: string): Redis {
  const redis = new Redis(url, {
    keyPrefix,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 2000,
    lazyConnect: false,
  });
  // Connection errors surface through failing commands; the event itself must not crash the process.
  redis.on('error', () => {});
  return redis;
}
