import { describe, expect, it } from 'vitest';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { ASSET_BACKENDS, assetSettingsFor, startTestS3 } from '../support/s3.js';
import { expectNoPath, expectProblem, generate, ROOMY_LIMITS, waitFor, type Json } from './helpers.js';

const s3 = await startTestS3();

for (const backend of ASSET_BACKENDS) describeEachDialect(`assets, gallery and admin stats [${backend}]`, (dialect) => {
  const t = useTestApp(dialect, { limits: ROOMY_LIMITS, assets: assetSettingsFor(backend, s3) });

  async function finished(type: 'image' | 'video' = 'image', prompt = 'a lantern') {
    const user = await signIn(t.app);
    const body = { prompt, type, width: 64, height: 64, ...(type === 'video' && { frames: 6 }) };
    const job = (await generate(t.app, user.authorization, body)).json() as Json;
    return { user, job: await waitFor(t.app, user.authorization, job.job_id, ['succeeded']) };
  }

  describe('GET /assets/{id}', () => {
    it('the owner reads the bytes with the right type, nosniff and a disposition', async () => {
      const { user, job } = await finished();
      const asset = job.assets[0] as Json;
      expect(asset.url).toMatch(new RegExp(`^/api/anime/assets/${asset.id}\\?expires=\\d+&signature=[\\w-]+$`));
      const response = await t.app.inject({ url: `/api/anime/assets/${asset.id}`, headers: user.authorization });
      expect(response.statusCode).toBe(200);
      expect(response.headers['content-type']).toBe('image/png');
      expect(response.headers['x-content-type-options']).toBe('nosniff');
      expect(response.headers['content-disposition']).toBe(`inline; filename="${asset.id}.png"`);
      expect(response.rawPayload.length).toBe(asset.byte_size);
      expect(response.rawPayload.subarray(1, 4).toString()).toBe('PNG');
      const download = await t.app.inject({ url: `/api/anime/assets/${asset.id}?download=1`, headers: user.authorization });
      expect(download.headers['content-disposition']).toMatch(/^attachment;/);
    });

    it('anyone with the signed URL reads it (an <img> tag), nobody without it', async () => {
      const { job } = await finished();
      const asset = job.assets[0] as Json;
      const stranger = await signIn(t.app);
      expect((await t.app.inject({ url: asset.url })).statusCode).toBe(200);
      const none = expectProblem(await t.app.inject({ url: `/api/anime/assets/${asset.id}` }), 404, 'not-found');
      const theirs = expectProblem(await t.app.inject({ url: `/api/anime/assets/${asset.id}`, headers: stranger.authorization }), 404, 'not-found');
      const missing = expectProblem(await t.app.inject({ url: '/api/anime/assets/00000000-0000-4000-8000-000000000000' }), 404, 'not-found');
      expect(none).toEqual(missing);
      expect(theirs).toEqual(missing);
    });

    it('a tampered, expired, reused-for-another-asset or far-future signature is a 404', async () => {
      const { job } = await finished();
      const { job: other } = await finished();
      const asset = job.assets[0] as Json;
      const url = new URL(asset.url, 'http://x');
      const expires = Number(url.searchParams.get('expires'));
      const signature = url.searchParams.get('signature')!;
      const flipped = (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1);
      const attempts = [
        `/api/anime/assets/${asset.id}?expires=${expires}&signature=${flipped}`,
        `/api/anime/assets/${asset.id}?expires=${expires + 300}&signature=${signature}`,
        `/api/anime/assets/${asset.id}?expires=${Math.floor(Date.now() / 1000) - 10}&signature=${signature}`,
        `/api/anime/assets/${other.assets[0].id}?expires=${expires}&signature=${signature}`,
        `/api/anime/assets/${asset.id}?expires=${expires}`,
        `/api/anime/assets/${asset.id}?expires=99999999999&signature=${signature}`,
      ];
      for (const attempt of attempts) expectProblem(await t.app.inject({ url: attempt }), 404, 'not-found');
      expect((await t.app.inject({ url: '/api/anime/assets/../../secrets/url-signing.key' })).statusCode).toBe(404);
    });

    it('a signed URL opens only in its one canonical spelling: no padding, other alphabet, trailing junk or other number forms', async () => {
      const { job } = await finished();
      const asset = job.assets[0] as Json;
      const url = new URL(asset.url, 'http://x');
      const expires = url.searchParams.get('expires')!;
      const signature = url.searchParams.get('signature')!;
      expect((await t.app.inject({ url: asset.url })).statusCode).toBe(200);
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const last = alphabet.indexOf(signature.at(-1)!);
      const sameBytes = signature.slice(0, -1) + alphabet[last ^ 1]; // the two unused low bits differ, the bytes do not
      const standard = Buffer.from(signature, 'base64url').toString('base64').replace(/=+$/, '');
      const spellings = [
        [expires, `${signature}=`],
        // the standard alphabet spells it differently only when it has a - or _ (three times in four)
        ...(standard === signature ? [] : [[expires, encodeURIComponent(standard)]]),
        [expires, `${signature}x`],
        [expires, `${signature}%00`],
        [expires, sameBytes],
        [`0${expires}`, signature],
        [`%2B${expires}`, signature],
        [`${expires}.0`, signature],
        [`${Number(expires).toExponential().replace('+', '%2B')}`, signature],
      ];
      for (const [e, sig] of spellings) {
        const response = await t.app.inject({ url: `/api/anime/assets/${asset.id}?expires=${e}&signature=${sig}` });
        expect(response.statusCode, `${e} ${sig}`).not.toBe(200);
        expect(response.headers['content-type'], `${e} ${sig}`).toContain('application/problem+json');
      }
      expect(t.app.services.production.signer.verify(asset.id, Number(expires), sameBytes)).toBe(false);
      expect(t.app.services.production.signer.verify(asset.id, Number(expires), signature)).toBe(true);
    });

    it('a bad bearer token on an asset is a 401, not a silent downgrade', async () => {
      const { job } = await finished();
      expectProblem(await t.app.inject({ url: job.assets[0].url, headers: { authorization: 'Bearer not.a.token' } }), 401);
    });

    it('serves byte ranges for video players', async () => {
      const { user, job } = await finished('video');
      const asset = job.assets[0] as Json;
      const whole = (await t.app.inject({ url: asset.url })).rawPayload;
      expect(whole.length).toBe(asset.byte_size);
      const first = await t.app.inject({ url: asset.url, headers: { range: 'bytes=0-99' } });
      expect(first.statusCode).toBe(206);
      expect(first.headers['content-range']).toBe(`bytes 0-99/${whole.length}`);
      expect(first.headers['accept-ranges']).toBe('bytes');
      expect(first.rawPayload.equals(whole.subarray(0, 100))).toBe(true);
      const tail = await t.app.inject({ url: `/api/anime/assets/${asset.id}`, headers: { ...user.authorization, range: 'bytes=-10' } });
      expect(tail.statusCode).toBe(206);
      expect(tail.rawPayload.equals(whole.subarray(whole.length - 10))).toBe(true);
      const open = await t.app.inject({ url: asset.url, headers: { range: `bytes=${whole.length - 5}-` } });
      expect(open.rawPayload.equals(whole.subarray(whole.length - 5))).toBe(true);
      const beyond = await t.app.inject({ url: asset.url, headers: { range: `bytes=${whole.length}-` } });
      expectProblem(beyond, 416);
      expect(beyond.headers['content-range']).toBe(`bytes */${whole.length}`);
    });
  });

  describe('gallery', () => {
    it('only the owner publishes, only a succeeded job; visibility decides who sees it', async () => {
      const { user, job } = await finished('image', 'public lantern');
      const { user: member, job: membersJob } = await finished('video', 'members lantern');
      const stranger = await signIn(t.app);

      expectProblem(
        await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${job.job_id}/publish`, headers: stranger.authorization, payload: { visibility: 'public' } }),
        404,
      );
      expectProblem(
        await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${job.job_id}/publish`, headers: user.authorization, payload: { visibility: 'everyone' } }),
        400,
        'validation',
      );
      const published = await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${job.job_id}/publish`, headers: user.authorization, payload: { visibility: 'public' } });
      expect(published.statusCode).toBe(200);
      expect(published.json()).toMatchObject({ visibility: 'public' });
      await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${membersJob.job_id}/publish`, headers: member.authorization, payload: { visibility: 'members' } });

      const queued = (await generate(t.app, user.authorization, { prompt: 'not yet', type: 'video', frames: 120, width: 512, height: 512 })).json() as Json;
      expectProblem(
        await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${queued.job_id}/publish`, headers: user.authorization, payload: { visibility: 'public' } }),
        409,
        'conflict',
      );
      await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${queued.job_id}/cancel`, headers: user.authorization });

      const anonymous = (await t.app.inject({ url: '/api/anime/gallery' })).json() as Json;
      expect(anonymous.items.map((i: Json) => i.job_id)).toEqual([job.job_id]);
      expect(anonymous.items[0]).toMatchObject({ prompt: 'public lantern', visibility: 'public', type: 'image' });
      const item = anonymous.items[0] as Json;
      expect((await t.app.inject({ url: item.assets[0].url })).statusCode).toBe(200);
      expect(JSON.stringify(anonymous)).not.toMatch(/user_id|email/);

      const signedIn = (await t.app.inject({ url: '/api/anime/gallery', headers: stranger.authorization })).json() as Json;
      expect(signedIn.items.map((i: Json) => i.job_id)).toEqual([membersJob.job_id, job.job_id]);
      const videos = (await t.app.inject({ url: '/api/anime/gallery?type=video', headers: stranger.authorization })).json() as Json;
      expect(videos.items.map((i: Json) => i.job_id)).toEqual([membersJob.job_id]);
      const paged = (await t.app.inject({ url: '/api/anime/gallery?limit=1', headers: stranger.authorization })).json() as Json;
      expect(paged.items).toHaveLength(1);
      const next = (await t.app.inject({ url: `/api/anime/gallery?limit=1&cursor=${paged.next_cursor}`, headers: stranger.authorization })).json() as Json;
      expect(next.items.map((i: Json) => i.job_id)).toEqual([job.job_id]);

      expectProblem(await t.app.inject({ url: '/api/anime/gallery', headers: { authorization: 'Bearer expired.or.forged' } }), 401);

      const unpublished = await t.app.inject({ method: 'DELETE', url: `/api/anime/jobs/${job.job_id}/publish`, headers: user.authorization });
      expect(unpublished.json()).toMatchObject({ visibility: null, published_at: null });
      const after = (await t.app.inject({ url: '/api/anime/gallery' })).json() as Json;
      expect(after.items).toEqual([]);
      expectNoPath(JSON.stringify(signedIn));
    });
  });

  describe('GET /admin/stats', () => {
    it('is for admins: jobs by state and type, queue, users, render times, renderer health', async () => {
      await finished('image', 'for stats');
      const user = await signIn(t.app);
      expectProblem(await t.app.inject({ url: '/api/anime/admin/stats', headers: user.authorization }), 403);
      expectProblem(await t.app.inject({ url: '/api/anime/admin/stats' }), 401);
      const admin = await signIn(t.app, { role: 'admin' });
      const response = await t.app.inject({ url: '/api/anime/admin/stats', headers: admin.authorization });
      expect(response.statusCode).toBe(200);
      const stats = response.json() as Json;
      expect(stats.jobs.by_state.succeeded).toBeGreaterThanOrEqual(1);
      expect(stats.jobs.by_type.image).toBeGreaterThanOrEqual(1);
      expect(stats).toMatchObject({ queue_depth: expect.any(Number), active_jobs: expect.any(Number), renderer: { name: 'preview', ok: true } });
      expect(stats.users).toBeGreaterThanOrEqual(3);
      expect(stats.render_ms_24h.count).toBeGreaterThanOrEqual(1);
      expect(stats.render_ms_24h.p95).toBeGreaterThanOrEqual(stats.render_ms_24h.p50);
    });
  });
});
