import type { JobRow } from './store.js';

/**
 * Where accepted jobs wait for a worker. The embedded queue is the jobs table itself; a BullMQ
 * queue on Redis can stand beside it for scale-out. Either way the store row is the truth.
 */
export interface JobQueue {
  /** called after the job row is stored as queued */
  enqueue(job: JobRow): Promise<void>;
  /** called after the job row is marked canceled: a running render is interrupted */
  cancel(jobId: string): Promise<void>;
  /** jobs waiting for a worker */
  depth(): Promise<number>;
  close(): Promise<void>;
}
