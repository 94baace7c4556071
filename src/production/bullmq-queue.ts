import { Queue, Worker } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { FastifyBaseLogger } from 'fastify';
import type { Store } from '../db/database.js';
import type { EventBus } from '../db/event-bus.js';
import type { StoreOutage } from '../db/outage.js';
import { reconnectDelayMs, reportErrors, type RedisLog } from '../db/redis.js';
import { JobEvents, type JobEvent } from './events.js';
import type { JobQueue } from './queue.js';
import { countQueued, queuedJobs, type JobRow } from './store.js';
import type { JobWorker } from './worker.js';

const QUEUE_NAME = 'jobs';
const RECONCILE_BATCH = 1000;
const ENQUEUE_WAIT_MS = 1000;

/**
 * An announcement whose claim fails (the store is down) is tried again with back-off: 1 s, 2 s, …
 * up to 30 s apart. Past the last try it lands in BullMQ's failed set, where reconcile finds it.
 */
const CLAIM_TRIES = 40;
const CLAIM_BACKOFF = 'claim';
export function claimBackoffMs(attemptsMade: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, attemptsMade - 1));
}

function announcement(job: { id: string; attempts: number; run_after: string | null }) {
  return {
    name: 'render',
    data: { jobId: job.id },
    opts: {
      jobId: bullJobId(job),
      delay: delayOf(job.run_after),
      attempts: CLAIM_TRIES,
      backoff: { type: CLAIM_BACKOFF },
      removeOnComplete: true,
      removeOnFail: 1000,
    },
  };
}

export interface RedisSettings {
  url: string;
  /** e.g. `celforge:`; BullMQ keys and channels live under it */
  prefix: string;
  /** where connection errors are logged (once per outage) */
  log?: RedisLog;
  /** the process's pub/sub: job events and cancels */
  bus: EventBus;
}

function redisOptions(forWorker: boolean): RedisOptions {
  // BullMQ needs its own connections without a key prefix; workers must wait out Redis restarts.
  const reconnect = { retryStrategy: reconnectDelayMs };
  return forWorker ? { ...reconnect, maxRetriesPerRequest: null } : { ...reconnect, maxRetriesPerRequest: 2, connectTimeout: 2000 };
}

/** Disconnects; resolves once the client can report nothing more and what it reported has been handled. */
async function ended(redis: Redis): Promise<void> {
  // While waiting to retry, disconnect() only cancels the retry: no 'end' follows, and nothing else will.
  const end = redis.status === 'end' || redis.status === 'reconnecting' ? null : new Promise((resolve) => redis.once('end', resolve));
  redis.disconnect();
  await end;
  await new Promise((resolve) => setImmediate(resolve));
}

/**
 * A client given to BullMQ, and the copies BullMQ makes of it (a Worker's blocking connection).
 * Each BullMQ RedisConnection waits for its client to be ready and re-emits a failed wait as
 * 'error', but its close() first removes all its listeners: a wait that fails after that (the client
 * ends after an error) is re-thrown by `emit('error')` as an unhandled rejection. So a client whose
 * wait may still be pending is ended here before BullMQ closes, while it still listens; BullMQ itself
 * never ends a client it was given.
 */
class BullConnection extends Redis {
  readonly #copies: Redis[] = [];

  constructor(url: string, forWorker: boolean, log: RedisLog | undefined) {
    super(url, redisOptions(forWorker));
    reportErrors(this, log, 'bullmq');
  }

  override duplicate(override?: Partial<RedisOptions>): Redis {
    const copy = super.duplicate(override);
    this.#copies.push(copy);
    return copy;
  }

