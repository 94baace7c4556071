import { afterEach, describe, expect, it } from 'vitest';
import { NO_BACKEND_CAN } from '../../src/renderers/comfyui/fleet.js';
import { ComfyUIRenderer, type ComfyUIRendererOptions } from '../../src/renderers/comfyui/renderer.js';
import type { PreviewFrame, RenderContext, RenderRequest } from '../../src/renderers/renderer.js';
import { RendererError } from '../../src/renderers/renderer.js';
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

function fleet(urls: string[], options: Partial<ComfyUIRendererOptions> = {}): ComfyUIRenderer {
  const r = new ComfyUIRenderer({ urls, requestTimeoutMs: 1_000, jobTimeoutMs: 15_000, pollIntervalMs: 25, healthIntervalMs: 60_000, ...options });
  renderers.push(r);
  return r;
}

let counter = 0;
function request(overrides: Partial<RenderRequest> = {}): RenderRequest {
  counter++;
  return { jobId: `job-${counter}`, type: 'image', prompt: `prompt ${counter}`, negativePrompt: '', width: 64, height: 64, seed: counter, steps: 2, frames: 1, fps: 8, ...overrides };
}

function context(onPreview?: (frame: PreviewFrame) => void): RenderContext {
  return { signal: new AbortController().signal, scratchDir: async () => scratch, onProgress: () => {}, onPreview };
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const queued = (d: ComfyUIDouble) => d.pending().length + (d.running() ? 1 : 0);
/** Which of a double's prompts carried this job (its output prefix names the job). */
const promptsOf = (d: ComfyUIDouble, jobId: string) => d.prompts.filter((p) => JSON.stringify(p.prompt).includes(`"celforge_${jobId}"`));

describe('ComfyUI fleet', () => {
  it('keeps each backend exactly its depth deep; the rest wait in Celforge, not on a GPU', async () => {
    const a = await comfy();
    const b = await comfy();
    a.hold(true);
    b.hold(true);
    const r = fleet([a.url, b.url], { depths: [1, 3] });
    expect(r.freeSlots()).toBe(4);
    const renders = Array.from({ length: 6 }, () => r.render(request(), context()));
    expect(r.freeSlots()).toBe(-2);
    await until(() => a.promptCount + b.promptCount === 4);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect([queued(a), queued(b)]).toEqual([1, 3]);
    a.hold(false);
    b.hold(false);
    const outputs = await Promise.all(renders);
    expect(outputs.every((o) => o.length === 1 && o[0]!.contentType === 'image/png')).toBe(true);
    expect(a.finished.length + b.finished.length).toBe(6);
    expect(r.freeSlots()).toBe(4);
  });

  it('work stealing: a prompt waiting on a stuck backend is taken back and rendered on one that frees up', async () => {
    const a = await comfy();
    const b = await comfy();
    b.renderMs = 150;
    const r = fleet([a.url, b.url]);
    // One render on each first, so the fleet knows both.
    await Promise.all([r.render(request(), context()), r.render(request(), context())]);
    a.hold(true);
    const jobs = Array.from({ length: 4 }, () => request());
    const renders = jobs.map((job) => r.render(job, context()));
    await until(() => a.deletes.length > 0, 5_000);
    const stolen = a.deletes[0]![0]!;
    expect(a.pending()).not.toContain(stolen);
    a.hold(false);
    await Promise.all(renders);
    // Each job was rendered exactly once; the stolen one was sent to both but ran only on b.
    const executed = (d: ComfyUIDouble, jobId: string) => d.finished.filter((id) => promptsOf(d, jobId).some((p) => p.prompt_id === id)).length;
    for (const job of jobs) expect(executed(a, job.jobId) + executed(b, job.jobId)).toBe(1);
    const moved = jobs.filter((job) => promptsOf(a, job.jobId).length === 1 && promptsOf(b, job.jobId).length === 1);
    expect(moved.length).toBeGreaterThanOrEqual(1);
    expect(a.finished).not.toContain(stolen);
  });

  it('with a worker filling free slots from its queue, a prompt moves only once the worker finds the queue empty', async () => {
    const a = await comfy();
    const b = await comfy();
    b.renderMs = 150;
    const r = fleet([a.url, b.url]);
    let told = 0;
    r.onCapacity(() => told++);
    await Promise.all([r.render(request(), context()), r.render(request(), context())]);
    a.hold(true);
    const renders = Array.from({ length: 4 }, () => r.render(request(), context()));
    // b frees up twice over: the worker is told, and a's waiting prompt stays where it is (it starts there next).
    await until(() => b.finished.length >= 3 && told > 0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(a.deletes).toEqual([]);
    // The worker found no job for the free slot: now the waiting prompt moves.
    r.rebalance();
    await until(() => a.deletes.length > 0);
    a.hold(false);
    await Promise.all(renders);
  });

  it('a job goes only to a backend that has its nodes; none: a clear failure, nothing sent', async () => {
    const stills = await comfy({ withoutNodes: ['SaveAnimatedWEBP'] });
    const full = await comfy();
    const r = fleet([stills.url, full.url]);
    const videos = await Promise.all(Array.from({ length: 3 }, () => r.render(request({ type: 'video', frames: 3 }), context())));
    expect(videos.every((o) => o[0]!.contentType === 'image/webp')).toBe(true);
    expect(stills.promptCount).toBe(0);
    expect(full.promptCount).toBe(3);

    const onlyStills = fleet([stills.url]);
    const err = await onlyStills.render(request({ type: 'video', frames: 3 }), context()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RendererError);
    expect((err as RendererError).message).toBe(NO_BACKEND_CAN);
    expect((err as RendererError).retryable).toBe(false);
    expect(stills.promptCount).toBe(0);
    // Images still render there.
    expect((await onlyStills.render(request(), context()))[0]!.contentType).toBe('image/png');
  });

  it('a backend that dies mid-render fails that render as retryable and takes no new prompt', async () => {
    const a = await comfy();
    const b = await comfy();
    a.renderMs = 3_000;
    b.renderMs = 3_000;
    const r = fleet([a.url, b.url]);
    const first = r.render(request(), context());
    const second = r.render(request(), context());
    await until(() => a.running() !== undefined && b.running() !== undefined);
    await a.close();
    const err = await Promise.race([first, second].map((p) => p.then(() => undefined, (e: unknown) => e)));
    expect(err).toBeInstanceOf(RendererError);
    expect((err as RendererError).retryable).toBe(true);
    expect(r.freeSlots()).toBe(1); // b: one running, one free; a: down
    b.renderMs = 0;
    const again = await r.render(request(), context());
    expect(again[0]!.contentType).toBe('image/png');
    expect(a.promptCount).toBe(1);
  });

  it('relays the live preview frames of its own prompt', async () => {
    const a = await comfy();
    const r = fleet([a.url]);
    const frames: PreviewFrame[] = [];
    await r.render(request({ steps: 3 }), context((frame) => frames.push(frame)));
    expect(frames.length).toBe(3);
    expect(frames[0]!.contentType).toBe('image/jpeg');
    expect(frames[0]!.data.subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff]));
  });
});
