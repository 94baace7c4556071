import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import WebSocket from 'ws';
import { RendererError } from '../renderer.js';
import type { Workflow } from './workflow.js';

/**
 * A small client for one ComfyUI server (server.py routes). Every HTTP call carries a timeout;
 * every failure becomes a RendererError whose message is safe to show (no host, no path). The
 * technical detail travels in `cause`, for logs only.
 */

export const MESSAGES = {
  unavailable: 'renderer unavailable',
  timeout: 'renderer timed out',
  rejected: 'renderer rejected the workflow',
  unexpected: 'renderer gave an unexpected answer',
  tooLarge: 'renderer output is larger than allowed',
} as const;

/** A file reference as found in /history outputs and accepted by /view. */
export interface OutputFile {
  filename: string;
  subfolder: string;
  type: string;
}

/** One /history/{prompt_id} entry (the parts Celforge reads). */
export interface HistoryEntry {
  outputs: Record<string, Record<string, unknown>>;
  status?: {
    status_str?: string;
    completed?: boolean;
    messages?: [string, Record<string, unknown>][];
  };
}

export interface QueueState {
  running: string[];
  pending: string[];
}

export interface SubmitResult {
  promptId: string;
  number: number;
}

export interface ClientOptions {
  /** timeout of each HTTP call and of the WebSocket handshake */
  timeoutMs: number;
  /** timeout of a /view download (results can be large) */
  downloadTimeoutMs: number;
  /** a /view download larger than this fails */
  maxOutputBytes: number;
}

interface CallOptions {
  body?: unknown;
  query?: Record<string, string>;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** let a 400 through to `read` (POST /prompt explains a refused workflow with it) */
  allowBadRequest?: boolean;
}

const MAX_WS_PAYLOAD = 32 * 1024 * 1024;

export class ComfyUIClient {
  private readonly base: URL;

  constructor(
    baseUrl: string,
    private readonly options: ClientOptions,
  ) {
    this.base = parseBaseUrl(baseUrl);
  }

  /** POST /prompt. A 400 means ComfyUI refused the workflow (validate_prompt): not retryable. */
  async submit(workflow: Workflow, clientId: string, promptId: string, signal?: AbortSignal, front = false): Promise<SubmitResult> {
    // prompt_id is honoured by current ComfyUI (older versions ignore it and pick their own),
    // which lets us clean up a prompt whose submission answer never arrived. `front` queues it
    // ahead of every pending prompt.
    const body = { prompt: workflow, client_id: clientId, prompt_id: promptId, ...(front && { front: true }) };
    const answer = await this.call('POST', 'prompt', { body, signal, allowBadRequest: true }, async (res) => {
      if (res.status === 400) {
        const detail = await res.text().catch(() => '');
        throw new RendererError(MESSAGES.rejected, false, { cause: new Error(`POST /prompt 400: ${detail.slice(0, 2000)}`) });
      }
      return readJson(res, 'POST /prompt');
    });
    const { prompt_id, number } = answer as { prompt_id?: unknown; number?: unknown };
    if (typeof prompt_id !== 'string' || prompt_id === '') throw unexpected('POST /prompt: no prompt_id');
    return { promptId: prompt_id, number: typeof number === 'number' ? number : 0 };
  }

  /** GET /history/{prompt_id}: the entry once the prompt has finished (success or error), else undefined. */
  async history(promptId: string, signal?: AbortSignal): Promise<HistoryEntry | undefined> {
    const path = `history/${encodeURIComponent(promptId)}`;
    const answer = await this.call('GET', path, { signal }, (res) => readJson(res, 'GET /history'));
    const entry = (answer as Record<string, unknown> | null)?.[promptId];
    if (entry === undefined) return undefined;
    if (!isObject(entry) || !isObject(entry.outputs)) throw unexpected('GET /history: malformed entry');
    return entry as unknown as HistoryEntry;
  }