  async endAll(): Promise<void> {
    await Promise.all([this, ...this.#copies].map(ended));
  }
}

/** Whether a promise has already settled. */
function settled(promise: Promise<unknown>): Promise<boolean> {
  return Promise.race([promise.then(() => true, () => true), new Promise<boolean>((resolve) => setImmediate(() => resolve(false)))]);
}

function bullPrefix(prefix: string): string {
  return prefix.replace(/:+$/, '') || 'celforge';
}

/** The BullMQ job id of a store job at a given attempt count: a retry is a new BullMQ job. */
function bullJobId(job: { id: string; attempts: number }): string {
  return `${job.id}-${job.attempts}`;
}

function delayOf(runAfter: string | null): number {
  return runAfter ? Math.max(0, Date.parse(runAfter) - Date.now()) : 0;
}

/**
 * Scale-out: BullMQ on Redis carries job ids to `celforge worker` processes on any machine. The
 * store row stays the truth (workers claim it there, exactly once); Redis only says "look at this
 * job now". Queued rows are re-announced periodically, so a job whose announcement was lost (API
 * crash between insert and add, Redis flush) still runs.
 */
export class BullMQQueue implements JobQueue {
  readonly #queue: Queue;
  readonly #connection: BullConnection;
  readonly #bus: EventBus;
  readonly #channel: string;

  constructor(
    private readonly store: Store,
    settings: RedisSettings,
  ) {
    this.#connection = new BullConnection(settings.url, false, settings.log);
    this.#queue = new Queue(QUEUE_NAME, { connection: this.#connection, prefix: bullPrefix(settings.prefix) });
    // the connection's errors are logged by it; the queue repeats them
    this.#queue.on('error', () => {});
    this.#bus = settings.bus;
    this.#channel = cancelChannel(settings.prefix);
  }

  /**
   * The job is already stored, so it is accepted whatever Redis says: if the announcement fails or
   * is slow, the answer does not wait for it and the next reconcile announces the job.
   */
  async enqueue(job: JobRow): Promise<void> {
    const { name, data, opts } = announcement(job);
    const adding = this.#queue.add(name, data, opts).then(
      () => undefined,
      () => undefined,
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([adding, new Promise<void>((resolve) => (timer = setTimeout(resolve, ENQUEUE_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /**
   * Re-announces every queued row. BullMQ ignores an id it already holds, also one in its failed
   * set (claims that kept failing while the store was down): such entries are removed first, so
   * no queued job is left without a live announcement. Returns how many were revived.
   */
  async reconcile(): Promise<number> {
    const rows = await queuedJobs(this.store.db, RECONCILE_BATCH);
    if (rows.length === 0) return 0;
    const wanted = new Set(rows.map(bullJobId));
    const dead = (await this.#queue.getFailed(0, RECONCILE_BATCH - 1)).filter((job) => job.id !== undefined && wanted.has(job.id));
    await Promise.all(dead.map((job) => this.#queue.remove(job.id!)));
    await this.#queue.addBulk(rows.map(announcement));
    return dead.length;
  }

  async cancel(jobId: string): Promise<void> {
    // Workers stop a running render at once; a waiting announcement finds the row canceled and does
    // nothing. The row is canceled already: a cancel Redis did not take is logged by the bus.
    await this.#bus.publish(this.#channel, jobId).catch(() => undefined);
  }

  depth(): Promise<number> {
    return countQueued(this.store.db);
  }

  async close(): Promise<void> {
    // The queue leaves a connection it was given open. An announcement still in flight is lost; the
    // next reconcile makes up for it.
    await this.#connection.endAll();
    await this.#queue.close();
  }
}

function cancelChannel(prefix: string): string {
  return `${prefix}job-cancel`;
}

/** Job events shared by every process through Redis pub/sub, so any API node can stream any job. */
export class RedisJobEvents extends JobEvents {
  readonly #bus: EventBus;
  readonly #channel: string;
  readonly #origin = Math.random().toString(36).slice(2);
  readonly #unsubscribe: () => void;

  constructor(settings: { bus: EventBus; prefix: string }) {
    super();
    this.#bus = settings.bus;
    this.#channel = `${settings.prefix}job-events`;
    this.#unsubscribe = settings.bus.subscribe(this.#channel, (message) => {
      try {
        const { origin, event } = JSON.parse(message) as { origin: string; event: JobEvent };
        if (origin !== this.#origin) super.publish(event);
      } catch {
        // not ours
      }
    });
  }

  override publish(event: JobEvent): void {
    super.publish(event);
    // an event Redis did not take is logged by the bus
    this.#bus.publish(this.#channel, JSON.stringify({ origin: this.#origin, event })).catch(() => undefined);
  }

  close(): void {
    this.#unsubscribe();
  }
}

/** Feeds a JobWorker from BullMQ and relays cancels; `concurrency` jobs at once in this process. */
export class BullMQWorkerHost {
  readonly #worker: Worker;
  readonly #connection: BullConnection;
  readonly #stopCancels: () => void;
  readonly #timer: NodeJS.Timeout;

  constructor(
    jobWorker: JobWorker,
    queue: BullMQQueue,
    settings: RedisSettings & { concurrency: number; leaseMs: number; log: FastifyBaseLogger; outage?: StoreOutage },
  ) {
    this.#connection = new BullConnection(settings.url, true, settings.log);
    this.#worker = new Worker(QUEUE_NAME, async (job) => jobWorker.process(String((job.data as { jobId: string }).jobId)), {
      connection: this.#connection,
      prefix: bullPrefix(settings.prefix),
      concurrency: settings.concurrency,
      lockDuration: settings.leaseMs,
      stalledInterval: settings.leaseMs,
      maxStalledCount: 5,
      autorun: true,
      settings: { backoffStrategy: claimBackoffMs },
    });
    this.#worker.on('error', (error) => settings.log.error({ err: error }, 'BullMQ worker error'));
    this.#stopCancels = settings.bus.subscribe(cancelChannel(settings.prefix), (jobId) => jobWorker.interrupt(jobId));
    const reconcile = () =>
      void queue.reconcile().then(
        (revived) => {
          if (revived > 0) settings.log.warn({ revived }, 're-announced queued jobs whose announcements had failed');
        },
        (error: unknown) => {
          if (!settings.outage?.report(error)) settings.log.warn({ err: error }, 'could not re-announce queued jobs');
        },
      );
    this.#timer = setInterval(reconcile, Math.max(settings.leaseMs, 1000));
    this.#timer.unref();
    reconcile();
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#stopCancels();
    // Ready connections close gracefully (jobs finishing here are still acknowledged); ones still
    // waiting for Redis are ended first, see BullConnection.
    if (!(await settled(this.#worker.waitUntilReady()))) {
      // Paused first, so that a connection reported ready by its end does not start the fetch loop.
      await this.#worker.pause(true);
      await this.#connection.endAll();
    }
    await this.#worker.close();
    await this.#connection.endAll();
  }
}
