import { randomBytes, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { ClientRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it, onTestFinished } from 'vitest';
import { insertJob } from '../../src/production/store.js';
import type { RenderOutput, RenderRequest, Renderer } from '../../src/renderers/renderer.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { FFMPEG, PROMPT, redMp4, taggedMp4, WORKFLOW } from '../support/media.js';
import { ASSET_BACKENDS, assetSettingsFor, startTestS3 } from '../support/s3.js';
import { expectProblem, generate, ROOMY_LIMITS, waitFor, type Json } from '../production/helpers.js';

const s3 = await startTestS3();

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** A PNG as ComfyUI's SaveImage writes it: tEXt chunks `prompt` and `workflow` before the pixels. */
async function comfyPng(): Promise<Buffer> {
  const png = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#3060a0' } }).png().toBuffer();
  const text = (key: string, value: string) => pngChunk('tEXt', Buffer.from(`${key}\0${value}`, 'latin1'));
  return Buffer.concat([png.subarray(0, 33), text('prompt', PROMPT), text('workflow', WORKFLOW), png.subarray(33)]);
}

/** An animated WebP as SaveAnimatedWEBP writes it: the workflow in EXIF. */
async function comfyWebp(): Promise<Buffer> {
  const frames = await Promise.all(['#ff0000', '#00ff00'].map((color) => sharp({ create: { width: 200, height: 100, channels: 3, background: color } }).png().toBuffer()));
  return sharp(frames, { join: { animated: true } })
    .webp({ quality: 90, delay: [100, 100] })
    .withExif({ IFD0: { Make: `workflow:${WORKFLOW}`, Model: `prompt:${PROMPT}` } })
    .toBuffer();
}

/** GIF extension sub-blocks: `data` cut in pieces of at most 255 bytes, then the terminator. */
function subBlocks(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += 255) {
    const piece = data.subarray(at, at + 255);
    parts.push(Buffer.from([piece.length]), piece);
  }
  return Buffer.concat([...parts, Buffer.from([0])]);
}

/** A looping two-frame GIF. */
async function plainGif(): Promise<Buffer> {
  const frames = await Promise.all(['#ff0000', '#0000ff'].map((color) => sharp({ create: { width: 40, height: 30, channels: 3, background: color } }).png().toBuffer()));
  return sharp(frames, { join: { animated: true } }).gif({ delay: [100, 100], loop: 0 }).toBuffer();
}

/** The same GIF carrying a comment and an XMP application extension with the workflow. */
async function taggedGif(): Promise<Buffer> {
  const gif = await plainGif();
  const packed = gif[10]!;
  const afterPalette = 13 + (packed & 0x80 ? 3 * 2 ** ((packed & 0x07) + 1) : 0);
  const comment = Buffer.concat([Buffer.from([0x21, 0xfe]), subBlocks(Buffer.from(`workflow:${WORKFLOW}`, 'latin1'))]);
  const xmp = Buffer.concat([Buffer.from([0x21, 0xff, 11]), Buffer.from('XMP DataXMP', 'latin1'), subBlocks(Buffer.from(`<x:xmpmeta>${PROMPT}</x:xmpmeta>`, 'latin1'))]);
  return Buffer.concat([gif.subarray(0, afterPalette), comment, xmp, gif.subarray(afterPalette)]);
}

class ComfyLikeRenderer implements Renderer {
  readonly name = 'comfy-like';
  async render(request: RenderRequest): Promise<RenderOutput[]> {
    if (request.prompt === 'broken mp4') return [{ data: randomBytes(4096), contentType: 'video/mp4', extension: 'mp4' }];
    if (request.prompt === 'tagged mp4') return [{ data: taggedMp4(), contentType: 'video/mp4', extension: 'mp4' }];
    if (request.prompt === 'tagged gif') return [{ data: await taggedGif(), contentType: 'image/gif', extension: 'gif' }];
    if (request.prompt === 'mp4') return [{ data: redMp4(), contentType: 'video/mp4', extension: 'mp4' }];
    if (request.type === 'video') return [{ data: await comfyWebp(), contentType: 'image/webp', extension: 'webp' }];
    return [{ data: await comfyPng(), contentType: 'image/png', extension: 'png' }];
  }
  async health() {
    return { name: this.name, ok: true };
  }
}

