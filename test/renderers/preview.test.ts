import { describe, it, expect } from 'vitest';
import sharp from 'sharp';
import { PreviewRenderer } from '../../src/renderers/preview.js';
import { RendererError, type RenderContext, type RenderRequest } from '../../src/renderers/renderer.js';

/** The preview renderer keeps its outputs in memory: it never asks for a scratch directory. */
const scratchDir = () => Promise.reject(new Error('the preview renderer asked for a scratch directory'));

function request(overrides: Partial<RenderRequest> = {}): RenderRequest {
  return {
    jobId: 'job-1',
    type: 'image',
    prompt: 'a girl on a hill under a summer sky',
    negativePrompt: '',
    width: 256,
    height: 192,
    seed: 42,
    steps: 8,
    frames: 1,
    fps: 12,
    ...overrides,
  };
}

function context(signal = new AbortController().signal): RenderContext & { progress: number[] } {
  const progress: number[] = [];
  return { signal, scratchDir, progress, onProgress: (p) => progress.push(p) };
}

async function renderOne(renderer: PreviewRenderer, req: RenderRequest) {
  const outputs = await renderer.render(req, context());
  expect(outputs).toHaveLength(1);
  return outputs[0]!;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

const fast = new PreviewRenderer({ stepDelayMs: 0 });

describe('PreviewRenderer images', () => {
  it('renders a PNG of exactly the requested size', async () => {
    for (const [width, height] of [
      [512, 512],
      [333, 197],
      [1, 1],
      [64, 640],
    ] as const) {
      const out = await renderOne(fast, request({ width, height }));
      expect(out.contentType).toBe('image/png');
      expect(out.extension).toBe('png');
      const meta = await sharp(out.data).metadata();
      expect(meta).toMatchObject({ format: 'png', width, height });
    }
  });

  it('handles the largest size, 2048×2048', async () => {
    const out = await renderOne(fast, request({ width: 2048, height: 2048, steps: 4 }));
    const meta = await sharp(out.data).metadata();
    expect(meta).toMatchObject({ format: 'png', width: 2048, height: 2048 });
  });

  it('draws a picture, not a flat fill', async () => {
    const out = await renderOne(fast, request({ width: 512, height: 512 }));
    const stats = await sharp(out.data).stats();
    expect(stats.isOpaque).toBe(true);
    for (const channel of stats.channels) {
      expect(channel.stdev).toBeGreaterThan(10);
      expect(channel.max - channel.min).toBeGreaterThan(100);
    }
  });

  it('carries a visible PREVIEW banner: white lettering in a strip near the bottom', async () => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const width = 400;
      const height = 300;
      const out = await renderOne(fast, request({ width, height, seed }));
      const { data, info } = await sharp(out.data).raw().toBuffer({ resolveWithObject: true });
      const countWhite = (fromRow: number, toRow: number): number => {
        let count = 0;
        for (let y = fromRow; y < toRow; y++) {
          for (let x = 0; x < width; x++) {
            const i = (y * width + x) * info.channels;
            if (data[i] === 255 && data[i + 1] === 255 && data[i + 2] === 255) count++;
          }
        }
        return count;
      };
      // nothing else pure white is ever drawn this low (sparkles and clouds stay in the sky)
      const band = countWhite(Math.floor(height * 0.72), Math.ceil(height * 0.88));
      expect(band).toBeGreaterThan(width * 2);
      expect(countWhite(Math.ceil(height * 0.9), height)).toBe(0);
    }
  });

  it('is deterministic: same request, same bytes; another seed or prompt, other bytes', async () => {
    const a = await renderOne(fast, request());
    const b = await renderOne(new PreviewRenderer({ stepDelayMs: 1 }), request());
    expect(a.data.equals(b.data)).toBe(true);
    const otherSeed = await renderOne(fast, request({ seed: 43 }));
    expect(otherSeed.data.equals(a.data)).toBe(false);
    const otherPrompt = await renderOne(fast, request({ prompt: 'a cat on a roof at night' }));
    expect(otherPrompt.data.equals(a.data)).toBe(false);
  });

  it('does not depend on how many progress steps were taken', async () => {
    const few = await renderOne(fast, request({ steps: 1 }));
    const many = await renderOne(fast, request({ steps: 37 }));
    expect(few.data.equals(many.data)).toBe(true);
  });

  it('reports progress from 0 to 100, never going backwards, about once per step', async () => {
    const ctx = context();
    await fast.render(request({ steps: 20 }), ctx);
    expect(ctx.progress[0]).toBe(0);
    expect(ctx.progress.at(-1)).toBe(100);
    expect(ctx.progress.length).toBeGreaterThanOrEqual(20);
    for (let i = 1; i < ctx.progress.length; i++) {
      expect(ctx.progress[i]!).toBeGreaterThanOrEqual(ctx.progress[i - 1]!);
    }
    for (const p of ctx.progress) {
      expect(Number.isInteger(p) && p >= 0 && p <= 100).toBe(true);
    }
  });

  it('takes about steps × stepDelayMs', async () => {
    const started = performance.now();
    await new PreviewRenderer({ stepDelayMs: 20 }).render(request({ steps: 10 }), context());
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
  });
});

