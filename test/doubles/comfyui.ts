/**
 * An HTTP + WebSocket double of ComfyUI, written from ComfyUI's server.py / execution.py / main.py:
 * the same routes, answer shapes, validation errors and WebSocket events, with a fake "GPU" that
 * produces small real PNG / animated WEBP files. Controls let tests make it hang, fail, refuse,
 * freeze, drop sockets or hold its queue.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import sharp from 'sharp';
import { WebSocketServer, type WebSocket } from 'ws';

type Workflow = Record<string, { class_type?: unknown; inputs?: Record<string, unknown> }>;
type InputSpec =
  | 'link'
  | 'STRING'
  | 'BOOLEAN'
  | { kind: 'INT' | 'FLOAT'; min?: number; max?: number }
  | { kind: 'LIST'; values: () => string[] };

interface NodeSpec {
  required: Record<string, InputSpec>;
  output?: boolean;
}

export interface PromptBody {
  prompt: Workflow;
  client_id?: string;
  prompt_id?: string;
  [key: string]: unknown;
}

interface QueueItem {
  number: number;
  promptId: string;
  prompt: Workflow;
  extraData: { client_id?: string };
  outputs: string[];
  interrupted: boolean;
  /** dropped by restart(): its execution leaves no trace */
  discarded: boolean;
}

interface FileRef {
  filename: string;
  subfolder: string;
  type: 'output';
}

export type DoubleMode = 'normal' | 'hang' | 'fail';

export interface ComfyUIDoubleOptions {
  /** delay of each sampler step (default 5 ms) */
  stepDelayMs?: number;
  /** checkpoint names the double "has" (default: v1-5-pruned-emaonly.safetensors) */
  checkpoints?: string[];
  /** node classes it lacks (e.g. SaveAnimatedWEBP: a backend that cannot make video) */
  withoutNodes?: string[];
}

/** One prompt's execution on the double's "GPU", for measuring idle gaps and utilisation. */
export interface Execution {
  promptId: string;
  startedAt: number;
  endedAt: number;
}

export interface ComfyUIDouble {
  url: string;
  /** how a prompt executes: normally, never finishing, or failing with execution_error */
  mode: DoubleMode;
  stepDelayMs: number;
  /** queue an accepted prompt at once but answer POST /prompt only after this delay */
  promptAnswerDelayMs: number;
  /** bytes GET /view appends to every file it sends (image readers ignore trailing bytes) */
  viewPaddingBytes: number;
  /** GET /view sends files with a Content-Length (default) or chunked, without one */
  viewTransfer: 'content-length' | 'chunked';
  /** GET /view waits this long before answering (fetching a large result takes time) */
  viewDelayMs: number;
  /** a fixed time each prompt's sampler takes instead of steps × stepDelayMs (0: off) */
  renderMs: number;
  /** when set, the video save node saves these bytes as an MP4, listed under `gifs` as VideoHelperSuite's Video Combine does */
  videoFile: Buffer | undefined;
  /** every execution that ran to its end, in order */
  readonly executions: Execution[];
  /** the most prompts it has held at once, pending + running (whoever sent them) */
  readonly peakQueue: number;
  /** GET /view answers whose connection closed before the whole file was sent */
  readonly viewsCutShort: number;
  /** every POST /prompt body received, in order (including rejected ones) */
  readonly prompts: PromptBody[];
  readonly promptCount: number;
  readonly lastWorkflow: Workflow | undefined;
  /** every POST /interrupt body ({} when it had none) */
  readonly interrupts: Record<string, unknown>[];
  /** every id list of POST /queue {delete} */
  readonly deletes: string[][];
  /** ids of prompts that finished executing, in order */
  readonly finished: string[];
  running(): string | undefined;
  pending(): string[];
  /** while held, queued prompts stay pending */
  hold(held: boolean): void;
  /** close every WebSocket; with refuseNew, later upgrade requests are refused (HTTP 503) */
  dropWebSockets(options?: { refuseNew?: boolean }): void;
  /** from now on, accept connections but never answer (a hung server) */
  freeze(): void;
  /** answer every HTTP request with this status (undefined: back to normal) */
  failHttp(status: number | undefined): void;
  /** forget queue and history, as a restarted ComfyUI would */
  restart(): void;
  /** stop listening: connections are refused from now on */
  close(): Promise<void>;
}

