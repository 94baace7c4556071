import { EventEmitter } from 'node:events';
import type { JobStatus } from '../db/schema.js';

export interface JobEvent {
  kind: 'progress' | 'status' | 'preview';
  jobId: string;
  status: JobStatus;
  progress: number;
  /** text for the owner when the job failed */
  error?: string | null;
  /** kind `preview`: a live image of the render so far (base64) */
  preview?: { contentType: string; data: string };
}

export const TERMINAL: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'canceled']);

/**
 * Job changes inside this process, fed by the worker and the service, read by event streams: one
 * emitter for every listener, so many followers cost no store reads.
 */
export class JobEvents {
  readonly #emitter = new EventEmitter();

  constructor() {
    this.#emitter.setMaxListeners(0);
  }

  publish(event: JobEvent): void {
    this.#emitter.emit(event.jobId, event);
  }

  /** Calls `listener` for every change of the job until the returned function is called. */
  subscribe(jobId: string, listener: (event: JobEvent) => void): () => void {
    this.#emitter.on(jobId, listener);
    return () => this.#emitter.off(jobId, listener);
  }
}