  /** GET /queue: prompt ids running and pending. Items are [number, prompt_id, prompt, extra_data, outputs, ...]. */
  async queue(signal?: AbortSignal): Promise<QueueState> {
    const answer = await this.call('GET', 'queue', { signal }, (res) => readJson(res, 'GET /queue'));
    const { queue_running, queue_pending } = answer as { queue_running?: unknown; queue_pending?: unknown };
    if (!Array.isArray(queue_running) || !Array.isArray(queue_pending)) throw unexpected('GET /queue: malformed');
    return { running: queueIds(queue_running), pending: queueIds(queue_pending) };
  }

  /** POST /queue {delete}: removes pending prompts (a running one is not affected). */
  async deleteFromQueue(promptIds: string[], signal?: AbortSignal): Promise<void> {
    await this.call('POST', 'queue', { body: { delete: promptIds }, signal }, drain);
  }

  /**
   * POST /interrupt {prompt_id}. Current ComfyUI interrupts only if that prompt is the one running;
   * older versions ignore the body and interrupt whatever runs, so callers check /queue first.
   */
  async interrupt(promptId: string, signal?: AbortSignal): Promise<void> {
    await this.call('POST', 'interrupt', { body: { prompt_id: promptId }, signal }, drain);
  }

  /** GET /object_info: every node class the server has, with its inputs (checkpoint lists included). */
  async objectInfo(signal?: AbortSignal): Promise<Record<string, unknown>> {
    const answer = await this.call('GET', 'object_info', { signal }, (res) => readJson(res, 'GET /object_info'));
    if (!isObject(answer)) throw unexpected('GET /object_info: malformed');
    return answer;
  }

  /** GET /system_stats: a cheap liveness probe. */
  async systemStats(signal?: AbortSignal): Promise<Record<string, unknown>> {
    const answer = await this.call('GET', 'system_stats', { signal }, (res) => readJson(res, 'GET /system_stats'));
    if (!isObject(answer)) throw unexpected('GET /system_stats: malformed');
    return answer;
  }

