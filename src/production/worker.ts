import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyBaseLogger } from 'fastify';
import type { Transaction } from 'kysely';
import { RunScratch, sweepScratchDirs } from '../assets/scratch.js';
import { STALE_TEMP_MS, type AssetStorage } from '../assets/storage.js';
import type { Store } from '../db/database.js';
import type { Database } from '../db/schema.js';
import { describeFault, isTemporaryFault } from '../db/faults.js';
import type { StoreOutage } from '../db/outage.js';
import { RendererError, type RenderContext, type RenderOutput, type RenderRequest, type Renderer } from '../renderers/renderer.js';
import type { JobEvents } from './events.js';
import type { ClaimOptions } from './fleet/fair-share.js';
import { previewRelay } from './fleet/previews.js';
import type { LocalWorkerHandle } from './local-queue.js';
import { parseParams } from './params.js';
import {
  claimJob,
  claimJobById,
  completeJob,
  failJob,
  findJob,
  recordProgress,
  recoverExpired,
  releaseJob,
  renewLease,
  type JobRow,
} from './store.js';
import type { AssetRow } from '../assets/store.js';

export interface WorkerOptions {
  store: Store;
  renderer: Renderer;
  events: JobEvents;
  assets: AssetStorage;
  concurrency: number;
  jobTimeoutMs: number;
  leaseMs: number;
  log: FastifyBaseLogger;
  /** how often to look for due jobs when nothing nudged the worker */
  pollMs?: number;
  /** tries per job before a renderer fault fails it */
  maxAttempts?: number;
  /** first retry delay; doubles with each attempt */
  backoffMs?: number;
  /**
   * `store`: the worker finds due jobs in the store itself (embedded). `external`: something else
   * (BullMQ) names the jobs through `process(jobId)`; the worker still sweeps lapsed leases.
   */
  source?: 'store' | 'external';
  /** a job went back to the queue (retry, recovery): tell a distributed queue about it */
  onRequeue?: () => void;
  /** store outages are logged there once, not once per poll */
  outage?: StoreOutage;
  /** tries to save a finished render when the store or the disk fails for a moment */
  saveTries?: number;
  /** first pause between those tries; doubles with each */
  saveRetryMs?: number;
  /** fleet scheduling (src/production/fleet): the next job to take instead of the oldest one */
  claimNext?: (workerId: string, now: Date, leaseUntil: string, options?: ClaimOptions) => Promise<JobRow | undefined>;
  /** a render ended (any outcome) after `renderMs` of GPU time (as the renderer measured it, else the render's duration) */
  onRendered?: (job: JobRow, renderMs: number) => void;
  /** turns what the renderer made into the files kept (e.g. video → MP4 + the animation); new files go in `scratchDir` */
  finishOutputs?: (job: JobRow, outputs: RenderOutput[], run: Pick<RenderContext, 'signal' | 'scratchDir'>) => Promise<RenderOutput[]>;
  /** may refuse a job's results, e.g. over the user's storage quota */
  resultQuota?: ResultQuota;
}

/** Refuses (throwing ResultRefused) results of `bytes` in all that would not fit. */
export interface ResultQuota {
  /** before a result is uploaded, with the job's results so far */
  checkResults(userId: string, bytes: number): Promise<void>;
  /** in the transaction that commits them: the check that counts */
  admitResults(trx: Transaction<Database>, userId: string, bytes: number): Promise<void>;
}

type Hooks = 'onRequeue' | 'outage' | 'claimNext' | 'onRendered' | 'finishOutputs' | 'resultQuota';

/** With a renderer that tells its free slots, never more jobs than this in one worker anyway. */
const MAX_IN_FLIGHT = 256;

type StopReason = 'cancel' | 'timeout' | 'shutdown' | 'lost';

interface Running {
  controller: AbortController;
  reason: StopReason | null;
  done: Promise<void>;
}

const MESSAGES = {
  crashed: 'The job could not be finished; please submit it again.',
  failed: 'The renderer could not make this; please try again later.',
  timeout: (seconds: number) => `The job ran longer than its ${seconds}-second limit.`,
  unsaved: (fault: string) => `The result was made but could not be saved (${fault}); please submit the job again.`,
};

/** A finished render that could not be saved because the store or the disk kept failing. */
class SaveError extends Error {
  constructor(cause: unknown) {
    super('the result could not be saved', { cause });
    this.name = 'SaveError';
  }
}