describe('PreviewRenderer videos', () => {
  const video = (overrides: Partial<RenderRequest> = {}) =>
    request({ type: 'video', width: 160, height: 96, frames: 12, fps: 24, ...overrides });

  it('renders an animated WebP with the requested size, frame count and frame delay', async () => {
    const out = await renderOne(fast, video());
    expect(out.contentType).toBe('image/webp');
    expect(out.extension).toBe('webp');
    const meta = await sharp(out.data, { animated: true }).metadata();
    expect(meta.format).toBe('webp');
    expect(meta.width).toBe(160);
    expect(meta.pages).toBe(12);
    // for an animated image, height is the whole strip of pages
    expect(meta.pageHeight ?? meta.height! / 12).toBe(96);
    expect(meta.delay).toEqual(new Array(12).fill(42)); // round(1000 / 24)
    expect(meta.loop).toBe(0);
  });

  it('uses round(1000 / fps) as the frame delay', async () => {
    const out = await renderOne(fast, video({ frames: 3, fps: 7 }));
    const meta = await sharp(out.data).metadata();
    expect(meta.delay).toEqual([143, 143, 143]);
  });

  it('moves something from frame to frame', async () => {
    const out = await renderOne(fast, video());
    const frame = (page: number) => sharp(out.data, { page }).raw().toBuffer();
    const first = await frame(0);
    const later = await frame(3);
    expect(first.length).toBe(160 * 96 * 4);
    let changed = 0;
    for (let i = 0; i < first.length; i++) if (Math.abs(first[i]! - later[i]!) > 24) changed++;
    expect(changed).toBeGreaterThan(200);
  });

  it('is deterministic', async () => {
    const a = await renderOne(fast, video({ seed: 7 }));
    const b = await renderOne(fast, video({ seed: 7 }));
    const c = await renderOne(fast, video({ seed: 8 }));
    expect(a.data.equals(b.data)).toBe(true);
    expect(c.data.equals(a.data)).toBe(false);
  });

  it('reports progress once per frame, ending at 100', async () => {
    const ctx = context();
    await fast.render(video({ frames: 16 }), ctx);
    expect(ctx.progress[0]).toBe(0);
    expect(ctx.progress.at(-1)).toBe(100);
    expect(ctx.progress.length).toBeGreaterThanOrEqual(17);
    expect([...ctx.progress].sort((x, y) => x - y)).toEqual(ctx.progress);
  });

  it('refuses a video above the 64 Mpixel limit instead of shrinking it', async () => {
    const error = await rejection(fast.render(video({ width: 1024, height: 1024, frames: 65 }), context()));
    expect(error).toBeInstanceOf(RendererError);
    expect((error as RendererError).retryable).toBe(false);
    expect((error as RendererError).message).toBe('video too large for the preview renderer');
  });
});

