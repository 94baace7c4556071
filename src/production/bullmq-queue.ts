import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { FastifyBaseLogger } from 'fastify';
import type { Store } from '../db/database.js';
import { JobEvents, type JobEvent } from './events.js';
import type { JobQueue } from './queue.js';
import { countQueued, queuedJobs, type JobRow } from './store.js';
import type { JobWorker } from './worker.js';

const QUEUE_NAME = 'jobs';
const RECONCILE_BATCH = 1000;
const ENQUEUE_WAIT_MS = 1000;

export interface RedisSettings {
  url: string;
  /** e.g. `celforge:`; BullMQ keys and channels live under it */
  prefix: string;
}

function connect(url: string, forWorker: boolean): Redis {
  // BullMQ needs its own connections without a key prefix; workers must wait out Redis restarts.
  const redis = new Redis(url, forWorker ? { maxRetriesPerRequest: null } : { maxRetriesPerRequest: 2, connectTimeout: 2000 });
  redis.on('error', () => {});
  return redis;
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
  readonly #publisher: Redis;
  readonly #channel: string;

  constructor(
    private readonly store: Store,
    settings: RedisSettings,
  ) {
    this.#queue = new Queue(QUEUE_NAME, { connection: connect(settings.url, false), prefix: bullPrefix(settings.prefix) });
    this.#queue.on('error', () => {});
    this.#publisher = connect(settings.url, false);
    this.#channel = `${settings.prefix}job-cancel`;
  }

  /**
   * The job is already stored, so it is accepted whatever Redis says: if the announcement fails or
   * is slow, the answer does not wait for it and the next reconcile announces the job.
   */
  async enqueue(job: JobRow): Promise<void> {
    const adding = this.#queue
      .add('render', { jobId: job.id }, { jobId: bullJobId(job), delay: delayOf(job.run_after), removeOnComplete: true, removeOnFail: 1000 })
      .then(() => undefined, () => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([adding, new Promise<void>((resolve) => (timer = setTimeout(resolve, ENQUEUE_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /** Re-announces every queued row (BullMQ ignores ids it already holds). */
  async reconcile(): Promise<void> {
    const rows = await queuedJobs(this.store.db, RECONCILE_BATCH);
    if (rows.length === 0) return;
    await this.#queue.addBulk(
      rows.map((row) => ({
        name: 'render',
        data: { jobId: row.id },
        opts: { jobId: bullJobId(row), delay: delayOf(row.run_after), removeOnComplete: true, removeOnFail: 1000 },
      })),
    );
  }

  async cancel(jobId: string): Promise<void> {
    // Workers stop a running render at once; a waiting announcement finds the row canceled and does nothing.
    await this.#publisher.publish(this.#channel, jobId);
  }

  depth(): Promise<number> {
    return countQueued(this.store.db);
  }

  async close(): Promise<void> {
    await this.#queue.close();
    this.#publisher.disconnect();
  }
}

/** Job events shared by every process through Redis pub/sub, so any API node can stream any job. */
export class RedisJobEvents extends JobEvents {
  readonly #publisher: Redis;
  readonly #subscriber: Redis;
  readonly #channel: string;
  readonly #origin = Math.random().toString(36).slice(2);

  constructor(settings: RedisSettings) {
    super();
    this.#channel = `${settings.prefix}job-events`;
    this.#publisher = connect(settings.url, false);
    this.#subscriber = connect(settings.url, true);
    void this.#subscriber.subscribe(this.#channel).catch(() => {});
    this.#subscriber.on('message', (_channel: string, message: string) => {
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
    this.#publisher.publish(this.#channel, JSON.stringify({ origin: this.#origin, event })).catch(() => {});
  }

  close(): void {
    this.#publisher.disconnect();
    this.#subscriber.disconnect();
  }
}

/** Feeds a JobWorker from BullMQ and relays cancels; `concurrency` jobs at once in this process. */
export class BullMQWorkerHost {
  readonly #worker: Worker;
  readonly #cancels: Redis;
  readonly #timer: NodeJS.Timeout;

  constructor(
    jobWorker: JobWorker,
    queue: BullMQQueue,
    settings: RedisSettings & { concurrency: number; leaseMs: number; log: FastifyBaseLogger },
  ) {
    this.#worker = new Worker(QUEUE_NAME, async (job) => jobWorker.process(String((job.data as { jobId: string }).jobId)), {
      connection: connect(settings.url, true),
      prefix: bullPrefix(settings.prefix),
      concurrency: settings.concurrency,
      lockDuration: settings.leaseMs,
      stalledInterval: settings.leaseMs,
      maxStalledCount: 5,
      autorun: true,
    });
    this.#worker.on('error', (error) => settings.log.error({ err: error }, 'BullMQ worker error'));
    this.#cancels = connect(settings.url, true);
    void this.#cancels.subscribe(`${settings.prefix}job-cancel`).catch(() => {});
    this.#cancels.on('message', (_channel: string, jobId: string) => jobWorker.interrupt(jobId));
    const reconcile = () => void queue.reconcile().catch((error: unknown) => settings.log.warn({ err: error }, 'could not re-announce queued jobs'));
    this.#timer = setInterval(reconcile, Math.max(settings.leaseMs, 1000));
    this.#timer.unref();
    reconcile();
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#cancels.disconnect();
    await this.#worker.close();
  }
}
