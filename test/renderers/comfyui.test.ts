import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { ComfyUIRenderer, type ComfyUIRendererOptions } from '../../src/renderers/comfyui/renderer.js';
import { buildWorkflow, SLOTS } from '../../src/renderers/comfyui/workflow.js';
import { RendererError, type RenderContext, type RenderRequest, type ResultData } from '../../src/renderers/renderer.js';
import { startComfyUIDouble, type ComfyUIDouble, type ComfyUIDoubleOptions } from '../doubles/comfyui.js';
import { testScratchDir } from '../support/scratch.js';

const scratch = testScratchDir();

const doubles: ComfyUIDouble[] = [];
const renderers: ComfyUIRenderer[] = [];

afterEach(async () => {
  await Promise.all(renderers.splice(0).map((r) => r.close()));
  await Promise.all(doubles.splice(0).map((d) => d.close()));
});

async function comfy(options?: ComfyUIDoubleOptions): Promise<ComfyUIDouble> {
  const d = await startComfyUIDouble(options);
  doubles.push(d);
  return d;
}

/** A URL where nothing listens any more: connections are refused. */
async function deadUrl(): Promise<string> {
  const d = await startComfyUIDouble();
  await d.close();
  return d.url;
}

function renderer(urls: string[], options: Partial<ComfyUIRendererOptions> = {}): ComfyUIRenderer {
  const r = new ComfyUIRenderer({
    urls,
    requestTimeoutMs: 1_000,
    jobTimeoutMs: 10_000,
    pollIntervalMs: 25,
    healthIntervalMs: 60_000,
    ...options,
  });
  renderers.push(r);
  return r;
}

function request(overrides: Partial<RenderRequest> = {}): RenderRequest {
  return {
    jobId: 'job-1',
    type: 'image',
    prompt: 'a cat on a red roof',
    negativePrompt: 'blurry',
    width: 64,
    height: 48,
    seed: 42,
    steps: 6,
    frames: 1,
    fps: 8,
    ...overrides,
  };
}

function context(signal: AbortSignal = new AbortController().signal): { ctx: RenderContext; progress: number[] } {
  const progress: number[] = [];
  return { progress, ctx: { signal, scratchDir: async () => scratch, onProgress: (p) => progress.push(p) } };
}

/** An image output's bytes: images are handed over in memory. */
function inMemory(data: ResultData): Buffer {
  if (!Buffer.isBuffer(data)) throw new Error('expected the bytes in memory');
  return data;
}

async function rejection(promise: Promise<unknown>): Promise<RendererError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(RendererError);
    expectSafe(err as RendererError);
    return err as RendererError;
  }
  throw new Error('expected the render to fail');
}