describe('PreviewRenderer cancellation', () => {
  it('rejects with the reason when aborted before it starts, and draws nothing', async () => {
    const controller = new AbortController();
    const reason = new Error('canceled by owner');
    controller.abort(reason);
    const ctx = context(controller.signal);
    await expect(fast.render(request(), ctx)).rejects.toBe(reason);
    expect(ctx.progress).toEqual([]);
  });

  it('rejects with an AbortError when aborted without a reason', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await rejection(fast.render(request(), context(controller.signal)));
    expect((error as Error).name).toBe('AbortError');
  });

  it.each(['image', 'video'] as const)('stops promptly when a %s is aborted mid-way', async (type) => {
    const slow = new PreviewRenderer({ stepDelayMs: 50 });
    const controller = new AbortController();
    const reason = new Error('job timed out');
    const ctx = context(controller.signal);
    const req =
      type === 'image'
        ? request({ steps: 40 })
        : request({ type, width: 96, height: 64, frames: 40, fps: 12 });
    const rendering = slow.render(req, ctx);
    await new Promise((resolve) => setTimeout(resolve, 180));
    expect(ctx.progress.length).toBeGreaterThan(1);
    controller.abort(reason);
    await expect(rendering).rejects.toBe(reason);
    const seen = ctx.progress.length;
    expect(ctx.progress).not.toContain(100);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(ctx.progress.length).toBe(seen);
  });

  it('rejects at once, with no output, when aborted while encoding', async () => {
    const controller = new AbortController();
    const reason = new Error('canceled');
    let abortedAt = 0;
    const ctx: RenderContext = {
      signal: controller.signal,
      scratchDir,
      // 95 is the last drawing tick; encoding 8 frames of 512×512 then takes well over 50 ms
      onProgress: (p) => {
        if (p !== 95) return;
        setTimeout(() => {
          abortedAt = performance.now();
          controller.abort(reason);
        }, 5);
      },
    };
    const req = request({ type: 'video', width: 512, height: 512, frames: 8, fps: 8 });
    const rendering = fast.render(req, ctx);
    await expect(rendering).rejects.toBe(reason);
    expect(abortedAt).toBeGreaterThan(0);
  });
});

describe('PreviewRenderer request checks', () => {
  it.each<[string, Partial<RenderRequest>, RegExp]>([
    ['zero width', { width: 0 }, /width/],
    ['negative height', { height: -5 }, /height/],
    ['fractional width', { width: 100.5 }, /width/],
    ['too wide', { width: 4096 }, /width must be a whole number from 1 to 2048/],
    ['NaN height', { height: Number.NaN }, /height/],
    ['zero steps', { steps: 0 }, /steps/],
    ['unknown type', { type: 'audio' as RenderRequest['type'] }, /type/],
    ['video without frames', { type: 'video', frames: 0 }, /frames/],
    ['video at 0 fps', { type: 'video', frames: 4, fps: 0 }, /fps/],
    ['non-numeric seed', { seed: Number.POSITIVE_INFINITY }, /seed/],
  ])('refuses %s with a non-retryable RendererError', async (_name, overrides, message) => {
    const ctx = context();
    const error = await rejection(fast.render(request(overrides), ctx));
    expect(error).toBeInstanceOf(RendererError);
    expect((error as RendererError).retryable).toBe(false);
    expect((error as RendererError).message).toMatch(message);
    expect(ctx.progress).toEqual([]);
  });

  it('ignores frames and fps for images', async () => {
    const out = await renderOne(fast, request({ frames: 0, fps: 0 }));
    expect((await sharp(out.data).metadata()).format).toBe('png');
  });

  it('rejects a negative stepDelayMs at construction', () => {
    expect(() => new PreviewRenderer({ stepDelayMs: -1 })).toThrow(RangeError);
  });
});

describe('PreviewRenderer health', () => {
  it('is always healthy and named preview', async () => {
    const renderer = new PreviewRenderer();
    expect(renderer.name).toBe('preview');
    await expect(renderer.health()).resolves.toEqual({ name: 'preview', ok: true });
  });
});