for (const backend of ASSET_BACKENDS) {
  describeEachDialect(`stored results: metadata, thumbnails, posters [${backend}]`, (dialect) => {
    const t = useTestApp(dialect, { limits: ROOMY_LIMITS, assets: assetSettingsFor(backend, s3) }, { renderer: new ComfyLikeRenderer() });

    async function finished(type: 'image' | 'video', prompt = 'a lantern') {
      const user = await signIn(t.app);
      const job = (await generate(t.app, user.authorization, { prompt, type, width: 64, height: 64 })).json() as Json;
      return { user, job: await waitFor(t.app, user.authorization, job.job_id, ['succeeded']) };
    }

    async function objectKeys(): Promise<string[]> {
      const settings = t.config.assets.s3;
      if (settings) return s3.keys(settings);
      const { readdirSync } = await import('node:fs');
      return ['assets', 'thumbnails'].flatMap((folder) => readdirSync(path.join(t.config.dataDir, folder)).map((name) => `${folder}/${name}`)).sort();
    }

    it('an image is stored without ComfyUI prompt and workflow chunks, pixels unchanged, beside a 384 px WebP thumbnail', async () => {
      const { job } = await finished('image');
      const asset = job.assets[0] as Json;
      const stored = (await t.app.inject({ url: asset.url })).rawPayload;
      expect(stored.length).toBe(asset.byte_size);
      expect(stored.toString('latin1')).not.toMatch(/tEXt|workflow|KSampler|secret-model|private prompt/);
      const original = await comfyPng();
      expect(original.toString('latin1')).toMatch(/workflow/);
      const [a, b] = await Promise.all([sharp(stored).raw().toBuffer(), sharp(original).raw().toBuffer()]);
      expect(a.equals(b)).toBe(true);

      expect(asset.thumbnail_url).toMatch(new RegExp(`^/api/anime/assets/${asset.id}/thumbnail\\?expires=\\d+&signature=[\\w-]+$`));
      const thumbnail = await t.app.inject({ url: asset.thumbnail_url });
      expect(thumbnail.statusCode).toBe(200);
      expect(thumbnail.headers['content-type']).toBe('image/webp');
      expect(thumbnail.headers['content-disposition']).toBe(`inline; filename="${asset.id}-thumbnail.webp"`);
      const meta = await sharp(thumbnail.rawPayload).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['webp', 384, 288]);

      const stem = `${job.job_id}-0`;
      expect(await objectKeys()).toEqual(expect.arrayContaining([`assets/${stem}.png`, `thumbnails/${stem}.webp`]));
    });

    it('an animated WebP video loses its EXIF, keeps its frames, and gets a poster from its first frame', async () => {
      const { job } = await finished('video');
      // the animation the renderer made (with ffmpeg installed, an MP4 and its poster come first)
      const asset = (job.assets as Json[]).find((a) => a.content_type === 'image/webp')!;
      const stored = (await t.app.inject({ url: asset.url })).rawPayload;
      expect(stored.toString('latin1')).not.toMatch(/EXIF|workflow|secret-model/);
      const meta = await sharp(stored, { animated: true }).metadata();
      expect([meta.pages, meta.width, meta.pageHeight, meta.exif]).toEqual([2, 200, 100, undefined]);
      const poster = (await t.app.inject({ url: asset.thumbnail_url })).rawPayload;
      const { data, info } = await sharp(poster).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([200, 100]);
      expect(data[0]).toBeGreaterThan(200); // red: the first frame
      expect(data[1]).toBeLessThan(50);
    });

    it.runIf(FFMPEG)('an MP4 gets a poster from its first frame (ffmpeg)', async () => {
      const { job } = await finished('video', 'mp4');
      const poster = await t.app.inject({ url: job.assets[0].thumbnail_url });
      const { data, info } = await sharp(poster.rawPayload).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([160, 120]);
      expect(data[0]).toBeGreaterThan(200);
      expect(data[1]).toBeLessThan(60);
    });

    it('a GIF is delivered without comments or application extensions other than looping; frames untouched', async () => {
      const { job } = await finished('image', 'tagged gif');
      const asset = job.assets[0] as Json;
      const original = await taggedGif();
      expect(original.toString('latin1')).toMatch(/XMP DataXMP|secret-model/);
      const stored = (await t.app.inject({ url: asset.url })).rawPayload;
      expect(stored.length).toBe(asset.byte_size);
      const text = stored.toString('latin1');
      expect(text).not.toMatch(/XMP|xmpmeta|workflow|KSampler|secret-model|private prompt/);
      expect(stored.includes(Buffer.from([0x21, 0xfe]))).toBe(false);
      expect(text).toContain('NETSCAPE2.0');
      // only the two added extensions went: the rest is the GIF byte for byte
      expect(stored.equals(await plainGif())).toBe(true);
      const [before, after] = await Promise.all([sharp(original, { animated: true }), sharp(stored, { animated: true })].map((image) => image.raw().toBuffer({ resolveWithObject: true })));
      expect(after!.info).toMatchObject({ width: 40, height: 60 });
      expect(after!.data.equals(before!.data)).toBe(true);
      const meta = await sharp(stored, { animated: true }).metadata();
      expect([meta.pages, meta.loop, meta.delay]).toEqual([2, 0, [100, 100]]);
    });

    it.runIf(FFMPEG)('an MP4 is delivered without its tags (comment, title, artist, encoder, handler names); the picture copied', async () => {
      const { job } = await finished('video', 'tagged mp4');
      const asset = job.assets[0] as Json;
      const stored = (await t.app.inject({ url: asset.url })).rawPayload;
      expect(stored.length).toBe(asset.byte_size);
      expect(stored.toString('latin1')).not.toMatch(/workflow|KSampler|secret-model|private prompt|artist@home|Lavf/);
      const file = path.join(mkdtempSync(path.join(tmpdir(), 'celforge-probe-')), 'stored.mp4');
      writeFileSync(file, stored);
      const info = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-show_streams', '-show_format', '-of', 'json', file], { encoding: 'utf8' }));
      expect(Object.keys(info.format.tags ?? {}).sort()).toEqual(['compatible_brands', 'major_brand', 'minor_version']);
      expect(info.streams).toHaveLength(1);
      expect(info.streams[0]).toMatchObject({ codec_name: 'h264', width: 160, height: 120, nb_read_frames: '25' });
      const order = [];
      for (let at = 0; at + 8 <= stored.length; at += stored.readUInt32BE(at)) order.push(stored.toString('latin1', at + 4, at + 8));
      expect(order.indexOf('moov')).toBeLessThan(order.indexOf('mdat'));
    });

    it.runIf(FFMPEG)('an MP4 handed to the store as a file is delivered without its tags, with a poster of its first frame; the file is left as it was', async () => {
      const user = await signIn(t.app);
      const jobId = randomUUID();
      const now = new Date().toISOString();
      await insertJob(t.app.services.store.db, {
        id: jobId, user_id: user.userId, type: 'video', status: 'succeeded', prompt: 'streamed', negative_prompt: '', params: '{}', progress: 100,
        error: null, idempotency_key: null, request_hash: null, attempts: 1, locked_by: null, locked_until: null, run_after: null, visibility: null,
        published_at: null, created_at: now, updated_at: now, started_at: now, finished_at: now,
      });
      const tagged = taggedMp4();
      const rendered = path.join(mkdtempSync(path.join(tmpdir(), 'celforge-rendered-')), 'output-0.mp4');
      writeFileSync(rendered, tagged);
      const file = await t.app.services.production.assets.write(jobId, 0, { contentType: 'video/mp4', data: { path: rendered } });
      // a save tried again reads it once more
      expect(readFileSync(rendered).equals(tagged)).toBe(true);
      const assetId = randomUUID();
      await t.app.services.store.db
        .insertInto('assets')
        .values({ id: assetId, job_id: jobId, user_id: user.userId, position: 0, content_type: file.contentType, byte_size: file.byteSize, storage_key: file.storageKey, created_at: now })
        .execute();

      const stored = (await t.app.inject({ url: `/api/anime/assets/${assetId}`, headers: user.authorization })).rawPayload;
      expect(stored.length).toBe(file.byteSize);
      expect(tagged.toString('latin1')).toMatch(/KSampler/);
      expect(stored.toString('latin1')).not.toMatch(/workflow|KSampler|secret-model|private prompt|artist@home|Lavf/);
      const probed = path.join(mkdtempSync(path.join(tmpdir(), 'celforge-probe-')), 'stored.mp4');
      writeFileSync(probed, stored);
      const info = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', probed], { encoding: 'utf8' }));
      expect(Object.keys(info.format.tags ?? {}).sort()).toEqual(['compatible_brands', 'major_brand', 'minor_version']);
      expect(info.streams[0]).toMatchObject({ codec_name: 'h264', width: 160, height: 120 });
      const poster = await t.app.inject({ url: `/api/anime/assets/${assetId}/thumbnail`, headers: user.authorization });
      const { data, info: size } = await sharp(poster.rawPayload).raw().toBuffer({ resolveWithObject: true });
      expect([size.width, size.height, data[0]! > 200, data[1]! < 60]).toEqual([160, 120, true, true]);
    });

    it('a result that would take the stored results past the storage quota fails its job, saying so, and is never uploaded', async () => {
      const { user, job: first } = await finished('image');
      const objects = t.app.services.production.assets.objects;
      const uploaded: string[] = [];
      const put = objects.put.bind(objects);
      objects.put = (key, body, contentType) => {
        uploaded.push(key);
        return put(key, body, contentType);
      };
      onTestFinished(() => {
        objects.put = put;
      });
      const used = first.assets[0].byte_size as number;
      const admin = await signIn(t.app, { role: 'admin' });
      // room for a few bytes more: the next job is taken, but its result does not fit
      const set = await t.app.inject({ method: 'PUT', url: `/api/anime/admin/users/${user.userId}/storage`, headers: admin.authorization, payload: { storage_bytes: used + 100 } });
      expect(set.statusCode).toBe(200);
      const submitted = await generate(t.app, user.authorization, { prompt: 'one too many', type: 'image', width: 64, height: 64 });
      expect(submitted.statusCode).toBe(202);
      const job = await waitFor(t.app, user.authorization, (submitted.json() as Json).job_id, ['failed']);
      expect(job.error).toMatch(new RegExp(`^The result takes \\d+ bytes; with the ${used} bytes of your stored results that passes your storage quota of ${used + 100} bytes, so it was not kept\\.`));
      expect(job.assets).toEqual([]);
      const rows = await t.app.services.store.db.selectFrom('assets').select('id').where('job_id', '=', job.job_id).execute();
      expect(rows).toEqual([]);
      expect((await objectKeys()).filter((key) => key.includes(job.job_id))).toEqual([]);
      expect(uploaded.filter((key) => key.includes(job.job_id))).toEqual([]);
      expect((await t.app.inject({ url: '/api/anime/storage', headers: user.authorization })).json()).toMatchObject({ used_bytes: used, limit_bytes: used + 100 });
    });

    it('a video no frame can be taken from still gets a poster (a plain one)', async () => {
      const { job } = await finished('video', 'broken mp4');
      const poster = await t.app.inject({ url: job.assets[0].thumbnail_url });
      expect(poster.statusCode).toBe(200);
      const meta = await sharp(poster.rawPayload).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['webp', 384, 216]);
    });

    it('a result whose object is gone from the store is a 404 problem, not a 500', async () => {
      const { user, job } = await finished('image');
      const storageKey = `${job.job_id}-0.png`;
      await t.app.services.production.assets.remove(storageKey);
      for (const url of [job.assets[0].url, job.assets[0].thumbnail_url]) {
        expectProblem(await t.app.inject({ url, headers: user.authorization }), 404, 'not-found');
        expectProblem(await t.app.inject({ url, headers: { ...user.authorization, range: 'bytes=0-9' } }), 404, 'not-found');
      }
    });

    it('a thumbnail is one GET of the whole object, a ranged original one GET of exactly its range: no HEAD before either', async () => {
      const { user, job } = await finished('image');
      const asset = job.assets[0] as Json;
      // every HTTP request this process sends to the object store, whichever client sends it
      const sent: string[] = [];
      const store = t.config.assets.s3 ? new URL(t.config.assets.s3.endpoint!).host : undefined;
      const record = (message: unknown) => {
        const request = (message as { request: ClientRequest }).request;
        if (request.getHeader('host') === store) sent.push(`${request.method} ${request.getHeader('range') ?? 'whole'}`);
      };
      diagnostics.subscribe('http.client.request.start', record);
      try {
        const whole = await t.app.inject({ url: asset.thumbnail_url });
        const ranged = await t.app.inject({ url: asset.thumbnail_url, headers: { range: 'bytes=0-9' } });
        expect([whole.statusCode, ranged.statusCode, ranged.headers['accept-ranges']]).toEqual([200, 200, 'none']);
        expect(ranged.rawPayload.equals(whole.rawPayload)).toBe(true);
        const original = await t.app.inject({ url: asset.url, headers: { ...user.authorization, range: 'bytes=10-19' } });
        expect([original.statusCode, original.rawPayload.length, original.headers['content-range']]).toEqual([206, 10, `bytes 10-19/${asset.byte_size}`]);
      } finally {
        diagnostics.unsubscribe('http.client.request.start', record);
      }
      if (store) expect(sent).toEqual(['GET whole', 'GET whole', 'GET bytes=10-19']);
    });

    it('a thumbnail opens under the same rules as its original: owner or signed URL, else 404', async () => {
      const { user, job } = await finished('image');
      const asset = job.assets[0] as Json;
      const stranger = await signIn(t.app);
      expect((await t.app.inject({ url: `/api/anime/assets/${asset.id}/thumbnail`, headers: user.authorization })).statusCode).toBe(200);
      expectProblem(await t.app.inject({ url: `/api/anime/assets/${asset.id}/thumbnail`, headers: stranger.authorization }), 404, 'not-found');
      expectProblem(await t.app.inject({ url: `/api/anime/assets/${asset.id}/thumbnail` }), 404, 'not-found');
      const list = (await t.app.inject({ url: '/api/anime/jobs', headers: user.authorization })).json() as Json;
      expect(list.items[0].assets[0].thumbnail_url).toMatch(/\/thumbnail\?/);
    });
  });
}

