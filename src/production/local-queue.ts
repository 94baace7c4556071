import type { Store } from '../db/database.js';
import type { JobQueue } from './queue.js';
import { countQueued, type JobRow } from './store.js';

/** What the embedded queue needs from the worker in the same process. */
export interface LocalWorkerHandle {
  /** a job is waiting: look now instead of at the next poll */
  wake(): void;
  /** stop rendering this job if it runs here */
  interrupt(jobId: string): void;
}

/**
 * The embedded queue: durable through the store (a queued row is the queue entry), with an
 * in-process nudge so a job starts without waiting for a poll.
 */
export class LocalQueue implements JobQueue {
  #worker: LocalWorkerHandle | null = null;

  constructor(private readonly store: Store) {}

  attach(worker: LocalWorkerHandle | null): void {
    this.#worker = worker;
  }

  async enqueue(_job: JobRow): Promise<void> {
    this.#worker?.wake();
  }

  async cancel(jobId: string): Promise<void> {
    this.#worker?.interrupt(jobId);
  }

  depth(): Promise<number> {
    return countQueued(this.store.db);
  }

  async close(): Promise<void> {
    this.#worker = null;
  }
}