/** Results the store must not keep (they would pass the user's storage quota): the job fails with this message, and keeps nothing. */
export class ResultRefused extends Error {
  override name = 'ResultRefused';
}

/** Waits, or stops waiting (rejecting with the signal's reason) when the job is stopped. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  await sleep(ms, undefined, { signal }).catch(() => signal.throwIfAborted());
}

/** A progress write to the store at most this often; events go out on every tick. */
const PROGRESS_WRITE_MS = 500;

/**
 * Takes queued jobs from the store (at most `concurrency` at once), renders them with a time
 * limit, keeps its lease alive while rendering, retries renderer faults with back-off, and
 * takes over jobs whose worker died (their lease lapsed).
 */
export class JobWorker implements LocalWorkerHandle {
  readonly id = `w-${process.pid}-${randomBytes(6).toString('hex')}`;
  readonly #running = new Map<string, Running>();
  /** jobs of users with nothing else running, taken when the renderer had no free slot: they go first */
  readonly #urgent = new Set<string>();
  readonly #options: Required<Omit<WorkerOptions, Hooks>> & Pick<WorkerOptions, Hooks>;
  #timers: NodeJS.Timeout[] = [];
  #filling = false;
  #again = false;
  #stopped = true;

  constructor(options: WorkerOptions) {
    this.#options = { pollMs: 500, maxAttempts: 3, backoffMs: 1000, source: 'store', saveTries: 5, saveRetryMs: 500, ...options };
  }

