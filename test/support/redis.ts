import { Redis } from 'ioredis';

/** Removes every Redis key a test's prefix made (BullMQ's keys included, which drop the trailing colon). */
export async function removeRedisKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url);
  try {
    const keys = await redis.keys(`${prefix.replace(/:$/, '')}*`);
    if (keys.length > 0) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
}
