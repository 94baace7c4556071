import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import {
  RendererError,
  type JobType,
  type RenderContext,
  type Renderer,
  type RendererHealth,
  type RenderOutput,
  type RenderRequest,
} from '../renderer.js';
import { ComfyUIClient, MESSAGES, type HistoryEntry, type OutputFile } from './client.js';
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
// Backends

interface Backend {
  /** index in the configured URL list; the only name a backend ever has outside this module */
  id: string;
  client: ComfyUIClient;
  /** undefined until first probed */
  ok: boolean | undefined;
  /** running + pending prompts at the last probe */
  queue: number;
  /** jobs this process has on it right now */
  inflight: number;
}

class BackendPool {
  readonly backends: Backend[];
  private turn = 0;
  private probing: Promise<void> | undefined;

  constructor(urls: string[], clientOptions: ConstructorParameters<typeof ComfyUIClient>[1]) {
    this.backends = urls.map((url, index) => ({
      id: String(index),
      client: new ComfyUIClient(url, clientOptions),
      ok: undefined,
      queue: 0,
      inflight: 0,
    }));
  }

  /**
   * Backends in the order to try: those not known dead first, shortest queue first, ties taken in
   * turn; the dead ones last, in case they came back since the last probe.
   */
  candidates(): Backend[] {
    const n = this.backends.length;
    const turn = this.turn++ % n;
    const rank = (b: Backend): [number, number, number] => [
      b.ok === false ? 1 : 0,
      Math.max(b.queue, b.inflight),
      (Number(b.id) - turn + n) % n,
    ];
    return [...this.backends].sort((a, b) => compareTuples(rank(a), rank(b)));
  }

  markDown(backend: Backend): void {
    backend.ok = false;
  }

  /** Probes every backend (GET /queue) at once; concurrent callers share one round. */
  probe(): Promise<void> {
    this.probing ??= Promise.all(this.backends.map((b) => probeOne(b))).then(
      () => {
        this.probing = undefined;
      },
      () => {
        this.probing = undefined;
      },
    );
    return this.probing;
  }
}

async function probeOne(backend: Backend): Promise<void> {
  try {
    const queue = await backend.client.queue();
    backend.ok = true;
    backend.queue = queue.running.length + queue.pending.length;
  } catch {
    backend.ok = false;
  }
}