/** A user-facing message names no host, URL, file or path. */
function expectSafe(err: Error): void {
  expect(err.message).not.toMatch(/127\.0\.0\.1|localhost|http|[/\\]|\.safetensors|\.png|\.webp|:\d+/);
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function expectMonotonicTo100(progress: number[]): void {
  expect(progress.length).toBeGreaterThan(3);
  for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThan(progress[i - 1]!);
  expect(progress.at(-1)).toBe(100);
  expect(progress.every((p) => p >= 0 && p <= 100)).toBe(true);
}

describe('comfyui workflow templates', () => {
  it('fills every named slot of a fresh copy', () => {
    const first = buildWorkflow('image', request({ prompt: 'first' }), { checkpoint: 'anime.safetensors' });
    const second = buildWorkflow('image', request({ prompt: 'second', seed: 7 }), { checkpoint: 'anime.safetensors' });
    expect(first['6']!.inputs.text).toBe('first');
    expect(second['6']!.inputs.text).toBe('second');
    expect(first['3']!.inputs.seed).toBe(42);
    expect(first['4']!.inputs.ckpt_name).toBe('anime.safetensors');
    for (const slot of Object.values(SLOTS.image)) expect(first[slot.node]!.inputs).toHaveProperty(slot.input);
  });

  it('uses only core nodes and saves video as an animation', () => {
    const video = buildWorkflow('video', request({ type: 'video', frames: 12, fps: 6 }), { checkpoint: 'c' });
    const classes = Object.values(video).map((n) => n.class_type);
    expect(classes).toContain('SaveAnimatedWEBP');
    expect(classes).not.toContain('SaveImage');
    expect(video['5']!.inputs.batch_size).toBe(12);
    expect(video['10']!.inputs.fps).toBe(6);
  });

  it('keeps the output prefix a plain file-name stem', () => {
    const wf = buildWorkflow('image', request({ jobId: '../../etc/passwd' }), { checkpoint: 'c' });
    expect(wf['9']!.inputs.filename_prefix).toBe('celforge_etcpasswd');
  });
});

describe('ComfyUIRenderer against the ComfyUI double', () => {
  it('renders an image: PNG bytes, monotonic progress to 100, request values in the right slots', async () => {
    const d = await comfy();
    const { ctx, progress } = context();
    const [output, ...rest] = await renderer([d.url]).render(request(), ctx);

    expect(rest).toHaveLength(0);
    expect(output!.contentType).toBe('image/png');
    expect(output!.extension).toBe('png');
    const meta = await sharp(inMemory(output!.data)).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);
    expectMonotonicTo100(progress);

    const wf = d.lastWorkflow!;
    expect(wf['6']).toMatchObject({ class_type: 'CLIPTextEncode', inputs: { text: 'a cat on a red roof' } });
    expect(wf['3']).toMatchObject({ class_type: 'KSampler', inputs: { seed: 42, steps: 6 } });
    expect(wf['5']).toMatchObject({ class_type: 'EmptyLatentImage', inputs: { width: 64, height: 48, batch_size: 1 } });
    expect(wf['9']).toMatchObject({ class_type: 'SaveImage' });
    expect(d.prompts[0]!.client_id).toMatch(/^celforge-/);
  });

  it('renders a video as an animated WEBP, never a PNG, with frames and fps in the workflow', async () => {
    const d = await comfy();
    const { ctx, progress } = context();
    const outputs = await renderer([d.url]).render(request({ type: 'video', frames: 5, fps: 10 }), ctx);

    expect(outputs).toHaveLength(1);
    expect(outputs[0]!.contentType).toBe('image/webp');
    const meta = await sharp(inMemory(outputs[0]!.data), { animated: true }).metadata();
    expect(meta.format).toBe('webp');
    expect(meta.pages).toBe(5);
    expect(meta.delay).toEqual([100, 100, 100, 100, 100]);
    expectMonotonicTo100(progress);

    const wf = d.lastWorkflow!;
    expect(wf['5']!.inputs!.batch_size).toBe(5);
    expect(wf['10']).toMatchObject({ class_type: 'SaveAnimatedWEBP', inputs: { fps: 10 } });
    expect(Object.values(wf).some((n) => n.class_type === 'SaveImage')).toBe(false);
  });

  it('downloads a video saved as an MP4 into the scratch directory of the run, as a file', async () => {
    const d = await comfy();
    const mp4 = randomBytes(3 * 1024 * 1024 + 17);
    d.videoFile = mp4;
    const { ctx } = context();
    const outputs = await renderer([d.url]).render(request({ type: 'video', frames: 5, fps: 10 }), ctx);

    expect(outputs).toHaveLength(1);
    expect(outputs[0]).toMatchObject({ contentType: 'video/mp4', extension: 'mp4' });
    const data = outputs[0]!.data;
    expect(Buffer.isBuffer(data)).toBe(false);
    const file = (data as { path: string }).path;
    expect(path.dirname(file)).toBe(scratch);
    expect(readFileSync(file).equals(mp4)).toBe(true);
  });

  it('stops downloading an MP4 past maxOutputBytes, with or without a Content-Length', async () => {
    const d = await comfy();
    d.videoFile = randomBytes(256 * 1024);
    for (const transfer of ['content-length', 'chunked'] as const) {
      d.viewTransfer = transfer;
      const failure = await rejection(renderer([d.url], { maxOutputBytes: 100 * 1024 }).render(request({ type: 'video', frames: 5, fps: 10 }), context().ctx));
      expect([failure.message, failure.retryable]).toEqual(['renderer output is larger than allowed', false]);
    }
  });

  it('passes the negative prompt and any prompt text through byte for byte', async () => {
    const d = await comfy();
    const prompt = `she said "it's fine" -- drop \\ </script> 桜の下で 🌸 ${'\u2028'} {"x":1}`;
    const negativePrompt = 'lowres, "bad hands", ñ';
    await renderer([d.url]).render(request({ prompt, negativePrompt }), context().ctx);

    const wf = d.lastWorkflow!;
    expect(Buffer.from(wf['6']!.inputs!.text as string)).toEqual(Buffer.from(prompt));
    expect(Buffer.from(wf['7']!.inputs!.text as string)).toEqual(Buffer.from(negativePrompt));
  });

  it('cancels a running prompt with a targeted /interrupt', async () => {
    const d = await comfy({ stepDelayMs: 30 });
    const abort = new AbortController();
    const { ctx, progress } = context(abort.signal);
    const render = renderer([d.url]).render(request({ steps: 1000 }), ctx);
    await until(() => progress.length > 2);
    abort.abort();

    const err = await rejection(render);
    expect(err.retryable).toBe(false);
    const promptId = d.prompts[0]!.prompt_id;
    expect(d.interrupts).toEqual([{ prompt_id: promptId }]);
    await until(() => d.running() === undefined);
  });

  it('cancels a pending prompt by deleting it from the queue, without interrupting anything', async () => {
    const d = await comfy();
    d.hold(true);
    const abort = new AbortController();
    const render = renderer([d.url]).render(request(), context(abort.signal).ctx);
    await until(() => d.pending().length === 1);
    abort.abort();

    const err = await rejection(render);
    expect(err.retryable).toBe(false);
    expect(d.deletes).toContainEqual([d.prompts[0]!.prompt_id]);
    expect(d.interrupts).toEqual([]);
    expect(d.pending()).toEqual([]);
  });

  it('does nothing for a job canceled before it starts', async () => {
    const d = await comfy();
    const abort = new AbortController();
    abort.abort();
    const err = await rejection(renderer([d.url]).render(request(), context(abort.signal).ctx));
    expect(err.retryable).toBe(false);
    expect(d.promptCount).toBe(0);
  });

  it('gives up on a prompt that never finishes: interrupt, then a retryable error', async () => {
    const d = await comfy();
    d.mode = 'hang';
    const err = await rejection(renderer([d.url], { jobTimeoutMs: 300 }).render(request(), context().ctx));
    expect(err.retryable).toBe(true);
    expect(d.interrupts).toEqual([{ prompt_id: d.prompts[0]!.prompt_id }]);
  });

  it('never hangs on a server that accepts connections but never answers', async () => {
    const d = await comfy();
    d.freeze();
    const err = await rejection(renderer([d.url], { requestTimeoutMs: 150, jobTimeoutMs: 2_000 }).render(request(), context().ctx));
    expect(err.retryable).toBe(true);
  });

  it('reports a backend that is down as retryable', async () => {
    const err = await rejection(renderer([await deadUrl()]).render(request(), context().ctx));
    expect(err.retryable).toBe(true);
    expect(err.message).toBe('renderer unavailable');
  });

  it('treats 5xx answers as retryable', async () => {
    const d = await comfy();
    d.failHttp(502);
    const err = await rejection(renderer([d.url]).render(request(), context().ctx));
    expect(err.retryable).toBe(true);
  });

  it('uses the second URL when the first is dead, and says so in health', async () => {
    const good = await comfy();
    const r = renderer([await deadUrl(), good.url]);
    const outputs = await r.render(request(), context().ctx);
    expect(outputs[0]!.contentType).toBe('image/png');
    expect(good.promptCount).toBe(1);

    const health = await r.health();
    expect(health).toEqual({
      name: 'comfyui',
      ok: true,
      backends: [
        { id: '0', ok: false },
        { id: '1', ok: true, queue: 0 },
      ],
    });
    expect(JSON.stringify(health)).not.toMatch(/127\.0\.0\.1|http/);
  });

  it('spreads concurrent jobs over healthy backends', async () => {
    const a = await comfy();
    const b = await comfy();
    const r = renderer([a.url, b.url]);
    await Promise.all([r.render(request({ jobId: 'j1' }), context().ctx), r.render(request({ jobId: 'j2' }), context().ctx)]);
    expect([a.promptCount, b.promptCount]).toEqual([1, 1]);
  });

  it('fails an execution_error without retry and without leaking its text', async () => {
    const d = await comfy();
    d.mode = 'fail';
    const err = await rejection(renderer([d.url]).render(request(), context().ctx));
    expect(err.retryable).toBe(false);
    expect(err.message).toBe('render failed');
    expect(String(err.cause)).toContain('OutOfMemoryError'); // kept for the logs only
  });

  it('fails a workflow ComfyUI refuses (400) without trying another backend', async () => {
    const a = await comfy();
    const b = await comfy();
    const r = renderer([a.url, b.url]);
    const err = await rejection(r.render(request({ width: 20_000 }), context().ctx));
    expect(err.retryable).toBe(false);
    expect(err.message).toBe('renderer rejected the workflow');
    expect(a.promptCount + b.promptCount).toBe(1);
  });

  it('fails at once, sending nothing, a job whose checkpoint no backend has (/object_info)', async () => {
    const a = await comfy();
    const b = await comfy();
    const r = renderer([a.url, b.url], { checkpoint: 'missing-model.safetensors' });
    const err = await rejection(r.render(request(), context().ctx));
    expect(err.retryable).toBe(false);
    expect(err.message).toBe('no renderer can run this job (its model or nodes are not installed)');
    expect(a.promptCount + b.promptCount).toBe(0);
  });

  it('completes by polling /history when the WebSocket cannot be used', async () => {
    const d = await comfy();
    d.dropWebSockets({ refuseNew: true });
    const { ctx, progress } = context();
    const outputs = await renderer([d.url]).render(request(), ctx);
    expect(outputs[0]!.contentType).toBe('image/png');
    expect(progress.at(-1)).toBe(100);
  });

  it('completes by polling /history when the WebSocket drops mid-job', async () => {
    const d = await comfy({ stepDelayMs: 10 });
    const { ctx, progress } = context();
    const render = renderer([d.url]).render(request({ steps: 20 }), ctx);
    await until(() => progress.length > 2);
    d.dropWebSockets({ refuseNew: true });
    const outputs = await render;
    expect(outputs[0]!.contentType).toBe('image/png');
    expectMonotonicTo100(progress);
  });

  it('keeps the events of a prompt that finishes before POST /prompt is answered', async () => {
    const d = await comfy({ stepDelayMs: 1 });
    d.promptAnswerDelayMs = 300;
    const { ctx, progress } = context();
    // Polling is made too slow to matter: only the WebSocket events can finish this job in time.
    const r = renderer([d.url], { pollIntervalMs: 60_000, jobTimeoutMs: 3_000 });
    const outputs = await r.render(request(), ctx);
    expect(outputs[0]!.contentType).toBe('image/png');
    expect(progress[0]).toBe(1);
    expectMonotonicTo100(progress);
  });

  it('notices a prompt lost by a restarted ComfyUI', async () => {
    const d = await comfy({ stepDelayMs: 20 });
    const { ctx, progress } = context();
    const render = renderer([d.url]).render(request({ steps: 1000 }), ctx);
    await until(() => progress.length > 1);
    d.restart();
    const err = await rejection(render);
    expect(err.retryable).toBe(true);
  });

  it('reports an interrupt it did not ask for as retryable', async () => {
    const d = await comfy();
    d.mode = 'hang';
    const render = renderer([d.url]).render(request(), context().ctx);
    await until(() => d.running() !== undefined);
    await fetch(`${d.url}/interrupt`, { method: 'POST' });
    const err = await rejection(render);
    expect(err.retryable).toBe(true);
    expect(err.message).toBe('render was interrupted');
  });

  it('refuses a bad URL at construction without echoing it', () => {
    expect(() => new ComfyUIRenderer({ urls: ['ftp://secret-host/x'] })).toThrow(/http or https/);
    expect(() => new ComfyUIRenderer({ urls: ['not a url at secret-host'] })).not.toThrow(/secret-host/);
    expect(() => new ComfyUIRenderer({ urls: [] })).toThrow();
  });

  it('health is down when no backend answers', async () => {
    const health = await renderer([await deadUrl()], { requestTimeoutMs: 200 }).health();
    expect(health).toEqual({ name: 'comfyui', ok: false, backends: [{ id: '0', ok: false }] });
  });

  it('close() ends running renders (interrupting them) and refuses new ones', async () => {
    const d = await comfy();
    d.mode = 'hang';
    const r = renderer([d.url]);
    const render = r.render(request(), context().ctx);
    await until(() => d.running() !== undefined);
    await r.close();
    const err = await rejection(render);
    expect(err.retryable).toBe(true);
    expect(d.interrupts).toHaveLength(1);
    await rejection(r.render(request(), context().ctx));
  });
});
