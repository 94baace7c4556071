/** What every renderer (preview, comfyui) offers the job pipeline. */
import type { JobType } from '../db/schema.js';

export type { JobType };

export interface RenderRequest {
  jobId: string;
  type: JobType;
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  seed: number;
  steps: number;
  /** video only; 1 for images */
  frames: number;
  /** video only */
  fps: number;
  style?: string;
  /** start ahead of prompts already waiting on a backend (fair share: a user with nothing running) */
  urgent?: boolean;
}

/** A result's bytes: in memory (an image), or a file in the job's scratch directory (a video, which may be large). */
export type ResultData = Buffer | { path: string };

export interface RenderOutput {
  data: ResultData;
  /** e.g. image/png, image/webp, video/mp4 */
  contentType: string;
  /** file extension without dot, e.g. png */
  extension: string;
}

/** An output whose bytes are in memory (an image; the preview renderer's every output). */
export type InMemoryOutput = RenderOutput & { data: Buffer };

export interface RenderContext {
  /** a directory of this run's own (made on the first call), removed when the run ends: large results go there as files */
  scratchDir(): Promise<string>;
  /** aborted when the job is canceled or times out; the renderer must stop promptly */
  signal: AbortSignal;
  /** 0–100 */
  onProgress(percent: number): void;
  /** an intermediate image of the render (live preview), when the renderer has one */
  onPreview?(frame: PreviewFrame): void;
  /** how long the job actually executed on a GPU (queueing on the backend excluded), when known */
  onGpuTime?(ms: number): void;
}

export interface PreviewFrame {
  /** image/jpeg, image/png or image/webp */
  contentType: string;
  data: Buffer;
}

export interface RendererHealth {
  name: string;
  ok: boolean;
  /** per backend (e.g. per ComfyUI URL index), never a host name or path */
  backends?: { id: string; ok: boolean; queue?: number }[];
}

export interface Renderer {
  readonly name: string;
  render(request: RenderRequest, context: RenderContext): Promise<RenderOutput[]>;
  health(): Promise<RendererHealth>;
  close?(): Promise<void>;
  /**
   * How many more jobs the renderer can take now without any of them waiting on it (a fleet keeps
   * each backend `depth` prompts deep); without it the worker takes `concurrency` jobs at once.
   */
  freeSlots?(): number;
  /** how many urgent jobs it can take now (ahead of waiting prompts, at most one per backend) */
  urgentSlots?(): number;
  /** calls `listener` whenever slots free up */
  onCapacity?(listener: () => void): void;
  /** told when the queue had no job for a free slot: the renderer may move waiting work there */
  rebalance?(): void;
  /** per-backend figures of a fleet (admin stats, /metrics) */
  fleetStats?(): FleetStats;
  /** expected milliseconds until a job finishes that starts after queued jobs of these kinds, from measured render times */
  etaMs?(ahead: JobType[], type: JobType): number | undefined;
}

export interface BackendStats {
  id: string;
  ok: boolean;
  /** prompts it is kept deep (scale-out: the one depth every worker uses) */
  depth: number;
  /** prompts it holds (running and waiting) for all workers (scale-out: its leases in Redis) */
  in_flight: number;
  /** of those, this process's */
  in_flight_here: number;
  /** busy time / wall time since start */
  utilization: number;
  idle_gap_ms: { count: number; p50: number | null; p99: number | null };
  /** mean execution time per job kind */
  render_ms: Record<string, number>;
}

export interface FleetStats {
  /** jobs taken by workers and waiting for a backend slot */
  waiting: number;
  backends: BackendStats[];
}

/**
 * A renderer failure. `message` is shown to the job's owner, so it never names a host, a path or a
 * stack. `retryable` faults (unreachable, timeout, 5xx) are retried with back-off; others fail the job.
 */
export class RendererError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RendererError';
  }
}
