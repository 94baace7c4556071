import { createHash } from 'node:crypto';
import { expect, it } from 'vitest';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { ASSET_BACKENDS, assetSettingsFor, startTestS3 } from '../support/s3.js';
import { expectProblem, generate, ROOMY_LIMITS, waitFor, type Json } from '../production/helpers.js';

const s3 = await startTestS3();

for (const backend of ASSET_BACKENDS) {
  describeEachDialect(`share links [${backend}]`, (dialect) => {
    const t = useTestApp(dialect, { limits: ROOMY_LIMITS, assets: assetSettingsFor(backend, s3), publicUrl: 'https://studio.example' });

    async function finished(type: 'image' | 'video' = 'video') {
      const user = await signIn(t.app);
      const body = { prompt: 'a shared lantern', type, width: 64, height: 64, ...(type === 'video' && { frames: 6 }) };
      const job = (await generate(t.app, user.authorization, body)).json() as Json;
      return { user, job: await waitFor(t.app, user.authorization, job.job_id, ['succeeded']) };
    }

    const share = (jobId: string, authorization: Record<string, string>, payload: unknown) =>
      t.app.inject({ method: 'POST', url: `/api/anime/jobs/${jobId}/shares`, headers: authorization, payload: payload as Json });

    it('an owner makes a 256-bit link that anyone opens without an account; the bytes, ranges and thumbnail come with it', async () => {
      const { user, job } = await finished();
      const created = await share(job.job_id, user.authorization, { expires_in: 7200 });
      expect(created.statusCode).toBe(201);
      const link = created.json() as Json;
      expect(link.token).toMatch(/^cfs_[A-Za-z0-9_-]{43}$/);
      expect(link.url).toBe(`https://studio.example/api/anime/shared/${link.token}`);
      expect(Math.abs(Date.parse(link.expires_at) - Date.now() - 7200_000)).toBeLessThan(10_000);
      expect(link).toMatchObject({ job_id: job.job_id, active: true, open_count: 0, revoked_at: null });

      const opened = await t.app.inject({ url: `/api/anime/shared/${link.token}` });
      expect(opened.statusCode).toBe(200);
      const work = opened.json() as Json;
      expect(work).toMatchObject({ type: 'video', prompt: 'a shared lantern', expires_at: link.expires_at });
      expect(JSON.stringify(work)).not.toMatch(/user_id|email|storage_key/);
      const asset = work.assets[0] as Json;
      const own = (await t.app.inject({ url: job.assets[0].url })).rawPayload;
      const viaLink = await t.app.inject({ url: asset.url });
      expect(viaLink.statusCode).toBe(200);
      expect(viaLink.rawPayload.equals(own)).toBe(true);
      const ranged = await t.app.inject({ url: asset.url, headers: { range: 'bytes=5-14' } });
      expect(ranged.statusCode).toBe(206);
      expect(ranged.rawPayload.equals(own.subarray(5, 15))).toBe(true);
      expect((await t.app.inject({ url: asset.thumbnail_url })).headers['content-type']).toBe('image/webp');
      expectProblem(await t.app.inject({ url: `/api/anime/shared/${link.token}/assets/00000000-0000-4000-8000-000000000000` }), 404, 'not-found');
    });

    it('only the token\'s SHA-256 is stored; every opening is counted and audited', async () => {
      const { user, job } = await finished('image');
      const link = (await share(job.job_id, user.authorization, { expires_in: 3600 })).json() as Json;
      const row = await t.app.services.store.db.selectFrom('share_links').selectAll().where('id', '=', link.id).executeTakeFirstOrThrow();
      expect(row.token_hash).toBe(createHash('sha256').update(link.token).digest('hex'));
      expect(JSON.stringify(row)).not.toContain(link.token.slice(4));

      for (let i = 0; i < 3; i++) expect((await t.app.inject({ url: `/api/anime/shared/${link.token}`, remoteAddress: '198.51.100.7' })).statusCode).toBe(200);
      const listed = (await t.app.inject({ url: `/api/anime/jobs/${job.job_id}/shares`, headers: user.authorization })).json() as Json;
      expect(listed.items).toHaveLength(1);
      expect(listed.items[0]).toMatchObject({ id: link.id, open_count: 3, active: true });
      expect(listed.items[0].last_opened_at).not.toBeNull();
      expect(JSON.stringify(listed)).not.toContain(link.token);

      await t.app.services.audit.flush();
      const audit = await t.app.services.store.db.selectFrom('audit_log').selectAll().where('target', '=', link.id).orderBy('seq').execute();
      expect(audit.map((entry) => entry.action)).toEqual(['share.create', 'share.open', 'share.open', 'share.open']);
      expect(audit[0]!.actor_id).toBe(user.userId);
      expect(audit[1]!.actor_id).toBeNull();
      expect(audit.every((entry) => !JSON.stringify(entry).includes(link.token))).toBe(true);
    });

    it('a revoked link answers 404 at once, its page and its bytes; only the owner revokes', async () => {
      const { user, job } = await finished();
      const link = (await share(job.job_id, user.authorization, { expires_in: 86_400 })).json() as Json;
      const work = (await t.app.inject({ url: `/api/anime/shared/${link.token}` })).json() as Json;
      const stranger = await signIn(t.app);
      expectProblem(await t.app.inject({ method: 'DELETE', url: `/api/anime/shares/${link.id}`, headers: stranger.authorization }), 404, 'not-found');
      expect((await t.app.inject({ url: work.assets[0].url })).statusCode).toBe(200);

      const revoked = await t.app.inject({ method: 'DELETE', url: `/api/anime/shares/${link.id}`, headers: user.authorization });
      expect(revoked.statusCode).toBe(204);
      const gone = expectProblem(await t.app.inject({ url: `/api/anime/shared/${link.token}` }), 404, 'not-found');
      expectProblem(await t.app.inject({ url: work.assets[0].url }), 404, 'not-found');
      expectProblem(await t.app.inject({ url: work.assets[0].thumbnail_url }), 404, 'not-found');
      const listed = (await t.app.inject({ url: `/api/anime/jobs/${job.job_id}/shares`, headers: user.authorization })).json() as Json;
      expect(listed.items[0]).toMatchObject({ active: false });
      expect(listed.items[0].revoked_at).not.toBeNull();

      // an expired link and a made-up one look exactly like the revoked one
      const other = (await share(job.job_id, user.authorization, { expires_in: 3600 })).json() as Json;
      await t.app.services.store.db.updateTable('share_links').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('id', '=', other.id).execute();
      expect(expectProblem(await t.app.inject({ url: `/api/anime/shared/${other.token}` }), 404, 'not-found')).toEqual(gone);
      expect(expectProblem(await t.app.inject({ url: `/api/anime/shared/cfs_${'A'.repeat(43)}` }), 404, 'not-found')).toEqual(gone);
      expect(expectProblem(await t.app.inject({ url: '/api/anime/shared/not-a-token' }), 404, 'not-found')).toEqual(gone);
    });

    it('lifetimes are 1 hour to 30 days; only the owner of a succeeded job shares it', async () => {
      const { user, job } = await finished('image');
      for (const bad of [{ expires_in: 3599 }, { expires_in: 2_592_001 }, { expires_in: '7200' }, {}, { expires_in: 7200, public: true }]) {
        expectProblem(await share(job.job_id, user.authorization, bad), 400, 'validation');
      }
      expect((await share(job.job_id, user.authorization, { expires_in: 2_592_000 })).statusCode).toBe(201);
      const stranger = await signIn(t.app);
      expectProblem(await share(job.job_id, stranger.authorization, { expires_in: 3600 }), 404, 'not-found');
      expectProblem(await t.app.inject({ url: `/api/anime/jobs/${job.job_id}/shares`, headers: stranger.authorization }), 404, 'not-found');
      expectProblem(await share(job.job_id, {}, { expires_in: 3600 }), 401);
      const queued = (await generate(t.app, user.authorization, { prompt: 'not yet', type: 'video', frames: 120, width: 512, height: 512 })).json() as Json;
      expectProblem(await share(queued.job_id, user.authorization, { expires_in: 3600 }), 409, 'conflict');
      await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${queued.job_id}/cancel`, headers: user.authorization });
    });
  });
}
