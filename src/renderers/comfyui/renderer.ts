import { randomUUID } from 'node:crypto';
import path from 'node:path';
import WebSocket from 'ws';
import {
  RendererError,
  type JobType,
  type RenderContext,
  type Renderer,
  type RendererHealth,
  type RenderOutput,
  type FleetStats,
  type PreviewFrame,
  type RenderRequest,
} from '../renderer.js';
import { ComfyUIClient, MESSAGES, type HistoryEntry, type OutputFile } from './client.js';
import { Fleet, type FleetBackend, type FleetRun, type Requirement } from './fleet.js';
import type { SlotLedger } from './slot-leases.js';
import { buildWorkflow, ROLES, type Workflow } from './workflow.js';

export interface ComfyUIRendererOptions {
  /** one or more ComfyUI base URLs, e.g. http://gpu-1:8188 */
  urls: string[];
  /** checkpoint file name as listed by ComfyUI (models/checkpoints) */
  checkpoint?: string;
  /** timeout of each HTTP call and WebSocket handshake (default 10 s) */
  requestTimeoutMs?: number;
  /** the longest a job may take from submission to downloaded result (default 15 min) */
  jobTimeoutMs?: number;
  /** how often backends are probed (default 15 s) */
  healthIntervalMs?: number;
  /** /history polling while the WebSocket is down (default 1 s; 5× slower as a safety net while it is up) */
  pollIntervalMs?: number;
  /** timeout of one result download (default 60 s, always within the job deadline) */
  downloadTimeoutMs?: number;
  /** largest result file downloaded (default 200 MiB); a larger one fails the job */
  maxOutputBytes?: number;
  /** prompts each backend is kept deep, per URL (one value: all); default 2 */
  depths?: number[];
  /** places shared with other workers (scale-out), so the depths hold across processes */
  ledger?: SlotLedger;
}

const DEFAULTS = {
  checkpoint: 'v1-5-pruned-emaonly.safetensors',
  requestTimeoutMs: 10_000,
  jobTimeoutMs: 15 * 60_000,
  healthIntervalMs: 15_000,
  pollIntervalMs: 1_000,
  downloadTimeoutMs: 60_000,
  maxOutputBytes: 200 * 1024 * 1024,
};

const JOB_MESSAGES = {
  failed: 'render failed',
  interrupted: 'render was interrupted',
  canceled: 'render canceled',
  lost: 'renderer lost the job',
  noResult: 'renderer returned no result',
} as const;

/** After this many failed polls in a row (WebSocket down too) the backend is taken as gone. */
const MAX_POLL_FAILURES = 3;
/** Seen this many times in a row neither queued nor in history, a prompt is lost (e.g. ComfyUI restarted). */
const LOST_AFTER = 2;

/** Output file types Celforge accepts, per job type: a video job never yields a still PNG. */
const MEDIA: Record<string, { contentType: string; types: JobType[] }> = {
  png: { contentType: 'image/png', types: ['image'] },
  jpg: { contentType: 'image/jpeg', types: ['image'] },
  jpeg: { contentType: 'image/jpeg', types: ['image'] },
  webp: { contentType: 'image/webp', types: ['image', 'video'] },
  gif: { contentType: 'image/gif', types: ['video'] },
  mp4: { contentType: 'video/mp4', types: ['video'] },
  webm: { contentType: 'video/webm', types: ['video'] },
};

// ---------------------------------------------------------------------------------------------
// Progress

/** Maps ComfyUI events to 0–100 that only ever goes up: sampler steps fill 2–90. */
class Progress {
  private last = -1;

  constructor(
    private readonly report: (percent: number) => void,
    private readonly samplerNode: string,
    private readonly outputNode: string,
  ) {}

  started(): void {
    this.set(1);
  }

  step(node: unknown, value: number, max: number): void {
    if (max <= 0 || (node !== undefined && node !== null && node !== this.samplerNode)) return;
    this.set(2 + (88 * Math.min(value, max)) / max);
  }

  executing(node: unknown): void {
    if (node === this.outputNode) this.set(95);
  }

  executed(node: unknown): void {
    if (node === this.samplerNode) this.set(90);
  }

  done(): void {
    this.set(100);
  }

