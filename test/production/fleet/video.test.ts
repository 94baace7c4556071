import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { toVideoAssets, VideoError } from '../../../src/production/video.js';
import { PreviewRenderer } from '../../../src/renderers/preview.js';
import type { RenderOutput, RenderRequest, ResultData } from '../../../src/renderers/renderer.js';
import { signIn, useTestApp } from '../../support/app.js';
import { describeEachDialect } from '../../support/dialects.js';
import { generate, ROOMY_LIMITS, waitFor, type Json } from '../helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'celforge-video-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Probe {
  streams: { codec_name: string; pix_fmt: string; width: number; height: number; nb_frames?: string; nb_read_frames?: string; tags?: Record<string, string> }[];
  format: { format_name: string; tags?: Record<string, string> };
}

/** The bytes of an output (a converted MP4 is a file). */
function bytesOf(data: ResultData): Buffer {
  return Buffer.isBuffer(data) ? data : readFileSync(data.path);
}

/** ffprobe's view of an MP4, counting its frames by decoding them. */
function probe(data: ResultData): Probe {
  let file: string;
  if (Buffer.isBuffer(data)) {
    file = path.join(dir, `${Math.random().toString(36).slice(2)}.mp4`);
    writeFileSync(file, data);
  } else {
    file = data.path;
  }
  const out = execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-show_streams', '-show_format', '-of', 'json', file], { encoding: 'utf8' });
  return JSON.parse(out) as Probe;
}

/** The top-level MP4 boxes in order: faststart puts `moov` before `mdat`. */
function boxes(data: Buffer): string[] {
  const names: string[] = [];
  for (let at = 0; at + 8 <= data.length; ) {
    let size = data.readUInt32BE(at);
    const name = data.subarray(at + 4, at + 8).toString('latin1');
    if (size === 1) size = Number(data.readBigUInt64BE(at + 8));
    names.push(name);
    if (size < 8) break;
    at += size;
  }
  return names;
}

function videoRequest(overrides: Partial<RenderRequest> = {}): RenderRequest {
  return { jobId: 'v', type: 'video', prompt: 'waves', negativePrompt: '', width: 64, height: 48, seed: 3, steps: 2, frames: 5, fps: 10, ...overrides };
}

async function previewVideo(overrides: Partial<RenderRequest> = {}): Promise<RenderOutput[]> {
  return new PreviewRenderer({ stepDelayMs: 0 }).render(videoRequest(overrides), { signal: new AbortController().signal, scratchDir: async () => dir, onProgress: () => {} });
}

