import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import type { Config } from '../config/config.js';
import { migrate, openStore, type Store } from './database.js';
import { EventBus } from './event-bus.js';
import { StoreOutage } from './outage.js';
import { openRedis } from './redis.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    /** the database every capability's store reads and writes (each its own tables) */
    store: Store;
    /** set in scale-out mode (REDIS_URL) */
    redis: Redis | null;
    /** Redis pub/sub between the processes of a deployment (with `redis`): one subscriber connection for all */
    bus: EventBus | null;
    /** while the store is out, the outage is logged once instead of each retry */
    outage: StoreOutage;
  }
}

export interface StorePluginOptions {
  config: Config;
  /** an open store to use (not closed with the app); by default the app opens its own */
  store?: Store;
}

/** What every capability stands on: the config, the migrated store, Redis when configured. Closed last. */
export const storePlugin = fp(
  async (app: FastifyInstance, options: StorePluginOptions) => {
    const { config } = options;
    const store = options.store ?? openStore(config);
    await migrate(store);
    const redis = config.redisUrl ? openRedis(config.redisUrl, config.redisPrefix, app.log) : null;
    const bus = redis ? new EventBus({ url: config.redisUrl!, publisher: redis, log: app.log }) : null;
    const outage = new StoreOutage(store, app.log);
    app.decorate('config', config);
    app.decorate('store', store);
    app.decorate('redis', redis);
    app.decorate('bus', bus);
    app.decorate('outage', outage);
    app.addHook('onClose', async () => {
      outage.close();
      bus?.close();
      redis?.disconnect();
      if (!options.store) await store.close();
    });
  },
  { name: 'store' },
);