  private set(value: number): void {
    const percent = Math.max(0, Math.min(100, Math.floor(value)));
    if (percent <= this.last) return;
    this.last = percent;
    try {
      this.report(percent);
    } catch {
      // a failing progress listener must not break the render
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Watching one prompt: WebSocket events, /history polling as safety net and fallback

interface ComfyEvent {
  type: string;
  data: Record<string, unknown>;
}

type SocketMessage = [data: WebSocket.RawData, isBinary: boolean];

/**
 * Keeps what a socket receives until a PromptWatch takes over: ComfyUI may start (or even finish)
 * a prompt before the answer to POST /prompt arrives.
 */
class SocketBuffer {
  readonly messages: SocketMessage[] = [];
  private readonly onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
    if (!isBinary) this.messages.push([data, isBinary]);
  };

  constructor(readonly ws: WebSocket) {
    ws.on('message', this.onMessage);
  }

  release(): SocketMessage[] {
    this.ws.off('message', this.onMessage);
    return this.messages;
  }
}

interface WatchHooks {
  /** the prompt began executing */
  onStart?: () => void;
  onPreview?: (frame: PreviewFrame) => void;
}

/**
 * A binary WebSocket message: PREVIEW_IMAGE (4-byte event 1, 4-byte image type 1 JPEG / 2 PNG,
 * the image) or PREVIEW_IMAGE_WITH_METADATA (event 4, 4-byte JSON length, JSON with prompt_id and
 * image_type, the image). Anything else is not a preview.
 */
export function parsePreview(data: WebSocket.RawData, promptId: string): PreviewFrame | undefined {
  const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
  if (buf.length < 9) return undefined;
  const event = buf.readUInt32BE(0);
  if (event === 1) {
    const contentType = { 1: 'image/jpeg', 2: 'image/png' }[buf.readUInt32BE(4)];
    return contentType ? { contentType, data: buf.subarray(8) } : undefined;
  }
  if (event === 4) {
    const length = buf.readUInt32BE(4);
    if (8 + length >= buf.length) return undefined;
    try {
      const meta = JSON.parse(buf.subarray(8, 8 + length).toString('utf8')) as { prompt_id?: unknown; image_type?: unknown };
      if (meta.prompt_id !== undefined && meta.prompt_id !== promptId) return undefined;
      const contentType = typeof meta.image_type === 'string' && /^image\/(jpeg|png|webp)$/.test(meta.image_type) ? meta.image_type : undefined;
      return contentType ? { contentType, data: buf.subarray(8 + length) } : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

class PromptWatch {
  readonly done: Promise<HistoryEntry>;
  private resolve!: (entry: HistoryEntry) => void;
  private reject!: (err: unknown) => void;
  private settled = false;
  private checking = false;
  private recheck = false;
  private failures = 0;
  private lostStreak = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: ComfyUIClient,
    private readonly promptId: string,
    private readonly ws: WebSocket | undefined,
    private readonly progress: Progress,
    private readonly pollMs: number,
    private readonly signal: AbortSignal,
    early: SocketMessage[],
    private readonly hooks: WatchHooks = {},
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    ws?.on('message', this.onMessage);
    ws?.on('close', this.onClose);
    for (const [data, isBinary] of early) this.onMessage(data, isBinary);
    this.schedule();
  }

  stop(): void {
    this.settled = true;
    clearTimeout(this.timer);
    this.ws?.off('message', this.onMessage);
    this.ws?.off('close', this.onClose);
  }

  private get socketOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  private schedule(): void {
    if (this.settled) return;
    clearTimeout(this.timer);
    const delay = this.socketOpen ? this.pollMs * 5 : this.pollMs;
    this.timer = setTimeout(() => void this.check(), delay);
  }

  private readonly onClose = (): void => this.schedule();

  private readonly onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
    if (this.settled) return;
    if (isBinary) {
      // Live previews: this socket's client id is this run's alone, so they are its prompt's.
      const frame = this.hooks.onPreview && parsePreview(data, this.promptId);
      if (frame) this.hooks.onPreview?.(frame);
      return;
    }
    const event = parseEvent(data);
    if (!event || event.data.prompt_id !== this.promptId) return;
    const d = event.data;
    switch (event.type) {
      case 'execution_start':
        this.hooks.onStart?.();
        return this.progress.started();
      case 'progress':
        this.hooks.onStart?.();
        return this.progress.step(d.node, Number(d.value), Number(d.max));
      case 'executing':
        if (d.node === null) return void this.check();
        return this.progress.executing(d.node);
      case 'executed':
        return this.progress.executed(d.node);
      case 'execution_success':
        return void this.check();
      case 'execution_error':
        return this.fail(executionError(d));
      case 'execution_interrupted':
        return this.fail(new RendererError(JOB_MESSAGES.interrupted, true));
    }
  };

  /** Reads /history; if the prompt is neither there nor queued, ComfyUI lost it (e.g. restarted). */
  private async check(): Promise<void> {
    if (this.settled) return;
    if (this.checking) {
      this.recheck = true;
      return;
    }
    this.checking = true;
    try {
      const entry = await this.findEntry();
      this.failures = 0;
      if (entry === 'lost') this.onLost();
      else if (entry) this.finish(entry);
    } catch (err) {
      if (this.signal.aborted) return;
      if (err instanceof RendererError && !err.retryable) return this.fail(err);
      if (++this.failures >= MAX_POLL_FAILURES && !this.socketOpen) this.fail(err);
    } finally {
      this.checking = false;
      if (this.recheck && !this.settled) {
        this.recheck = false;
        void this.check();
      } else {
        this.schedule();
      }
    }
  }

  private async findEntry(): Promise<HistoryEntry | 'lost' | undefined> {
    const entry = await this.client.history(this.promptId, this.signal);
    if (entry) return entry;
    const queue = await this.client.queue(this.signal);
    if (queue.running.includes(this.promptId) || queue.pending.includes(this.promptId)) {
      this.lostStreak = 0;
      return undefined;
    }
    // The prompt may have finished between the two reads: look once more.
    return (await this.client.history(this.promptId, this.signal)) ?? 'lost';
  }

  private onLost(): void {
    if (++this.lostStreak < LOST_AFTER) return;
    this.fail(new RendererError(JOB_MESSAGES.lost, true, { cause: new Error('prompt neither queued nor in history') }));
  }

  private finish(entry: HistoryEntry): void {
    const status = entry.status;
    if (status && (status.status_str === 'error' || status.completed === false)) {
      const messages = status.messages ?? [];
      const interrupted = messages.some(([type]) => type === 'execution_interrupted');
      const error = messages.find(([type]) => type === 'execution_error');
      return this.fail(
        interrupted ? new RendererError(JOB_MESSAGES.interrupted, true) : executionError(error?.[1] ?? {}),
      );
    }
    this.settle(() => this.resolve(entry));
  }

  private fail(err: unknown): void {
    this.settle(() => this.reject(err));
  }

  private settle(fn: () => void): void {
    if (this.settled) return;
    this.stop();
    fn();
  }
}

function parseEvent(data: WebSocket.RawData): ComfyEvent | undefined {
  try {
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : data.toString('utf8');
    const event = JSON.parse(text) as Partial<ComfyEvent>;
    if (typeof event.type !== 'string' || typeof event.data !== 'object' || event.data === null) return undefined;
    return event as ComfyEvent;
  } catch {
    return undefined;
  }
}

function executionError(data: Record<string, unknown>): RendererError {
  // ComfyUI's exception text can name model files and paths: it goes to the cause only.
  const detail = `${String(data.node_type ?? 'node')}: ${String(data.exception_type ?? 'error')}: ${String(data.exception_message ?? '')}`;
  return new RendererError(JOB_MESSAGES.failed, false, { cause: new Error(detail) });
}

// ---------------------------------------------------------------------------------------------
// Outputs

function outputFiles(entry: HistoryEntry, outputNode: string): OutputFile[] {
  // Prefer the template's save node; fall back to any node that saved files.
  const nodes = entry.outputs[outputNode] ? [entry.outputs[outputNode]] : Object.values(entry.outputs);
  const files: OutputFile[] = [];
  for (const node of nodes) {
    for (const value of Object.values(node ?? {})) {
      if (!Array.isArray(value)) continue;
      for (const item of value) {
        const file = asOutputFile(item);
        if (file && file.type === 'output') files.push(file);
      }
    }
  }
  return files;
}

function asOutputFile(item: unknown): OutputFile | undefined {
  if (typeof item !== 'object' || item === null) return undefined;
  const { filename, subfolder, type } = item as Record<string, unknown>;
  if (typeof filename !== 'string' || filename === '') return undefined;
  return {
    filename,
    subfolder: typeof subfolder === 'string' ? subfolder : '',
    type: typeof type === 'string' ? type : 'output',
  };
}

function mediaOf(file: OutputFile, type: JobType): { contentType: string; extension: string } | undefined {
  const extension = file.filename.slice(file.filename.lastIndexOf('.') + 1).toLowerCase();
  const media = MEDIA[extension];
  return media && media.types.includes(type) ? { contentType: media.contentType, extension } : undefined;
}

// ---------------------------------------------------------------------------------------------
// One render

interface RunSettings {
  checkpoint: string;
  jobTimeoutMs: number;
  pollIntervalMs: number;
}

type StopReason = 'canceled' | 'timeout' | 'closed';

/** Failures that say the backend itself is gone (not the prompt's own fault). */
function isBackendFault(err: unknown): boolean {
  const faults: string[] = [MESSAGES.unavailable, MESSAGES.timeout, JOB_MESSAGES.lost];
  return err instanceof RendererError && err.retryable && faults.includes(err.message);
}

interface Outcome {
  promise: Promise<HistoryEntry>;
  resolve(entry: HistoryEntry): void;
  reject(err: unknown): void;
}

function outcome(): Outcome {
  let resolve!: (entry: HistoryEntry) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<HistoryEntry>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

class RenderRun implements FleetRun {
  private readonly controller = new AbortController();
  private readonly clientId = `celforge-${randomUUID()}`;
  private promptId: string = randomUUID();
  private reason: StopReason | undefined;
  /** the backend the prompt was (or may have been) sent to */
  private backend: FleetBackend | undefined;
  /** whether this run holds a slot of `backend` (until its prompt has finished executing) */
  private holding = false;
  private socket: SocketBuffer | undefined;
  private watch: PromptWatch | undefined;
  private readonly progress: Progress;
  private readonly workflow: Workflow;
  readonly requirement: Requirement;
  readonly urgent: boolean;
  startedAt: number | undefined;
  private moving = false;
  /** settled by whichever watch follows the prompt where it finally runs */
  private readonly result = outcome();

  constructor(
    private readonly fleet: Fleet,
    private readonly settings: RunSettings,
    private readonly request: RenderRequest,
    private readonly context: RenderContext,
  ) {
    const roles = ROLES[request.type];
    this.progress = new Progress((p) => context.onProgress(p), roles.sampler, roles.output);
    this.workflow = buildWorkflow(request.type, request, { checkpoint: settings.checkpoint });
    this.requirement = {
      kind: request.type,
      nodes: [...new Set(Object.values(this.workflow).map((node) => node.class_type))],
      checkpoint: settings.checkpoint,
    };
    this.urgent = request.urgent === true;
  }

  /** Stops the run; the pending render() rejects after cleaning up on ComfyUI. */
  stop(reason: StopReason): void {
    if (this.reason) return;
    this.reason = reason;
    this.controller.abort(new Error(reason));
  }

  async execute(): Promise<RenderOutput[]> {
    const unlink = this.linkAbort();
    try {
      await this.submit();
      const entry = await untilAborted(this.result.promise, this.controller.signal);
      this.gpuDone();
      const outputs = await this.download(entry);
      this.progress.done();
      return outputs;
    } catch (err) {
      if (this.reason) {
        await this.withdraw();
        throw stopError(this.reason);
      }
      if (this.backend && isBackendFault(err)) this.fleet.markDown(this.backend);
      throw asRendererError(err);
    } finally {
      unlink();
      this.release();
    }
  }

  private linkAbort(): () => void {
    const { signal } = this.context;
    const onCancel = (): void => this.stop('canceled');
    if (signal.aborted) onCancel();
    else signal.addEventListener('abort', onCancel, { once: true });
    const deadline = setTimeout(() => this.stop('timeout'), this.settings.jobTimeoutMs);
    return () => {
      clearTimeout(deadline);
      signal.removeEventListener('abort', onCancel);
    };
  }

  /** Takes a slot from the fleet and submits there; a backend that cannot be reached is marked down and another tried. */
  private async submit(): Promise<void> {
    let lastError: unknown;
    for (let tries = 0; tries < Math.max(1, this.fleet.backends.length); tries++) {
      const backend = await this.fleet.acquire(this, this.controller.signal);
      this.backend = backend;
      this.holding = true;
      try {
        await this.submitTo(backend);
        this.startWatch();
        return;
      } catch (err) {
        if (this.controller.signal.aborted || (err instanceof RendererError && !err.retryable)) throw err;
        lastError = err;
        this.fleet.markDown(backend);
        this.leave(backend);
      }
    }
    throw new RendererError(MESSAGES.unavailable, true, { cause: lastError });
  }

  private async submitTo(backend: FleetBackend): Promise<void> {
    const { signal } = this.controller;
    // Connect first so that no event of the prompt can be missed.
    const ws = await backend.client.openSocket(this.clientId, signal);
    this.socket = ws && new SocketBuffer(ws);
    const submitted = await backend.client.submit(this.workflow, this.clientId, this.promptId, signal, this.urgent);
    this.promptId = submitted.promptId;
    backend.ok = true;
  }

  /** Gives a backend up after a failed submission, removing the prompt in case it got queued. */
  private leave(backend: FleetBackend): void {
    this.closeSocket();
    if (this.holding) this.fleet.release(this, backend);
    this.holding = false;
    this.backend = undefined;
    void backend.client.deleteFromQueue([this.promptId]).catch(() => undefined);
  }

  private startWatch(): void {
    const backend = this.backend!;
    const watch = new PromptWatch(
      backend.client,
      this.promptId,
      this.socket?.ws,
      this.progress,
      this.settings.pollIntervalMs,
      this.controller.signal,
      this.socket?.release() ?? [],
      { onStart: () => this.onStart(backend), onPreview: this.context.onPreview && ((frame) => this.context.onPreview?.(frame)) },
    );
    this.watch = watch;
    watch.done.then(
      (entry) => {
        if (this.watch === watch) this.result.resolve(entry);
      },
      (err: unknown) => {
        if (this.watch === watch) this.result.reject(err);
      },
    );
  }

  private onStart(backend: FleetBackend): void {
    if (this.startedAt !== undefined || backend !== this.backend) return;
    this.startedAt = Date.now();
    backend.executionStarted(this.startedAt);
  }

  /** The prompt has finished executing: its slot goes to the next prompt while the result downloads. */
  private gpuDone(): void {
    const backend = this.backend;
    if (!backend) return;
    if (this.startedAt !== undefined) {
      const ms = Date.now() - this.startedAt;
      backend.executionEnded(this.request.type, ms);
      this.context.onGpuTime?.(ms);
    }
    this.startedAt = undefined;
    if (this.holding) this.fleet.release(this, backend);
    this.holding = false;
  }

  /**
   * Work stealing: takes the prompt back from its backend (POST /queue {delete}) and submits it to
   * `target`. False when it had started there meanwhile (a delete never touches a running prompt).
   */
  async moveTo(target: FleetBackend): Promise<boolean> {
    const from = this.backend;
    const watch = this.watch;
    if (!from || !watch || this.startedAt !== undefined || this.moving || this.reason || !this.holding) return false;
    this.moving = true;
    watch.stop();
    this.watch = undefined;
    try {
      let taken = false;
      try {
        const { signal } = this.controller;
        await from.client.deleteFromQueue([this.promptId], signal);
        const queue = await from.client.queue(signal);
        if (queue.running.includes(this.promptId)) this.onStart(from);
        taken = !queue.running.includes(this.promptId) && !queue.pending.includes(this.promptId) && !(await from.client.history(this.promptId, signal));
      } catch {
        taken = false;
      }
      if (this.reason) return false;
      if (!taken) {
        // It stays where it is: follow it there again (the new watch reads /history, so nothing is missed).
        this.startWatch();
        return false;
      }
      this.closeSocket();
      this.backend = target;
      this.fleet.moved(this, from);
      this.promptId = randomUUID();
      try {
        await this.submitTo(target);
        this.startWatch();
      } catch (err) {
        if (isBackendFault(err)) this.fleet.markDown(target);
        this.result.reject(err);
      }
      return true;
    } finally {
      this.moving = false;
    }
  }

  private async download(entry: HistoryEntry): Promise<RenderOutput[]> {
    const backend = this.backend!;
    const type = this.request.type;
    const files = outputFiles(entry, ROLES[type].output).flatMap((file) => {
      const media = mediaOf(file, type);
      return media ? [{ file, media }] : [];
    });
    if (files.length === 0) throw new RendererError(JOB_MESSAGES.noResult, false);
    const outputs: RenderOutput[] = [];
    for (const [index, { file, media }] of files.entries()) {
      // a video may be large: it goes to a file, never whole into memory
      if (media.contentType.startsWith('video/')) {
        const destination = path.join(await this.context.scratchDir(), `output-${index}.${media.extension}`);
        const size = await backend.client.viewToFile(file, destination, this.controller.signal);
        if (size === 0) throw new RendererError(JOB_MESSAGES.noResult, true);
        outputs.push({ data: { path: destination }, ...media });
      } else {
        const data = await backend.client.view(file, this.controller.signal);
        if (data.length === 0) throw new RendererError(JOB_MESSAGES.noResult, true);
        outputs.push({ data, ...media });
      }
    }
    return outputs;
  }

  /** After a cancel or deadline: interrupt the prompt if it runs, delete it if it waits. */
  private async withdraw(): Promise<void> {
    const client = this.backend?.client;
    if (!client) return;
    try {
      const queue = await client.queue();
      if (queue.running.includes(this.promptId)) await client.interrupt(this.promptId);
      else if (queue.pending.includes(this.promptId)) await client.deleteFromQueue([this.promptId]);
    } catch {
      // Unreachable or hung: nothing more can be done from here. Deleting is harmless if it
      // is not queued, whereas an interrupt might hit another prompt on an older ComfyUI.
      await client.deleteFromQueue([this.promptId]).catch(() => undefined);
    }
  }

  private closeSocket(): void {
    this.socket?.release();
    this.socket?.ws.terminate();
    this.socket = undefined;
  }

  private release(): void {
    this.watch?.stop();
    this.closeSocket();
    if (this.backend && this.startedAt !== undefined) this.backend.executionEnded(this.request.type, undefined);
    if (this.backend && this.holding) this.fleet.release(this, this.backend);
    this.holding = false;
    this.backend = undefined;
  }
}

function stopError(reason: StopReason): RendererError {
  if (reason === 'canceled') return new RendererError(JOB_MESSAGES.canceled, false);
  if (reason === 'timeout') return new RendererError(MESSAGES.timeout, true);
  return new RendererError(MESSAGES.unavailable, true);
}

function asRendererError(err: unknown): RendererError {
  return err instanceof RendererError ? err : new RendererError(MESSAGES.unavailable, true, { cause: err });
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// The renderer

/** Celforge's production renderer: a fleet of one or more ComfyUI servers over HTTP + WebSocket. */
export class ComfyUIRenderer implements Renderer {
  readonly name = 'comfyui';
  readonly fleet: Fleet;
  private readonly settings: RunSettings;
  /** renders in progress, each with a promise that settles (never rejects) when it has ended */
  private readonly runs = new Map<RenderRun, Promise<unknown>>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(options: ComfyUIRendererOptions) {
    if (options.urls.length === 0) throw new Error('comfyui renderer: at least one URL is required');
    const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    this.fleet = new Fleet({
      urls: options.urls,
      depths: options.depths,
      ledger: options.ledger,
      client: {
        timeoutMs: requestTimeoutMs,
        downloadTimeoutMs: options.downloadTimeoutMs ?? DEFAULTS.downloadTimeoutMs,
        maxOutputBytes: options.maxOutputBytes ?? DEFAULTS.maxOutputBytes,
      },
    });
    this.settings = {
      checkpoint: options.checkpoint ?? DEFAULTS.checkpoint,
      jobTimeoutMs: options.jobTimeoutMs ?? DEFAULTS.jobTimeoutMs,
      pollIntervalMs: options.pollIntervalMs ?? DEFAULTS.pollIntervalMs,
    };
    this.timer = setInterval(() => void this.fleet.probe(), options.healthIntervalMs ?? DEFAULTS.healthIntervalMs);
    this.timer.unref();
    this.fleet.watchQueues();
  }

  async render(request: RenderRequest, context: RenderContext): Promise<RenderOutput[]> {
    if (this.closed) throw new RendererError(MESSAGES.unavailable, true);
    const run = new RenderRun(this.fleet, this.settings, request, context);
    const result = run.execute();
    const ended = result.then(
      () => this.runs.delete(run),
      () => this.runs.delete(run),
    );
    this.runs.set(run, ended);
    return result;
  }

  freeSlots(): number {
    return this.closed ? 0 : this.fleet.freeSlots();
  }

  urgentSlots(): number {
    return this.closed ? 0 : this.fleet.urgentSlots();
  }

  onCapacity(listener: () => void): void {
    this.fleet.onCapacity(listener);
  }

  rebalance(): void {
    if (!this.closed) this.fleet.rebalance();
  }

  fleetStats(): FleetStats {
    return this.fleet.stats();
  }

  etaMs(ahead: JobType[], type: JobType): number | undefined {
    return this.fleet.etaMs(ahead, type);
  }

  async health(): Promise<RendererHealth> {
    await this.fleet.probe();
    const backends = this.fleet.backends.map((b) => (b.ok ? { id: b.id, ok: true, queue: b.queue } : { id: b.id, ok: false }));
    return { name: this.name, ok: backends.some((b) => b.ok), backends };
  }

  /** Stops the probe timer and any render still running (interrupting it on ComfyUI), then gives its places back. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const run of this.runs.keys()) run.stop('closed');
    await Promise.all(this.runs.values());
    await this.fleet.close();
  }
}