describe('video files', () => {
  it('an animated WebP becomes an H.264 yuv420p MP4 with moov first and every frame, and the WebP kept', async () => {
    const webp = await previewVideo();
    const outputs = await toVideoAssets(webp, 10, dir);
    expect(outputs.map((o) => o.contentType)).toEqual(['video/mp4', 'image/webp']);
    const info = probe(outputs[0]!.data);
    expect(info.streams).toHaveLength(1);
    expect(info.streams[0]).toMatchObject({ codec_name: 'h264', pix_fmt: 'yuv420p', width: 64, height: 48, nb_read_frames: '5' });
    expect(info.format.format_name).toContain('mp4');
    expect(path.dirname((outputs[0]!.data as { path: string }).path)).toBe(dir);
    const order = boxes(bytesOf(outputs[0]!.data));
    expect(order.indexOf('moov')).toBeGreaterThan(-1);
    expect(order.indexOf('moov')).toBeLessThan(order.indexOf('mdat'));
    expect(outputs[1]).toBe(webp[0]);
  });

  it('the MP4 says nothing about its making: no tags, no encoder version, no x264 settings', async () => {
    const [mp4] = await toVideoAssets(await previewVideo(), 10, dir);
    const info = probe(mp4!.data);
    expect(Object.keys(info.format.tags ?? {}).sort()).toEqual(['compatible_brands', 'major_brand', 'minor_version']);
    // the codec's name stays in the sample description (MP4 players read it), without a version
    expect(info.streams[0]!.tags?.encoder).toBe('Lavc libx264');
    const text = bytesOf(mp4!.data).toString('latin1');
    expect(text).not.toMatch(/Lavf|Lavc\d|x264 - core|options:|waves/);
  });

  it('a batch of stills (as ComfyUI saves them) becomes one frame each; odd sides are padded even', async () => {
    const stills = await Promise.all(
      [0, 1, 2].map(async (i) => ({
        data: await sharp({ create: { width: 33, height: 21, channels: 3, background: { r: i * 80, g: 10, b: 200 } } }).png().toBuffer(),
        contentType: 'image/png',
        extension: 'png',
      })),
    );
    const outputs = await toVideoAssets(stills, 8, dir);
    expect(probe(outputs[0]!.data).streams[0]).toMatchObject({ codec_name: 'h264', pix_fmt: 'yuv420p', width: 34, height: 22, nb_read_frames: '3' });
    expect(outputs.slice(1)).toEqual(stills);
  });

  it('ffmpeg is bounded: a missing binary, the time limit and the size limit each fail plainly', async () => {
    const webp = await previewVideo();
    await expect(toVideoAssets(webp, 10, dir, { ffmpeg: path.join(dir, 'no-ffmpeg-here') })).rejects.toMatchObject({ name: 'VideoError', missing: true });
    await expect(toVideoAssets(webp, 10, dir, { timeoutMs: 1 })).rejects.toThrow(VideoError);
    await expect(toVideoAssets(webp, 10, dir, { maxBytes: 200 })).rejects.toThrow(VideoError);
    const aborted = new AbortController();
    aborted.abort(new Error('canceled'));
    await expect(toVideoAssets(webp, 10, dir, {}, aborted.signal)).rejects.toThrow('canceled');
  });

  it('a still that cannot be decoded, fed to ffmpeg one frame after another, fails the conversion', async () => {
    const good = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#102030' } }).png().toBuffer();
    const stills = [good, Buffer.from('not a picture'), good].map((data) => ({ data, contentType: 'image/png', extension: 'png' }));
    await expect(toVideoAssets(stills, 8, dir)).rejects.toThrow(/unsupported image format|Input buffer/);
  });

  it('what is not frames is left as it is', async () => {
    const mp4 = [{ data: Buffer.from('not really'), contentType: 'video/mp4', extension: 'mp4' }];
    expect(await toVideoAssets(mp4, 8, dir)).toBe(mp4);
  });
});

describeEachDialect('video jobs', (dialect) => {
  const t = useTestApp(dialect, { limits: ROOMY_LIMITS, previewStepMs: 0 });

  it('a video job yields a playable MP4 first, which seeks by Range, with one poster: its derivative', async () => {
    const user = await signIn(t.app);
    const job = (await generate(t.app, user.authorization, { prompt: 'a paper boat', type: 'video', width: 96, height: 64, frames: 6, fps: 12 })).json() as Json;
    const done = await waitFor(t.app, user.authorization, job.job_id, ['succeeded', 'failed']);
    expect(done.assets.map((a: Json) => a.content_type)).toEqual(['video/mp4', 'image/webp']);
    const whole = await t.app.inject({ url: done.assets[0].url });
    expect(whole.headers['content-type']).toBe('video/mp4');
    expect(probe(whole.rawPayload).streams[0]).toMatchObject({ codec_name: 'h264', pix_fmt: 'yuv420p', nb_read_frames: '6' });
    const part = await t.app.inject({ url: done.assets[0].url, headers: { range: 'bytes=8-15' } });
    expect(part.statusCode).toBe(206);
    expect(part.rawPayload.equals(whole.rawPayload.subarray(8, 16))).toBe(true);
    // the poster is the MP4's first frame, as every result's thumbnail is made; no second poster is stored
    const poster = await t.app.inject({ url: done.assets[0].thumbnail_url });
    expect(poster.headers['content-type']).toBe('image/webp');
    expect(await sharp(poster.rawPayload).metadata()).toMatchObject({ format: 'webp', width: 96, height: 64 });
    const rows = await t.app.services.store.db.selectFrom('assets').select('content_type').where('job_id', '=', job.job_id).orderBy('position').execute();
    expect(rows.map((row) => row.content_type)).toEqual(['video/mp4', 'image/webp']);
  });
});