function compareTuples(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

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
    if (isBinary || this.settled) return; // binary frames are live previews
    const event = parseEvent(data);
    if (!event || event.data.prompt_id !== this.promptId) return;
    const d = event.data;
    switch (event.type) {
      case 'execution_start':
        return this.progress.started();
      case 'progress':
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

class RenderRun {
  private readonly controller = new AbortController();
  private readonly clientId = `celforge-${randomUUID()}`;
  private promptId: string = randomUUID();
  private reason: StopReason | undefined;
  /** the backend the prompt was (or may have been) sent to */
  private backend: Backend | undefined;
  private socket: SocketBuffer | undefined;
  private watch: PromptWatch | undefined;
  private readonly progress: Progress;

  constructor(
    private readonly pool: BackendPool,
    private readonly settings: RunSettings,
    private readonly request: RenderRequest,
    private readonly context: RenderContext,
  ) {
    const roles = ROLES[request.type];
    this.progress = new Progress((p) => context.onProgress(p), roles.sampler, roles.output);
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
      const workflow = buildWorkflow(this.request.type, this.request, { checkpoint: this.settings.checkpoint });
      await this.submit(workflow);
      const entry = await untilAborted(this.startWatch(), this.controller.signal);
      const outputs = await this.download(entry);
      this.progress.done();
      return outputs;
    } catch (err) {
      if (this.reason) {
        await this.withdraw();
        throw stopError(this.reason);
      }
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

  /** Tries the backends in order; one that cannot be reached is marked down and the next one tried. */
  private async submit(workflow: Workflow): Promise<void> {
    let lastError: unknown;
    for (const backend of this.pool.candidates()) {
      this.controller.signal.throwIfAborted();
      try {
        await this.submitTo(backend, workflow);
        return;
      } catch (err) {
        if (this.controller.signal.aborted || (err instanceof RendererError && !err.retryable)) throw err;
        lastError = err;
        this.pool.markDown(backend);
        this.leave(backend);
      }
    }
    throw new RendererError(MESSAGES.unavailable, true, { cause: lastError });
  }

  private async submitTo(backend: Backend, workflow: Workflow): Promise<void> {
    const { signal } = this.controller;
    this.backend = backend;
    backend.inflight++;
    // Connect first so that no event of the prompt can be missed.
    const ws = await backend.client.openSocket(this.clientId, signal);
    this.socket = ws && new SocketBuffer(ws);
    const submitted = await backend.client.submit(workflow, this.clientId, this.promptId, signal);
    this.promptId = submitted.promptId;
    backend.ok = true;
  }

  /** Gives a backend up after a failed submission, removing the prompt in case it got queued. */
  private leave(backend: Backend): void {
    this.closeSocket();
    backend.inflight--;
    this.backend = undefined;
    void backend.client.deleteFromQueue([this.promptId]).catch(() => undefined);
  }

  private startWatch(): Promise<HistoryEntry> {
    const backend = this.backend!;
    this.watch = new PromptWatch(
      backend.client,
      this.promptId,
      this.socket?.ws,
      this.progress,
      this.settings.pollIntervalMs,
      this.controller.signal,
      this.socket?.release() ?? [],
    );
    return this.watch.done;
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
    for (const { file, media } of files) {
      const data = await backend.client.view(file, this.controller.signal);
      if (data.length === 0) throw new RendererError(JOB_MESSAGES.noResult, true);
      outputs.push({ data, ...media });
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
    if (this.backend) this.backend.inflight--;
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

/** Celforge's production renderer: one or more ComfyUI servers over HTTP + WebSocket. */
export class ComfyUIRenderer implements Renderer {
  readonly name = 'comfyui';
  private readonly pool: BackendPool;
  private readonly settings: RunSettings;
  /** renders in progress, each with a promise that settles (never rejects) when it has ended */
  private readonly runs = new Map<RenderRun, Promise<unknown>>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(options: ComfyUIRendererOptions) {
    if (options.urls.length === 0) throw new Error('comfyui renderer: at least one URL is required');
    const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    this.pool = new BackendPool(options.urls, {
      timeoutMs: requestTimeoutMs,
      downloadTimeoutMs: options.downloadTimeoutMs ?? DEFAULTS.downloadTimeoutMs,
      maxOutputBytes: options.maxOutputBytes ?? DEFAULTS.maxOutputBytes,
    });
    this.settings = {
      checkpoint: options.checkpoint ?? DEFAULTS.checkpoint,
      jobTimeoutMs: options.jobTimeoutMs ?? DEFAULTS.jobTimeoutMs,
      pollIntervalMs: options.pollIntervalMs ?? DEFAULTS.pollIntervalMs,
    };
    this.timer = setInterval(() => void this.pool.probe(), options.healthIntervalMs ?? DEFAULTS.healthIntervalMs);
    this.timer.unref();
  }

  async render(request: RenderRequest, context: RenderContext): Promise<RenderOutput[]> {
    if (this.closed) throw new RendererError(MESSAGES.unavailable, true);
    const run = new RenderRun(this.pool, this.settings, request, context);
    const result = run.execute();
    const ended = result.then(
      () => this.runs.delete(run),
      () => this.runs.delete(run),
    );
    this.runs.set(run, ended);
    return result;
  }

  async health(): Promise<RendererHealth> {
    await this.pool.probe();
    const backends = this.pool.backends.map((b) =>
      b.ok ? { id: b.id, ok: true, queue: b.queue } : { id: b.id, ok: false },
    );
    return { name: this.name, ok: backends.some((b) => b.ok), backends };
  }

  /** Stops the probe timer and any render still running (interrupting it on ComfyUI). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const run of this.runs.keys()) run.stop('closed');
    await Promise.all(this.runs.values());
  }
}
