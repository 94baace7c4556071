import type { FastifyBaseLogger } from 'fastify';
import { UrlSigner } from '../assets/signed-urls.js';
import { loadUrlSigningKey } from '../config/local-secrets.js';
import { AssetStorage, openObjectStore } from '../assets/storage.js';
import type { Config } from '../config/config.js';
import type { Store } from '../db/database.js';
import { EventBus } from '../db/event-bus.js';
import { StoreOutage } from '../db/outage.js';
import { RedisSlotLedger } from '../renderers/comfyui/slot-leases.js';
import { createRenderer } from '../renderers/index.js';
import type { Renderer } from '../renderers/renderer.js';
import type { BullMQWorkerHost } from './bullmq-queue.js';
import { JobEvents } from './events.js';
import { claimFair, fairSharePolicy, recordGpuUse, type FairSharePolicy } from './fleet/fair-share.js';
import { LocalQueue } from './local-queue.js';
import { parseParams } from './params.js';
import { toVideoAssets, VideoError } from './video.js';
import type { JobQueue } from './queue.js';
import { JobWorker, type WorkerOptions } from './worker.js';

/** The job pipeline's parts, for the API, the worker command, tests and the benchmark. */
export interface ProductionServices {
  queue: JobQueue;
  events: JobEvents;
  renderer: Renderer;
  assets: AssetStorage;
  signer: UrlSigner;
  /** the fair-share policy workers claim by (the configuration's) */
  policy: FairSharePolicy;
  /** the worker in this process; null when built without one (`serve --only api`, tests) */
  worker: JobWorker | null;
  start(): Promise<void>;
  /** stops taking jobs and hands the running ones back to the queue (the first step of a shutdown) */
  quiesce(): Promise<void>;
  stop(): Promise<void>;
}

export interface ProductionOptions {
  /** run a job worker in this process */
  worker: boolean;
  /** a renderer instead of the configured one (tests) */
  renderer?: Renderer;
  /** where store outages are logged once (the app's); by default one of its own */
  outage?: StoreOutage;
  /** Redis pub/sub (the app's) when REDIS_URL is set; by default one of its own, closed on stop */
  bus?: EventBus | null;
  /** the asset storage and URL signer to use (the assets capability's); by default ones of its own, closed on stop */
  storage?: { assets: AssetStorage; signer: UrlSigner };
  /** the periodic clean-up a worker runs over the storage it writes (lifecycle's housekeeping) */
  housekeeping?: (storage: AssetStorage) => Sweeper;
  /** may refuse a job's results before they are uploaded and when they are committed (limits' storage quota) */
  resultQuota: NonNullable<WorkerOptions['resultQuota']>;
}

/** A periodic clean-up: one pass now, then on a timer until stopped. */
export interface Sweeper {
  sweep(): Promise<unknown>;
  start(): void;
  stop(): Promise<void>;
}

/**
 * Embedded (no REDIS_URL): the jobs table is the queue and the worker polls it. Scale-out: BullMQ
 * announces jobs to workers anywhere and Redis pub/sub carries events and cancels; the store stays
 * the truth in both.
 */
export async function createProduction(config: Config, store: Store, log: FastifyBaseLogger, options: ProductionOptions): Promise<ProductionServices> {
  const ownBus = config.redisUrl && !options.bus ? EventBus.open(config.redisUrl, config.redisPrefix, log) : null;
  const bus = options.bus ?? ownBus;
  const redis = config.redisUrl && bus ? { url: config.redisUrl, prefix: config.redisPrefix, log, bus } : null;
  const leaseMs = config.jobLeaseSeconds * 1000;
  // Scale-out workers share each ComfyUI backend's places through Redis leases, as they share jobs;
  // an API process reads them (fleet-wide prompts in flight, render times for ETAs).
  const sharedSlots = redis ? () => new RedisSlotLedger({ url: redis.url, prefix: redis.prefix, leaseMs, bus: redis.bus }) : undefined;
  const renderer = options.renderer ?? createRenderer(config, { sharedSlots });
  const assets = options.storage?.assets ?? new AssetStorage(await openObjectStore(config));
  const signer = options.storage?.signer ?? new UrlSigner(loadUrlSigningKey({ dataDir: config.dataDir, urlSigningKey: config.secrets.urlSigningKey }));
  // BullMQ is loaded only in scale-out (it is slow to load, and embedded has no use for it)
  const bull = redis ? await import('./bullmq-queue.js') : null;
  const events = bull && redis ? new bull.RedisJobEvents(redis) : new JobEvents();
  const bullQueue = bull && redis ? new bull.BullMQQueue(store, redis) : null;
  const localQueue = redis ? null : new LocalQueue(store);
  const queue: JobQueue = bullQueue ?? localQueue!;
  const ownOutage = options.outage ? null : new StoreOutage(store, log);
  const outage = options.outage ?? ownOutage!;
  const policy = fairSharePolicy(config);

  const worker = options.worker
    ? new JobWorker({
        store,
        renderer,
        events,
        assets,
        concurrency: config.workerConcurrency,
        jobTimeoutMs: config.jobTimeoutSeconds * 1000,
        leaseMs,
        log,
        source: bullQueue ? 'external' : 'store',
        onRequeue: bullQueue ? () => void bullQueue.reconcile().catch(() => 0) : undefined,
        outage,
        claimNext: (workerId, now, leaseUntil, claim) => claimFair(store, workerId, now, leaseUntil, policy, claim),
        resultQuota: options.resultQuota,
        finishOutputs: async (job, outputs, { signal, scratchDir }) => {
          if (job.type !== 'video') return outputs;
          try {
            const timeoutMs = Math.min(120_000, config.jobTimeoutSeconds * 1000);
            return await toVideoAssets(outputs, parseParams(job.params).fps, await scratchDir(), { timeoutMs }, signal);
          } catch (err) {
            signal.throwIfAborted();
            // The job still yields what the renderer made; ffmpeg missing or failing is the operator's to see.
            log[err instanceof VideoError && err.missing ? 'warn' : 'error']({ err, job: job.id }, 'could not make an MP4 of a video job');
            return outputs;
          }
        },
        onRendered: (job, renderMs) =>
          void recordGpuUse(store.db, job.user_id, renderMs, new Date(), policy).catch((err: unknown) => log.warn({ err }, 'could not record GPU use')),
      })
    : null;
  localQueue?.attach(worker);
  let host: BullMQWorkerHost | null = null;
  const quiesce = async () => {
    await worker?.stop();
    const closing = host;
    host = null;
    await closing?.close();
  };
  let housekeeping: Sweeper | null = null;

  return {
    queue,
    events,
    renderer,
    assets,
    signer,
    policy,
    worker,
    async start() {
      if (!worker) return;
      // Workers are the ones writing assets, so they sweep what killed writers left, orphans and expired jobs.
      housekeeping = options.housekeeping?.(assets) ?? null;
      await housekeeping?.sweep().catch((err: unknown) => log.warn({ err }, 'asset sweep failed'));
      housekeeping?.start();
      await worker.start();
      if (bull && bullQueue && redis) host = new bull.BullMQWorkerHost(worker, bullQueue, { ...redis, concurrency: config.workerConcurrency, leaseMs, log, outage });
    },
    quiesce,
    async stop() {
      await housekeeping?.stop();
      await quiesce();
      await queue.close();
      if (bull && events instanceof bull.RedisJobEvents) events.close();
      await renderer.close?.();
      ownOutage?.close();
      ownBus?.close();
      if (!options.storage) await assets.close();
    },
  };
}