const SAMPLERS = ['euler', 'euler_ancestral', 'dpmpp_2m', 'dpmpp_sde'];
const SCHEDULERS = ['normal', 'karras', 'exponential', 'simple'];
const MAX_RESOLUTION = 16384;
const MAX_DOUBLE_PIXELS = 512;

function nodeSpecs(checkpoints: string[]): Record<string, NodeSpec> {
  const int = (min?: number, max?: number): InputSpec => ({ kind: 'INT', min, max });
  const float = (min?: number, max?: number): InputSpec => ({ kind: 'FLOAT', min, max });
  return {
    CheckpointLoaderSimple: { required: { ckpt_name: { kind: 'LIST', values: () => checkpoints } } },
    CLIPTextEncode: { required: { text: 'STRING', clip: 'link' } },
    EmptyLatentImage: {
      required: { width: int(16, MAX_RESOLUTION), height: int(16, MAX_RESOLUTION), batch_size: int(1, 4096) },
    },
    KSampler: {
      required: {
        model: 'link',
        seed: int(0, Number.MAX_SAFE_INTEGER),
        steps: int(1, 10000),
        cfg: float(0, 100),
        sampler_name: { kind: 'LIST', values: () => SAMPLERS },
        scheduler: { kind: 'LIST', values: () => SCHEDULERS },
        positive: 'link',
        negative: 'link',
        latent_image: 'link',
        denoise: float(0, 1),
      },
    },
    VAEDecode: { required: { samples: 'link', vae: 'link' } },
    SaveImage: { required: { images: 'link', filename_prefix: 'STRING' }, output: true },
    PreviewImage: { required: { images: 'link' }, output: true },
    SaveAnimatedWEBP: {
      required: {
        images: 'link',
        filename_prefix: 'STRING',
        fps: float(0.01, 1000),
        lossless: 'BOOLEAN',
        quality: int(0, 100),
        method: { kind: 'LIST', values: () => ['default', 'fastest', 'slowest'] },
      },
      output: true,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Validation, shaped like execution.validate_prompt's answers

interface ValidationError {
  type: string;
  message: string;
  details: string;
  extra_info: Record<string, unknown>;
}

type Validation =
  | { ok: true; outputs: string[] }
  | { ok: false; error: ValidationError; nodeErrors: Record<string, unknown> };

function validatePrompt(prompt: unknown, specs: Record<string, NodeSpec>): Validation {
  if (typeof prompt !== 'object' || prompt === null || Array.isArray(prompt)) {
    return invalid('invalid_prompt', 'Prompt is not an object', '');
  }
  const wf = prompt as Workflow;
  for (const [id, node] of Object.entries(wf)) {
    if (typeof node?.class_type !== 'string') {
      return invalid('invalid_prompt', 'Cannot execute because a node is missing the class_type property.', `Node ID '#${id}'`);
    }
    if (!specs[node.class_type]) {
      return invalid('missing_node_type', `Node '${node.class_type}' not found. The custom node may not be installed.`, `Node ID '#${id}'`, {
        node_id: id,
        class_type: node.class_type,
      });
    }
    if (typeof node.inputs !== 'object' || node.inputs === null) {
      return invalid('invalid_prompt', 'Node has no inputs object', `Node ID '#${id}'`);
    }
  }
  const outputs = Object.keys(wf).filter((id) => specs[wf[id]!.class_type as string]!.output);
  if (outputs.length === 0) return invalid('prompt_no_outputs', 'Prompt has no outputs', '');
  const nodeErrors: Record<string, unknown> = {};
  for (const [id, node] of Object.entries(wf)) {
    const errors = validateInputs(wf, node.inputs!, specs[node.class_type as string]!);
    if (errors.length > 0) nodeErrors[id] = { errors, dependent_outputs: outputs, class_type: node.class_type };
  }
  if (Object.keys(nodeErrors).length > 0) {
    const details = Object.values(nodeErrors)
      .flatMap((e) => (e as { errors: ValidationError[] }).errors.map((x) => `${x.message}: ${x.details}`))
      .join('\n');
    return { ok: false, error: validationError('prompt_outputs_failed_validation', 'Prompt outputs failed validation', details), nodeErrors };
  }
  return { ok: true, outputs };
}

function validateInputs(wf: Workflow, inputs: Record<string, unknown>, spec: NodeSpec): ValidationError[] {
  const errors: ValidationError[] = [];
  for (const [name, type] of Object.entries(spec.required)) {
    const error = checkInput(wf, name, inputs[name], type);
    if (error) errors.push(error);
  }
  return errors;
}

function checkInput(wf: Workflow, name: string, value: unknown, type: InputSpec): ValidationError | undefined {
  if (value === undefined) return validationError('required_input_missing', 'Required input is missing', name, { input_name: name });
  if (type === 'link') {
    const ok = Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && wf[value[0]] !== undefined;
    return ok ? undefined : validationError('bad_linked_input', 'Bad linked input, must be a length-2 list of [node_id, slot_index]', name);
  }
  if (type === 'STRING') return typeof value === 'string' ? undefined : typeError(name, value, 'STRING');
  if (type === 'BOOLEAN') return typeof value === 'boolean' ? undefined : typeError(name, value, 'BOOLEAN');
  if (type.kind === 'LIST') {
    const values = type.values();
    return values.includes(value as string)
      ? undefined
      : validationError('value_not_in_list', 'Value not in list', `${name}: '${String(value)}' not in ${JSON.stringify(values)}`);
  }
  const n = typeof value === 'number' ? value : Number.NaN;
  if (!Number.isFinite(n) || (type.kind === 'INT' && !Number.isInteger(n))) return typeError(name, value, type.kind);
  if (type.min !== undefined && n < type.min) return validationError('value_smaller_than_min', `Value ${n} smaller than min of ${type.min}`, name);
  if (type.max !== undefined && n > type.max) return validationError('value_bigger_than_max', `Value ${n} bigger than max of ${type.max}`, name);
  return undefined;
}

function typeError(name: string, value: unknown, kind: string): ValidationError {
  return validationError('invalid_input_type', `Failed to convert an input value to a ${kind} value`, `${name}, ${String(value)}`);
}

function validationError(type: string, message: string, details: string, extra: Record<string, unknown> = {}): ValidationError {
  return { type, message, details, extra_info: extra };
}

function invalid(type: string, message: string, details: string, extra: Record<string, unknown> = {}): Validation {
  return { ok: false, error: validationError(type, message, details, extra), nodeErrors: {} };
}

// ---------------------------------------------------------------------------------------------
// Fake rendering

function nodeOf(wf: Workflow, classType: string): [string, Record<string, unknown>] | undefined {
  const hit = Object.entries(wf).find(([, n]) => n.class_type === classType);
  return hit ? [hit[0], hit[1].inputs ?? {}] : undefined;
}

function frameSize(wf: Workflow): { width: number; height: number; frames: number } {
  const latent = nodeOf(wf, 'EmptyLatentImage')?.[1] ?? {};
  const clamp = (v: unknown): number => Math.max(8, Math.min(MAX_DOUBLE_PIXELS, Number(v) || 64));
  return { width: clamp(latent.width), height: clamp(latent.height), frames: Math.max(1, Number(latent.batch_size) || 1) };
}

function rawFrames(width: number, height: number, frames: number, seed: number): Buffer {
  const raw = Buffer.alloc(width * height * frames * 3);
  for (let f = 0; f < frames; f++) {
    const colour = [(seed * 37 + f * 50) % 256, (seed * 11 + f * 90) % 256, (seed * 5 + 120) % 256];
    for (let p = 0; p < width * height; p++) raw.set(colour, (f * width * height + p) * 3);
  }
  return raw;
}

async function renderPng(width: number, height: number, seed: number): Promise<Buffer> {
  return sharp(rawFrames(width, height, 1, seed), { raw: { width, height, channels: 3 } }).png().toBuffer();
}

async function renderAnimatedWebp(width: number, height: number, frames: number, fps: number, seed: number): Promise<Buffer> {
  const raw = rawFrames(width, height, frames, seed);
  const delay = Math.round(1000 / fps);
  return sharp(raw, { raw: { width, height: height * frames, channels: 3, pageHeight: height } })
    .webp({ loop: 0, delay: new Array<number>(frames).fill(delay) })
    .toBuffer();
}

/** ComfyUI's get_save_image_path: "sub/dir/name" → subfolder "sub/dir", files "name_00001_.ext". */
function splitPrefix(prefix: string): { subfolder: string; name: string } {
  const cut = prefix.lastIndexOf('/');
  return cut < 0 ? { subfolder: '', name: prefix } : { subfolder: prefix.slice(0, cut), name: prefix.slice(cut + 1) };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// The server

export async function startComfyUIDouble(options: ComfyUIDoubleOptions = {}): Promise<ComfyUIDouble> {
  const specs = nodeSpecs(options.checkpoints ?? ['v1-5-pruned-emaonly.safetensors']);
  for (const node of options.withoutNodes ?? []) delete specs[node];
  const executions: Execution[] = [];
  const preview = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 80, b: 120 } } }).jpeg().toBuffer();
  const pending: QueueItem[] = [];
  const history = new Map<string, Record<string, unknown>>();
  const files = new Map<string, Buffer>();
  const sockets = new Map<string, WebSocket>();
  const connections = new Set<Socket>();
  const prompts: PromptBody[] = [];
  const interrupts: Record<string, unknown>[] = [];
  const deletes: string[][] = [];
  const finished: string[] = [];
  let running: QueueItem | undefined;
  let number = 0;
  let fileCounter = 0;
  let held = false;
  let frozen = false;
  let refuseSockets = false;
  let httpStatus: number | undefined;
  let closed = false;
  let cutShort = 0;
  let peakQueue = 0;

  const server = createServer((req, res) => {
    if (frozen) return; // never answer
    void handle(req, res).catch(() => {
      if (!res.headersSent) json(res, 500, { error: 'internal' });
    });
  });
  server.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://double');
    if (frozen) return;
    if (refuseSockets || httpStatus || stripApi(url.pathname) !== '/ws') {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => onSocket(ws, url.searchParams.get('clientId') || randomUUID().replace(/-/g, '')));
  });

  function onSocket(ws: WebSocket, sid: string): void {
    sockets.get(sid)?.close();
    sockets.set(sid, ws);
    ws.on('close', () => {
      if (sockets.get(sid) === ws) sockets.delete(sid);
    });
    send(sid, 'status', { status: queueInfo(), sid });
  }

  function send(sid: string | undefined, type: string, data: Record<string, unknown>): void {
    const message = JSON.stringify({ type, data });
    const targets = sid === undefined ? [...sockets.values()] : [sockets.get(sid)].filter((s) => s !== undefined);
    for (const ws of targets) if (ws.readyState === ws.OPEN) ws.send(message);
  }

  /** BinaryEventTypes.PREVIEW_IMAGE: 4-byte event type, 4-byte image type, image bytes. */
  function sendPreview(sid: string | undefined): void {
    const ws = sid === undefined ? undefined : sockets.get(sid);
    if (!ws || ws.readyState !== ws.OPEN) return;
    const header = Buffer.alloc(8);
    header.writeUInt32BE(1, 0);
    header.writeUInt32BE(2, 4);
    header.writeUInt32BE(1, 4);
    ws.send(Buffer.concat([header, preview]), { binary: true });
  }

  function queueInfo(): Record<string, unknown> {
    return { exec_info: { queue_remaining: pending.length + (running ? 1 : 0) } };
  }

  const queueTuple = (item: QueueItem): unknown[] => [item.number, item.promptId, item.prompt, item.extraData, item.outputs];

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://double');
    const path = stripApi(url.pathname);
    const body = req.method === 'POST' ? await readBody(req) : '';
    if (httpStatus) return json(res, httpStatus, { error: 'failing on purpose' });
    const route = `${req.method} ${path}`;
    if (route === 'POST /prompt') return postPrompt(res, body);
    if (route === 'GET /prompt') return json(res, 200, queueInfo());
    if (route === 'GET /queue') {
      return json(res, 200, { queue_running: running ? [queueTuple(running)] : [], queue_pending: pending.map(queueTuple) });
    }
    if (route === 'POST /queue') return postQueue(res, body);
    if (route === 'POST /interrupt') return postInterrupt(res, body);
    if (route === 'GET /history') return json(res, 200, Object.fromEntries(history));
    if (req.method === 'GET' && path.startsWith('/history/')) {
      const id = decodeURIComponent(path.slice('/history/'.length));
      const entry = history.get(id);
      return json(res, 200, entry ? { [id]: structuredClone(entry) } : {});
    }
    if (route === 'GET /view') return view(res, url.searchParams);
    if (route === 'GET /system_stats') return json(res, 200, systemStats());
    if (route === 'GET /object_info') return json(res, 200, objectInfo());
    return json(res, 404, { error: 'not found' });
  }

  function postPrompt(res: ServerResponse, raw: string): void {
    const data = parseJson(raw) as PromptBody | undefined;
    if (!data || typeof data !== 'object') return json(res, 400, { error: 'bad json', node_errors: {} });
    prompts.push(data);
    if (!('prompt' in data)) {
      const error = validationError('no_prompt', 'No prompt provided', 'No prompt provided');
      return json(res, 400, { error, node_errors: {} });
    }
    const promptId = typeof data.prompt_id === 'string' ? data.prompt_id : randomUUID();
    const valid = validatePrompt(data.prompt, specs);
    if (!valid.ok) return json(res, 400, { error: valid.error, node_errors: valid.nodeErrors });
    // server.py: {"front": true} queues the prompt ahead of every pending one.
    const item: QueueItem = {
      number: data.front === true ? -number++ : number++,
      promptId,
      prompt: data.prompt,
      extraData: typeof data.client_id === 'string' ? { client_id: data.client_id } : {},
      outputs: valid.outputs,
      interrupted: false,
      discarded: false,
    };
    pending.push(item);
    queueUpdated();
    const answer = (): void => json(res, 200, { prompt_id: promptId, number: item.number, node_errors: {} });
    if (double.promptAnswerDelayMs > 0) setTimeout(answer, double.promptAnswerDelayMs);
    else answer();
  }

  function postQueue(res: ServerResponse, raw: string): void {
    const data = (parseJson(raw) ?? {}) as { delete?: unknown; clear?: unknown };
    if (data.clear === true) pending.length = 0;
    if (Array.isArray(data.delete)) {
      const ids = data.delete.filter((id): id is string => typeof id === 'string');
      deletes.push(ids);
      for (const id of ids) {
        const at = pending.findIndex((item) => item.promptId === id);
        if (at >= 0) pending.splice(at, 1);
      }
    }
    res.writeHead(200).end();
    queueUpdated();
  }

  /** Current server.py: {prompt_id} interrupts only if that prompt runs; no body interrupts whatever runs. */
  function postInterrupt(res: ServerResponse, raw: string): void {
    const data = (parseJson(raw) ?? {}) as { prompt_id?: unknown };
    interrupts.push(data);
    if (running && (!data.prompt_id || data.prompt_id === running.promptId)) running.interrupted = true;
    res.writeHead(200).end();
  }

  async function view(res: ServerResponse, query: URLSearchParams): Promise<void> {
    const filename = query.get('filename') ?? '';
    const subfolder = query.get('subfolder') ?? '';
    const type = query.get('type') ?? 'output';
    if (!filename || filename.startsWith('/') || filename.includes('..') || subfolder.includes('..')) {
      res.writeHead(400).end();
      return;
    }
    if (double.viewDelayMs > 0) await sleep(double.viewDelayMs);
    const data = files.get(fileKey({ filename, subfolder, type: type as 'output' }));
    if (!data) {
      res.writeHead(404).end();
      return;
    }
    const ext = filename.slice(filename.lastIndexOf('.') + 1);
    const contentType = { png: 'image/png', webp: 'image/webp', mp4: 'video/mp4' }[ext] ?? 'application/octet-stream';
    const size = data.length + double.viewPaddingBytes;
    res.writeHead(200, {
      'content-type': contentType,
      'content-disposition': `filename="${filename}"`,
      ...(double.viewTransfer === 'content-length' && { 'content-length': String(size) }),
    });
    const gone = new Promise<void>((resolve) =>
      res.once('close', () => {
        if (!res.writableFinished) cutShort++;
        resolve();
      }),
    );
    // Written piece by piece as the client reads, so a client that stops reading is noticed.
    const zeros = Buffer.alloc(64 * 1024);
    const pieces = [data];
    for (let left = double.viewPaddingBytes; left > 0; left -= zeros.length) pieces.push(zeros.subarray(0, Math.min(left, zeros.length)));
    for (const piece of pieces) {
      if (res.destroyed) return;
      if (!res.write(piece)) await Promise.race([new Promise((resolve) => res.once('drain', resolve)), gone]);
    }
    if (!res.destroyed) res.end();
  }

  /** server.py's node_info shape, reduced to what a client reads: inputs per class, lists as [values]. */
  function objectInfo(): Record<string, unknown> {
    const info: Record<string, unknown> = {};
    for (const [name, spec] of Object.entries(specs)) {
      const required: Record<string, unknown> = {};
      for (const [input, type] of Object.entries(spec.required)) {
        if (type === 'link') required[input] = ['*'];
        else if (typeof type === 'string') required[input] = [type];
        else if (type.kind === 'LIST') required[input] = [type.values(), {}];
        else required[input] = [type.kind, { min: type.min, max: type.max }];
      }
      info[name] = { input: { required }, output_node: Boolean(spec.output), name, display_name: name, category: 'double' };
    }
    return info;
  }

  function systemStats(): Record<string, unknown> {
    return {
      system: { os: 'posix', comfyui_version: 'double', python_version: '3.12', embedded_python: false },
      devices: [{ name: 'double', type: 'cpu', index: 0, vram_total: 0, vram_free: 0 }],
    };
  }

  function queueUpdated(): void {
    peakQueue = Math.max(peakQueue, pending.length + (running ? 1 : 0));
    send(undefined, 'status', { status: queueInfo() });
    pump();
  }

  function pump(): void {
    if (running || held || closed || pending.length === 0) return;
    pending.sort((a, b) => a.number - b.number);
    running = pending.shift()!;
    const item = running;
    void execute(item).finally(() => {
      if (running === item) running = undefined;
      queueUpdated();
    });
  }

  // ----- execution, following PromptExecutor.execute and main.prompt_worker

  async function execute(item: QueueItem): Promise<void> {
    const sid = item.extraData.client_id;
    const prompt_id = item.promptId;
    const messages: [string, Record<string, unknown>][] = [];
    const event = (type: string, data: Record<string, unknown>, toAll = false): void => {
      messages.push([type, data]);
      send(toAll ? undefined : sid, type, data);
    };
    const startedAt = performance.now();
    event('execution_start', { prompt_id, timestamp: Date.now() });
    event('execution_cached', { nodes: [], prompt_id, timestamp: Date.now() });
    const outputs: Record<string, unknown> = {};
    const executed: string[] = [];
    let outcome: 'success' | 'error' | 'interrupted' = 'success';
    for (const id of executionOrder(item.prompt)) {
      const node = item.prompt[id]!;
      send(sid, 'executing', { node: id, display_node: id, prompt_id });
      const result = await runNode(item, id, sid);
      if (result === 'interrupted' || result === 'error') {
        outcome = result;
        const base = { prompt_id, node_id: id, node_type: node.class_type, executed, timestamp: Date.now() };
        if (result === 'interrupted') event('execution_interrupted', base, true);
        else event('execution_error', { ...base, ...fakeError() });
        break;
      }
      executed.push(id);
      if (result) {
        outputs[id] = result;
        send(sid, 'executed', { node: id, display_node: id, output: result, prompt_id });
      }
    }
    if (closed || item.discarded) return;
    if (outcome === 'success') event('execution_success', { prompt_id, timestamp: Date.now() });
    const ok = outcome === 'success';
    history.set(prompt_id, {
      prompt: queueTuple(item),
      outputs: ok ? outputs : {},
      status: { status_str: ok ? 'success' : 'error', completed: ok, messages },
      meta: {},
    });
    finished.push(prompt_id);
    executions.push({ promptId: prompt_id, startedAt, endedAt: performance.now() });
    running = undefined;
    send(sid, 'executing', { node: null, prompt_id });
  }

  function fakeError(): Record<string, unknown> {
    return {
      exception_message: 'CUDA out of memory while loading /opt/comfyui/models/checkpoints/secret-model.safetensors',
      exception_type: 'torch.OutOfMemoryError',
      traceback: ['  File "/opt/comfyui/execution.py", line 1, in execute\n'],
      current_inputs: {},
      current_outputs: {},
    };
  }

  /** Runs one node: 'interrupted' / 'error', or its UI output (for output nodes), or undefined. */
  async function runNode(item: QueueItem, id: string, sid: string | undefined): Promise<unknown> {
    const node = item.prompt[id]!;
    const inputs = node.inputs ?? {};
    if (node.class_type === 'KSampler') return sample(item, id, Number(inputs.steps), sid);
    if (item.interrupted) return 'interrupted';
    if (node.class_type === 'SaveImage') return saveImages(item.prompt, String(inputs.filename_prefix), Number(seedOf(item.prompt)));
    if (node.class_type === 'SaveAnimatedWEBP') {
      return saveAnimated(item.prompt, String(inputs.filename_prefix), Number(inputs.fps), Number(seedOf(item.prompt)));
    }
    return undefined;
  }

  async function sample(item: QueueItem, node: string, steps: number, sid: string | undefined): Promise<unknown> {
    if (double.renderMs > 0 && double.mode === 'normal') {
      // One timed "GPU" pass; ComfyUI reports the end of sampling, then saves.
      await sleep(double.renderMs);
      if (closed || item.interrupted) return 'interrupted';
      send(sid, 'progress', { value: steps, max: steps, prompt_id: item.promptId, node });
      sendPreview(sid);
      return undefined;
    }
    for (let value = 1; value <= steps; value++) {
      if (closed || item.interrupted) return 'interrupted';
      if (double.mode === 'hang') {
        await sleep(5);
        value--;
        continue;
      }
      await sleep(double.stepDelayMs);
      if (double.mode === 'fail') return 'error';
      send(sid, 'progress', { value, max: steps, prompt_id: item.promptId, node });
      sendPreview(sid);
    }
    return item.interrupted ? 'interrupted' : undefined;
  }

  async function saveImages(wf: Workflow, prefix: string, seed: number): Promise<unknown> {
    const { width, height, frames } = frameSize(wf);
    const images: FileRef[] = [];
    for (let i = 0; i < frames; i++) images.push(store(prefix, 'png', await renderPng(width, height, seed + i)));
    return { images };
  }

  async function saveAnimated(wf: Workflow, prefix: string, fps: number, seed: number): Promise<unknown> {
    const { width, height, frames } = frameSize(wf);
    if (double.videoFile) return { gifs: [{ ...store(prefix, 'mp4', double.videoFile), format: 'video/h264-mp4', frame_rate: fps }] };
    const data = await renderAnimatedWebp(width, height, frames, fps, seed);
    return { images: [store(prefix, 'webp', data)], animated: [true] };
  }

  function store(prefix: string, ext: string, data: Buffer): FileRef {
    const { subfolder, name } = splitPrefix(prefix);
    fileCounter++;
    const ref: FileRef = { filename: `${name}_${String(fileCounter).padStart(5, '0')}_.${ext}`, subfolder, type: 'output' };
    files.set(fileKey(ref), data);
    return ref;
  }

  function stopAll(): void {
    closed = true;
    for (const ws of wss.clients) ws.terminate();
    for (const socket of connections) socket.destroy();
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const double: ComfyUIDouble = {
    url: `http://127.0.0.1:${port}`,
    mode: 'normal',
    stepDelayMs: options.stepDelayMs ?? 5,
    promptAnswerDelayMs: 0,
    viewPaddingBytes: 0,
    viewTransfer: 'content-length',
    viewDelayMs: 0,
    renderMs: 0,
    videoFile: undefined,
    executions,
    get peakQueue() {
      return peakQueue;
    },
    get viewsCutShort() {
      return cutShort;
    },
    prompts,
    get promptCount() {
      return prompts.length;
    },
    get lastWorkflow() {
      return prompts.at(-1)?.prompt;
    },
    interrupts,
    deletes,
    finished,
    running: () => running?.promptId,
    pending: () => pending.map((item) => item.promptId),
    hold(value) {
      held = value;
      pump();
    },
    dropWebSockets(opts = {}) {
      refuseSockets = opts.refuseNew ?? false;
      for (const ws of wss.clients) ws.terminate();
    },
    freeze() {
      frozen = true;
    },
    failHttp(status) {
      httpStatus = status;
    },
    restart() {
      if (running) running.interrupted = running.discarded = true;
      running = undefined;
      pending.length = 0;
      history.clear();
      for (const ws of wss.clients) ws.terminate();
    },
    async close() {
      stopAll();
      wss.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return double;
}

function executionOrder(wf: Workflow): string[] {
  const order: string[] = [];
  const visit = (id: string): void => {
    if (order.includes(id)) return;
    for (const value of Object.values(wf[id]?.inputs ?? {})) {
      if (Array.isArray(value) && typeof value[0] === 'string' && wf[value[0]]) visit(value[0]);
    }
    order.push(id);
  };
  for (const id of Object.keys(wf)) visit(id);
  return order;
}

function seedOf(wf: Workflow): unknown {
  return nodeOf(wf, 'KSampler')?.[1].seed ?? 0;
}

function fileKey(ref: FileRef): string {
  return `${ref.type}\u0000${ref.subfolder}\u0000${ref.filename}`;
}

function stripApi(path: string): string {
  return path.startsWith('/api/') ? path.slice(4) : path;
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return undefined;
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