  /** GET /view?filename&subfolder&type: the bytes of one output file, at most `maxOutputBytes`. */
  async view(file: OutputFile, signal?: AbortSignal): Promise<Buffer> {
    return this.call('GET', 'view', this.#viewOptions(file, signal), async (res) => {
      const chunks: Uint8Array[] = [];
      for await (const chunk of cappedBody(res, this.options.maxOutputBytes)) chunks.push(chunk);
      return Buffer.concat(chunks);
    });
  }

  /** GET /view streamed into the file `destination` (a video may be large); its size in bytes. */
  async viewToFile(file: OutputFile, destination: string, signal?: AbortSignal): Promise<number> {
    return this.call('GET', 'view', this.#viewOptions(file, signal), async (res) => {
      const out = createWriteStream(destination, { mode: 0o600 });
      await pipeline(Readable.from(cappedBody(res, this.options.maxOutputBytes)), out);
      return out.bytesWritten;
    });
  }

  #viewOptions(file: OutputFile, signal?: AbortSignal): CallOptions {
    return { query: { filename: file.filename, subfolder: file.subfolder, type: file.type }, signal, timeoutMs: this.options.downloadTimeoutMs };
  }

  /**
   * Opens /ws?clientId=…; ComfyUI sends that client the events of the prompts it submitted.
   * Resolves undefined when the server answers but will not upgrade (e.g. a proxy without
   * WebSocket support): the caller then polls. Rejects when the server cannot be reached.
   */
  openSocket(clientId: string, signal?: AbortSignal): Promise<WebSocket | undefined> {
    const url = new URL(`ws?clientId=${encodeURIComponent(clientId)}`, this.base);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url, {
      handshakeTimeout: this.options.timeoutMs,
      perMessageDeflate: false,
      maxPayload: MAX_WS_PAYLOAD,
    });
    // A socket error after opening must never crash the process; 'close' follows it.
    ws.on('error', () => {});
    return new Promise((resolve, reject) => {
      const settle = (fn: () => void): void => {
        signal?.removeEventListener('abort', onAbort);
        ws.off('open', onOpen).off('error', onError).off('unexpected-response', onRefused);
        fn();
      };
      const onOpen = (): void => settle(() => resolve(ws));
      const onError = (err: Error): void =>
        settle(() => {
          ws.terminate();
          reject(transportError(err, signal, 'GET /ws'));
        });
      const onRefused = (): void =>
        settle(() => {
          ws.terminate();
          resolve(undefined);
        });
      const onAbort = (): void => onError(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      ws.once('open', onOpen).once('error', onError).once('unexpected-response', onRefused);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** One HTTP exchange, reading included, under the call timeout and the caller's signal. */
  private async call<T>(
    method: 'GET' | 'POST',
    path: string,
    options: CallOptions,
    read: (res: Response) => Promise<T>,
  ): Promise<T> {
    const url = new URL(path, this.base);
    for (const [key, value] of Object.entries(options.query ?? {})) url.searchParams.set(key, value);
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.options.timeoutMs);
    const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
    const label = `${method} /${path.split('/')[0]}`;
    try {
      const res = await fetch(url, {
        method,
        signal,
        headers: options.body === undefined ? undefined : { 'content-type': 'application/json' },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
      if (res.status >= 500) {
        await drain(res);
        throw new RendererError(MESSAGES.unavailable, true, { cause: new Error(`${label}: HTTP ${res.status}`) });
      }
      if (!res.ok && !(res.status === 400 && options.allowBadRequest)) {
        await drain(res);
        throw unexpected(`${label}: HTTP ${res.status}`);
      }
      return await read(res);
    } catch (err) {
      throw transportError(err, options.signal, label);
    }
  }
}

/** Config errors must not echo the URL: it may carry credentials. */
function parseBaseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw.endsWith('/') ? raw : `${raw}/`);
  } catch {
    throw new Error('comfyui renderer: a configured URL is not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error('comfyui renderer: URLs must be http or https');
  }
  if (url.username || url.password) throw new Error('comfyui renderer: URLs must not carry credentials');
  return url;
}

function transportError(err: unknown, callerSignal: AbortSignal | undefined, label: string): unknown {
  if (err instanceof RendererError) return err;
  // The caller's own abort (cancel, job deadline) is theirs to interpret.
  if (callerSignal?.aborted) return callerSignal.reason ?? err;
  const cause = new Error(`${label}: ${describe(err)}`, { cause: err });
  const timedOut = err instanceof Error && (err.name === 'TimeoutError' || /timeout|timed out/i.test(err.message));
  return new RendererError(timedOut ? MESSAGES.timeout : MESSAGES.unavailable, true, { cause });
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err.cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? `${err.message} (${code})` : err.message;
}

function unexpected(detail: string): RendererError {
  return new RendererError(MESSAGES.unexpected, true, { cause: new Error(detail) });
}

async function readJson(res: Response, label: string): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw unexpected(`${label}: answer is not JSON`);
  }
}

/**
 * The body's chunks, refused past `max` bytes by its Content-Length and by counting while reading,
 * since that header may be missing, wrong, or count compressed bytes. Leaving early cancels the body.
 */
async function* cappedBody(res: Response, max: number): AsyncGenerator<Uint8Array> {
  const declared = Number(res.headers.get('content-length'));
  if (declared > max) {
    await res.body?.cancel().catch(() => undefined);
    throw tooLarge(`GET /view: Content-Length ${declared} exceeds ${max}`);
  }
  if (!res.body) return;
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > max) throw tooLarge(`GET /view: body exceeds ${max} bytes`);
    yield chunk;
  }
}

/** The same file would come back just as large: not retryable. */
function tooLarge(detail: string): RendererError {
  return new RendererError(MESSAGES.tooLarge, false, { cause: new Error(detail) });
}

async function drain(res: Response): Promise<void> {
  await res.arrayBuffer().catch(() => undefined);
}

function queueIds(items: unknown[]): string[] {
  return items.flatMap((item) => (Array.isArray(item) && typeof item[1] === 'string' ? [item[1]] : []));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
