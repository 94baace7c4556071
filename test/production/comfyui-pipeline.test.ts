import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it, onTestFinished } from 'vitest';
import { startComfyUIDouble, type ComfyUIDouble } from '../doubles/comfyui.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { FFMPEG, taggedMp4 } from '../support/media.js';
import { expectNoPath, generate, ROOMY_LIMITS, waitFor, type Json } from './helpers.js';

let comfyui: ComfyUIDouble;
beforeAll(async () => {
  comfyui = await startComfyUIDouble({ stepDelayMs: 2 });
});
afterAll(async () => comfyui.close());

/** The whole pipeline against a ComfyUI double speaking ComfyUI's documented protocol. */
describeEachDialect('jobs rendered by ComfyUI', (dialect) => {
  const t = useTestApp(dialect, {
    renderer: 'comfyui',
    get comfyuiUrls() {
      return [comfyui.url];
    },
    // Room for the MP4 encoding of the video job on a busy machine; the hung job still fails at this limit.
    jobTimeoutSeconds: 8,
    limits: ROOMY_LIMITS,
  });

  it('an image job becomes a PNG asset and a video job an MP4 and its animated WebP, with the prompt in the workflow', async () => {
    comfyui.mode = 'normal';
    const user = await signIn(t.app);
    const prompt = "a cel-shaded fox; ' UNION SELECT 1 -- 桜";
    const image = (await generate(t.app, user.authorization, { prompt, type: 'image', width: 128, height: 96, seed: 11 })).json() as Json;
    const doneImage = await waitFor(t.app, user.authorization, image.job_id, ['succeeded', 'failed']);
    expect(doneImage).toMatchObject({ status: 'succeeded', progress: 100 });
    expect(JSON.stringify(comfyui.lastWorkflow)).toContain(JSON.stringify(prompt).slice(1, -1));
    const png = await t.app.inject({ url: doneImage.assets[0].url });
    expect(png.headers['content-type']).toBe('image/png');
    expect(png.rawPayload.subarray(1, 4).toString()).toBe('PNG');

    const video = (await generate(t.app, user.authorization, { prompt: 'waves', type: 'video', width: 64, height: 64, frames: 4, fps: 8 })).json() as Json;
    const doneVideo = await waitFor(t.app, user.authorization, video.job_id, ['succeeded', 'failed']);
    expect(doneVideo.status).toBe('succeeded');
    expect(doneVideo.assets.map((a: Json) => a.content_type)).toEqual(['video/mp4', 'image/webp']);
    const workflow = JSON.stringify(comfyui.lastWorkflow);
    expect(workflow).toContain('SaveAnimatedWEBP');
    expectNoPath(JSON.stringify(doneVideo));
    expect(JSON.stringify(doneVideo)).not.toContain(comfyui.url);
  });

  it.runIf(FFMPEG)('a video ComfyUI saves as an MP4 is downloaded to a scratch file, stored without its tags, and the scratch directory is gone after', async () => {
    // this file's process alone: the worker makes its scratch directories in here
    const scratchRoot = mkdtempSync(path.join(tmpdir(), 'celforge-tmpdir-'));
    const previous = process.env.TMPDIR;
    process.env.TMPDIR = scratchRoot;
    comfyui.videoFile = taggedMp4();
    onTestFinished(() => {
      if (previous === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = previous;
      comfyui.videoFile = undefined;
      rmSync(scratchRoot, { recursive: true, force: true });
    });
    const user = await signIn(t.app);
    const video = (await generate(t.app, user.authorization, { prompt: 'waves', type: 'video', width: 64, height: 64, frames: 4, fps: 8 })).json() as Json;
    const done = await waitFor(t.app, user.authorization, video.job_id, ['succeeded', 'failed']);
    expect(done.assets.map((a: Json) => a.content_type)).toEqual(['video/mp4']);
    const stored = (await t.app.inject({ url: done.assets[0].url })).rawPayload;
    expect(stored.length).toBe(done.assets[0].byte_size);
    expect(stored.subarray(4, 8).toString('latin1')).toBe('ftyp');
    expect(comfyui.videoFile.toString('latin1')).toContain('secret-model');
    expect(stored.toString('latin1')).not.toMatch(/secret-model|private prompt|artist@home/);
    // removed as the run ends, just after its success is recorded
    await expect.poll(() => readdirSync(scratchRoot).filter((name) => name.startsWith('celforge-'))).toEqual([]);
  });

  it('a hung ComfyUI fails the job after its time limit with a message for people, and never blocks the API', async () => {
    comfyui.mode = 'hang';
    try {
      const user = await signIn(t.app);
      const job = (await generate(t.app, user.authorization, { prompt: 'stuck', type: 'image', width: 64, height: 64 })).json() as Json;
      await waitFor(t.app, user.authorization, job.job_id, ['running']);
      const health = await t.app.inject('/api/anime/health');
      expect(health.statusCode).toBe(200);
      const done = await waitFor(t.app, user.authorization, job.job_id, ['failed', 'succeeded'], 60_000);
      expect(done.status).toBe('failed');
      expect(typeof done.error).toBe('string');
      expect(done.error).not.toContain('127.0.0.1');
      expectNoPath(done.error);
      expect(comfyui.interrupts.length).toBeGreaterThan(0);
    } finally {
      comfyui.mode = 'normal';
    }
  });
});

describeEachDialect('ComfyUI results over the size limit', (dialect) => {
  const MAX = 256 * 1024;
  const t = useTestApp(dialect, {
    renderer: 'comfyui',
    get comfyuiUrls() {
      return [comfyui.url];
    },
    comfyuiMaxOutputBytes: MAX,
    jobTimeoutSeconds: 10,
    limits: ROOMY_LIMITS,
  });

  async function render(transfer: 'content-length' | 'chunked', padding: number) {
    comfyui.mode = 'normal';
    comfyui.viewTransfer = transfer;
    comfyui.viewPaddingBytes = padding;
    try {
      const user = await signIn(t.app);
      const job = (await generate(t.app, user.authorization, { prompt: 'a very large fox', type: 'image', width: 64, height: 64 })).json() as Json;
      const done = await waitFor(t.app, user.authorization, job.job_id, ['succeeded', 'failed']);
      const rows = await t.app.services.store.db.selectFrom('assets').select('id').where('job_id', '=', job.job_id).execute();
      const files = readdirSync(path.join(t.config.dataDir, 'assets')).filter((name) => name.startsWith(job.job_id));
      return { done, rows, files };
    } finally {
      comfyui.viewTransfer = 'content-length';
      comfyui.viewPaddingBytes = 0;
    }
  }

  it.each(['content-length', 'chunked'] as const)('a larger file (sent with %s) fails its job unread: no asset row, no file', async (transfer) => {
    const cutShort = comfyui.viewsCutShort;
    const { done, rows, files } = await render(transfer, 64 * 1024 * 1024);
    expect(done.status).toBe('failed');
    expect(done.error).toBe('renderer output is larger than allowed');
    expect(done.assets ?? []).toEqual([]);
    expect(rows).toEqual([]);
    expect(files).toEqual([]);
    // the download stopped instead of reading the rest
    await expect.poll(() => comfyui.viewsCutShort).toBe(cutShort + 1);
  });

  it('a file just within the limit, sent without a Content-Length, is read whole', async () => {
    const cutShort = comfyui.viewsCutShort;
    const { done, rows, files } = await render('chunked', MAX - 4096);
    expect(done.status).toBe('succeeded');
    expect(rows).toHaveLength(1);
    expect(files).toHaveLength(1);
    expect(comfyui.viewsCutShort).toBe(cutShort);
    // stored as the PNG itself: what followed its IEND chunk (here the padding) is not kept
    expect(done.assets[0].byte_size).toBeLessThan(4096);
  });
});