describe('delivery by presigned redirect [s3]', () => {
  const t = useTestApp('sqlite', { limits: ROOMY_LIMITS, assets: assetSettingsFor('s3', s3, { delivery: 'redirect' }) });

  it('after the same checks, answers a 302 to a one-minute presigned GET that serves the bytes and ranges', async () => {
    const user = await signIn(t.app);
    const submitted = (await generate(t.app, user.authorization, { prompt: 'redirected', type: 'video', width: 64, height: 64, frames: 4 })).json() as Json;
    const job = await waitFor(t.app, user.authorization, submitted.job_id, ['succeeded']);
    const asset = job.assets[0] as Json;
    const answer = await t.app.inject({ url: asset.url });
    expect(answer.statusCode).toBe(302);
    const location = new URL(answer.headers.location as string);
    expect(location.origin).toBe(s3.endpoint);
    expect(location.searchParams.get('X-Amz-Expires')).toBe('60');
    expect(location.searchParams.get('response-content-type')).toBe(asset.content_type);
    const bytes = await fetch(location);
    expect(Buffer.from(await bytes.arrayBuffer()).length).toBe(asset.byte_size);
    const ranged = await fetch(location, { headers: { range: 'bytes=0-9' } });
    expect(ranged.status).toBe(206);
    expect((await ranged.arrayBuffer()).byteLength).toBe(10);
    const stranger = await signIn(t.app);
    expectProblem(await t.app.inject({ url: `/api/anime/assets/${asset.id}`, headers: stranger.authorization }), 404, 'not-found');
  });
});
