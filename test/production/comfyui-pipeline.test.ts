import { afterAll, beforeAll, expect, it } from 'vitest';
import { startComfyUIDouble, type ComfyUIDouble } from '../doubles/comfyui.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
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
    jobTimeoutSeconds: 2,
    limits: ROOMY_LIMITS,
  });

  it('an image job becomes a PNG asset and a video job an animated WebP, with the prompt in the workflow', async () => {
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
    expect(doneVideo.assets[0].content_type).toBe('image/webp');
    const workflow = JSON.stringify(comfyui.lastWorkflow);
    expect(workflow).toContain('SaveAnimatedWEBP');
    expectNoPath(JSON.stringify(doneVideo));
    expect(JSON.stringify(doneVideo)).not.toContain(comfyui.url);
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