  async start(): Promise<void> {
    this.#stopped = false;
    await this.#recover();
    const { pollMs, leaseMs, source, jobTimeoutMs, log } = this.#options;
    // a run's scratch directory lives no longer than the run: older ones are a killed worker's
    void sweepScratchDirs(jobTimeoutMs + STALE_TEMP_MS).catch((err: unknown) => log.warn({ err }, 'could not sweep scratch directories'));
    this.#timers.push(setInterval(() => void this.#recover(), Math.max(leaseMs / 2, 250)));
    if (source === 'store' || this.#options.claimNext) this.#timers.push(setInterval(() => this.wake(), pollMs));
    for (const timer of this.#timers) timer.unref();
    this.#options.renderer.onCapacity?.(() => this.wake());
    this.wake();
  }

  /** Stops taking jobs; jobs rendering here go back to the queue for the next start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    for (const entry of this.#running.values()) this.#abort(entry, 'shutdown');
    await Promise.all([...this.#running.values()].map((entry) => entry.done));
  }

  /**
   * Renders the named job if it can be claimed (external source), resolving when it has ended
   * here; a job that is not due, already taken or ended is left alone.
   */
  async process(jobId: string): Promise<void> {
    // Fleet scheduling decides in the store which job runs next: an announcement only says "look now".
    if (this.#options.claimNext) return this.#fillNow();
    if (this.#stopped || this.#running.has(jobId)) return;
    const now = new Date();
    let job: JobRow | undefined;
    try {
      job = await claimJobById(this.#options.store, jobId, this.id, now.toISOString(), this.#leaseUntil(now));
    } catch (error) {
      // The caller (BullMQ) tries again with back-off; the store still says queued.
      this.#logFault(error, 'job worker could not claim a job', { job: jobId });
      throw error;
    }
    if (!job) return;
    this.#launch(job);
    await this.#running.get(jobId)?.done;
  }

  wake(): void {
    if (this.#stopped || (this.#options.source !== 'store' && !this.#options.claimNext)) return;
    if (this.#filling) {
      this.#again = true;
      return;
    }
    void this.#fill();
  }

  interrupt(jobId: string): void {
    const entry = this.#running.get(jobId);
    if (entry) this.#abort(entry, 'cancel');
  }

  get active(): number {
    return this.#running.size;
  }

  async #fillNow(): Promise<void> {
    this.wake();
    while (this.#filling) await sleep(5);
  }

  /** Room for one more job: the renderer's free slots when it tells them, else `concurrency`. */
  #hasRoom(): boolean {
    const { renderer, concurrency } = this.#options;
    if (!renderer.freeSlots) return this.#running.size < concurrency;
    return this.#running.size < MAX_IN_FLIGHT && renderer.freeSlots() > 0;
  }

  #claim(now: Date): Promise<JobRow | undefined> {
    const { claimNext, store } = this.#options;
    if (claimNext) return claimNext(this.id, now, this.#leaseUntil(now));
    return claimJob(store, this.id, now.toISOString(), this.#leaseUntil(now));
  }

  /**
   * No free slot, but a user with nothing running waits: such a job may start ahead of the prompts
   * already waiting on a backend (one per backend), so a light user never waits behind a batch.
   */
  async #fillUrgent(): Promise<void> {
    const { claimNext, renderer } = this.#options;
    if (!claimNext || !renderer.urgentSlots) return;
    while (!this.#stopped && this.#running.size < MAX_IN_FLIGHT && renderer.urgentSlots() > 0) {
      const now = new Date();
      const job = await claimNext(this.id, now, this.#leaseUntil(now), { idleUsersOnly: true });
      if (!job) return;
      this.#urgent.add(job.id);
      this.#launch(job);
    }
  }

  async #fill(): Promise<void> {
    this.#filling = true;
    try {
      do {
        this.#again = false;
        while (!this.#stopped && this.#hasRoom()) {
          const now = new Date();
          const job = await this.#claim(now);
          if (!job) {
            this.#options.renderer.rebalance?.();
            break;
          }
          if (this.#stopped) {
            await releaseJob(this.#options.store.db, job.id, this.id, { runAfter: null, now: now.toISOString(), refundAttempt: true });
            break;
          }
          this.#launch(job);
        }
        await this.#fillUrgent();
      } while (this.#again && !this.#stopped);
    } catch (error) {
      if (!this.#stopped) this.#logFault(error, 'job worker could not claim a job');
    } finally {
      this.#filling = false;
    }
  }

  async #recover(): Promise<void> {
    try {
      const count = await recoverExpired(this.#options.store.db, new Date().toISOString(), this.#options.maxAttempts, MESSAGES.crashed);
      if (count > 0) {
        this.#options.log.warn({ count }, 'took over jobs whose worker stopped');
        this.#options.onRequeue?.();
        this.wake();
      }
    } catch (error) {
      if (!this.#stopped) this.#logFault(error, 'job recovery failed');
    }
  }

  /** A store outage is logged once by the outage tracker; anything else here. */
  #logFault(error: unknown, message: string, context: Record<string, unknown> = {}): void {
    if (!this.#options.outage?.report(error)) this.#options.log.error({ err: error, ...context }, message);
  }

  #leaseUntil(now = new Date()): string {
    return new Date(now.getTime() + this.#options.leaseMs).toISOString();
  }

  #abort(entry: Running, reason: StopReason): void {
    if (entry.reason) return;
    entry.reason = reason;
    entry.controller.abort(new Error(`job stopped: ${reason}`));
  }

  #launch(job: JobRow): void {
    const entry: Running = { controller: new AbortController(), reason: null, done: Promise.resolve() };
    this.#running.set(job.id, entry);
    entry.done = this.#run(job, entry)
      .catch((error: unknown) => this.#options.log.error({ err: error, job: job.id }, 'job worker fault'))
      .finally(() => {
        this.#running.delete(job.id);
        this.#urgent.delete(job.id);
        this.wake();
      });
  }

  async #run(job: JobRow, entry: Running): Promise<void> {
    const { store, renderer, events, jobTimeoutMs, leaseMs } = this.#options;
    const db = store.db;
    events.publish({ kind: 'status', jobId: job.id, status: 'running', progress: 0 });

    const timeout = setTimeout(() => this.#abort(entry, 'timeout'), jobTimeoutMs);
    const lease = setInterval(() => {
      renewLease(db, job.id, this.id, this.#leaseUntil()).then(
        (held) => {
          if (!held) this.#abort(entry, 'lost');
        },
        () => {},
      );
    }, Math.max(leaseMs / 3, 100));
    let lastWrite = 0;
    const onProgress = (percent: number) => {
      if (entry.reason) return;
      events.publish({ kind: 'progress', jobId: job.id, status: 'running', progress: percent });
      const now = Date.now();
      if (now - lastWrite >= PROGRESS_WRITE_MS) {
        lastWrite = now;
        recordProgress(db, job.id, this.id, percent, new Date(now).toISOString()).catch(() => {});
      }
    };

    let written: AssetRow[] = [];
    let renderStart = Date.now();
    let gpuMs: number | undefined;
    const rendered = () => {
      if (renderStart > 0) this.#rendered(job, gpuMs ?? Date.now() - renderStart);
      renderStart = 0;
    };
    const onGpuTime = (ms: number) => {
      gpuMs = (gpuMs ?? 0) + ms;
    };
    const scratch = new RunScratch();
    try {
      const onPreview = previewRelay(events, job.id);
      const request = { ...toRenderRequest(job), ...(this.#urgent.has(job.id) && { urgent: true }) };
      const signal = entry.controller.signal;
      const scratchDir = scratch.path;
      let outputs = await renderer.render(request, { signal, scratchDir, onProgress, onPreview, onGpuTime });
      rendered();
      signal.throwIfAborted();
      if (this.#options.finishOutputs) outputs = await this.#options.finishOutputs(job, outputs, { signal, scratchDir });
      await this.#save(job, entry, outputs, (rows) => (written = rows));
    } catch (error) {
      rendered();
      // Before the job changes hands: a new holder writes files of the same names.
      if (written.length > 0) await this.#removeUnsaved(job.id, written);
      // If the store cannot take the job's end either, its lease lapses and the job runs again.
      await this.#handleFailure(job, entry, error).catch((fault: unknown) => this.#logFault(fault, 'could not record how a job ended', { job: job.id }));
    } finally {
      clearTimeout(timeout);
      clearInterval(lease);
      await scratch.remove().catch((err: unknown) => this.#options.log.warn({ err, job: job.id }, 'could not remove a scratch directory'));
    }
  }

  /**
   * Writes the outputs and commits their rows with the job's success. A temporary fault of the
   * store or the disk (a dropped connection, a lock timeout, a full or read-only disk) is tried
   * again with back-off while the lease is renewed; it ends in a SaveError when it lasts.
   */
  async #save(job: JobRow, entry: Running, outputs: RenderOutput[], onWritten: (rows: AssetRow[]) => void): Promise<void> {
    const { store, assets, events, log, saveTries, saveRetryMs, resultQuota } = this.#options;
    const rows: AssetRow[] = [];
    const createdAt = new Date().toISOString();
    for (let attempt = 1; ; attempt++) {
      try {
        // files written by an earlier try are kept; a write replaces a file whole
        for (const [position, output] of outputs.entries()) {
          if (rows[position]) continue;
          const before = rows.reduce((sum, row) => sum + row.byte_size, 0);
          const admit = resultQuota && ((byteSize: number) => resultQuota.checkResults(job.user_id, before + byteSize));
          const file = await assets.write(job.id, position, output, { admit });
          rows[position] = {
            id: randomUUID(),
            job_id: job.id,
            user_id: job.user_id,
            position,
            content_type: file.contentType,
            byte_size: file.byteSize,
            storage_key: file.storageKey,
            created_at: createdAt,
          };
          onWritten(rows);
        }
        entry.controller.signal.throwIfAborted();
        const bytes = rows.reduce((sum, row) => sum + row.byte_size, 0);
        const admit = resultQuota && ((trx: Transaction<Database>) => resultQuota.admitResults(trx, job.user_id, bytes));
        if (await completeJob(store.db, job.id, this.id, rows, new Date().toISOString(), admit)) {
          log.info({ job: job.id, worker: this.id, attempt: job.attempts }, 'job rendered');
          events.publish({ kind: 'status', jobId: job.id, status: 'succeeded', progress: 100 });
        } else {
          await this.#discardIfEnded(job.id, rows);
        }
        return;
      } catch (error) {
        if (entry.reason || !isTemporaryFault(error)) throw error;
        if (attempt >= saveTries) throw new SaveError(error);
        log.warn({ err: error, job: job.id, attempt }, 'could not save a finished render; trying again');
        await pause(saveRetryMs * 2 ** (attempt - 1), entry.controller.signal);
      }
    }
  }

  #rendered(job: JobRow, renderMs: number): void {
    try {
      this.#options.onRendered?.(job, renderMs);
    } catch {
      // accounting must not change a job's outcome
    }
  }

  /** The job ended elsewhere (canceled while the files were written): its files must not linger. */
  async #discardIfEnded(jobId: string, rows: AssetRow[]): Promise<void> {
    const current = await findJob(this.#options.store.db, jobId);
    if (current && (current.status === 'canceled' || current.status === 'failed')) {
      await Promise.all(rows.map((row) => this.#options.assets.remove(row.storage_key)));
    }
  }

  /**
   * Files of a render whose rows were not stored. Removed while this worker still holds the job, or
   * once it ended without them; never when it succeeded (a commit whose answer was lost) or when
   * another worker holds it now. If the store cannot say, they stay: the next run replaces them.
   */
  async #removeUnsaved(jobId: string, rows: AssetRow[]): Promise<void> {
    try {
      const current = await findJob(this.#options.store.db, jobId);
      if (!current || current.status === 'succeeded') return;
      const ours = current.status === 'running' && current.locked_by === this.id;
      if (!ours && current.status !== 'canceled' && current.status !== 'failed') return;
      await Promise.all(rows.filter(Boolean).map((row) => this.#options.assets.remove(row.storage_key)));
    } catch (error) {
      this.#options.log.warn({ err: error, job: jobId }, 'could not remove the files of an unsaved render; a re-run replaces them');
    }
  }

  async #handleFailure(job: JobRow, entry: Running, error: unknown): Promise<void> {
    const { store, events, maxAttempts, backoffMs, jobTimeoutMs, log } = this.#options;
    const db = store.db;
    const now = new Date();
    switch (entry.reason) {
      case 'cancel':
      case 'lost':
        return;
      case 'shutdown':
        if (await releaseJob(db, job.id, this.id, { runAfter: null, now: now.toISOString(), refundAttempt: true })) {
          this.#options.onRequeue?.();
        }
        return;
      case 'timeout': {
        const message = MESSAGES.timeout(Math.round(jobTimeoutMs / 1000));
        if (await failJob(db, job.id, this.id, message, now.toISOString())) {
          events.publish({ kind: 'status', jobId: job.id, status: 'failed', progress: 0, error: message });
        }
        return;
      }
    }
    if (error instanceof ResultRefused) {
      if (await failJob(db, job.id, this.id, error.message, now.toISOString())) {
        events.publish({ kind: 'status', jobId: job.id, status: 'failed', progress: 0, error: error.message });
      }
      return;
    }
    if (error instanceof SaveError) {
      // Not the renderer's fault: the job runs again later, and if it still cannot be saved, it says so.
      const message = MESSAGES.unsaved(describeFault(error.cause));
      if (job.attempts < maxAttempts) {
        const runAfter = new Date(now.getTime() + backoffMs * 2 ** (job.attempts - 1)).toISOString();
        log.warn({ err: error.cause, job: job.id, attempt: job.attempts }, 'could not save a finished render; the job will run again');
        if (await releaseJob(db, job.id, this.id, { runAfter, now: now.toISOString() })) {
          events.publish({ kind: 'status', jobId: job.id, status: 'queued', progress: 0 });
          this.#options.onRequeue?.();
        }
        return;
      }
      log.error({ err: error.cause, job: job.id }, 'job failed: its result could not be saved');
      if (await failJob(db, job.id, this.id, message, now.toISOString())) {
        events.publish({ kind: 'status', jobId: job.id, status: 'failed', progress: 0, error: message });
      }
      return;
    }
    const retryable = error instanceof RendererError && error.retryable;
    if (retryable && job.attempts < maxAttempts) {
      const delay = backoffMs * 2 ** (job.attempts - 1) * (0.8 + Math.random() * 0.4);
      const runAfter = new Date(now.getTime() + delay).toISOString();
      log.warn({ job: job.id, attempt: job.attempts }, 'renderer fault; the job will be retried');
      if (await releaseJob(db, job.id, this.id, { runAfter, now: now.toISOString() })) {
        events.publish({ kind: 'status', jobId: job.id, status: 'queued', progress: 0 });
        this.#options.onRequeue?.();
      }
      return;
    }
    if (!(error instanceof RendererError)) log.error({ err: error, job: job.id }, 'job failed');
    const message = error instanceof RendererError ? error.message : MESSAGES.failed;
    if (await failJob(db, job.id, this.id, message, now.toISOString())) {
      events.publish({ kind: 'status', jobId: job.id, status: 'failed', progress: 0, error: message });
    }
  }
}

function toRenderRequest(job: JobRow): RenderRequest {
  const params = parseParams(job.params);
  return {
    jobId: job.id,
    type: job.type,
    prompt: job.prompt,
    negativePrompt: job.negative_prompt,
    width: params.width,
    height: params.height,
    seed: params.seed,
    steps: params.steps,
    frames: job.type === 'video' ? params.frames : 1,
    fps: params.fps,
    ...(params.style !== undefined && { style: params.style }),
  };
}
