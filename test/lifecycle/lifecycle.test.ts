import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { Housekeeping } from '../../src/lifecycle/housekeeping.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { ASSET_BACKENDS, assetSettingsFor, startTestS3 } from '../support/s3.js';
import { registerAndLogin } from '../support/users.js';
import { expectProblem, generate, ROOMY_LIMITS, waitFor, type Json } from '../production/helpers.js';

const EXTENSIONS: Record<string, string> = { 'video/mp4': 'mp4', 'image/jpeg': 'jpg', 'image/webp': 'webp', 'image/png': 'png' };

const s3 = await startTestS3();

for (const backend of ASSET_BACKENDS) {
  describeEachDialect(`storage quotas, deletion and the sweep [${backend}]`, (dialect) => {
    const t = useTestApp(dialect, { limits: ROOMY_LIMITS, assets: assetSettingsFor(backend, s3) });

    async function finishedFor(authorization: Record<string, string>, type: 'image' | 'video' = 'image') {
      const body = { prompt: 'to be deleted', type, width: 64, height: 64, ...(type === 'video' && { frames: 4 }) };
      const job = (await generate(t.app, authorization, body)).json() as Json;
      return waitFor(t.app, authorization, job.job_id, ['succeeded']);
    }

    async function objectKeys(): Promise<string[]> {
      const settings = t.config.assets.s3;
      if (settings) return s3.keys(settings);
      return ['assets', 'thumbnails'].flatMap((folder) => readdirSync(path.join(t.config.dataDir, folder)).map((name) => `${folder}/${name}`)).sort();
    }
    const keysOf = async (jobId: string) => (await objectKeys()).filter((key) => key.includes(jobId));

    it('deleting a job removes its rows, its result and thumbnail from the store, and its share links', async () => {
      const user = await signIn(t.app);
      const job = await finishedFor(user.authorization, 'video');
      const link = (await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${job.job_id}/shares`, headers: user.authorization, payload: { expires_in: 3600 } })).json() as Json;
      const stored = (job.assets as Json[]).flatMap((asset, position) => [`assets/${job.job_id}-${position}.${EXTENSIONS[asset.content_type as string]}`, `thumbnails/${job.job_id}-${position}.webp`]);
      expect(await keysOf(job.job_id)).toEqual(stored.sort());
      const stranger = await signIn(t.app);
      expectProblem(await t.app.inject({ method: 'DELETE', url: `/api/anime/jobs/${job.job_id}`, headers: stranger.authorization }), 404, 'not-found');

      const deleted = await t.app.inject({ method: 'DELETE', url: `/api/anime/jobs/${job.job_id}`, headers: user.authorization });
      expect(deleted.statusCode).toBe(204);
      expect(await keysOf(job.job_id)).toEqual([]);
      expectProblem(await t.app.inject({ url: `/api/anime/jobs/${job.job_id}`, headers: user.authorization }), 404, 'not-found');
      expectProblem(await t.app.inject({ url: job.assets[0].url }), 404, 'not-found');
      expectProblem(await t.app.inject({ url: `/api/anime/shared/${link.token}` }), 404, 'not-found');
      const db = t.app.services.store.db;
      expect(await db.selectFrom('share_links').selectAll().where('job_id', '=', job.job_id).execute()).toEqual([]);
      await t.app.services.audit.flush();
      const audit = await db.selectFrom('audit_log').select(['action', 'actor_id']).where('target', '=', job.job_id).where('action', '=', 'job.delete').execute();
      expect(audit).toEqual([{ action: 'job.delete', actor_id: user.userId }]);

      const running = (await generate(t.app, user.authorization, { prompt: 'still going', type: 'video', frames: 120, width: 512, height: 512 })).json() as Json;
      expectProblem(await t.app.inject({ method: 'DELETE', url: `/api/anime/jobs/${running.job_id}`, headers: user.authorization }), 409, 'conflict');
      await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${running.job_id}/cancel`, headers: user.authorization });
    });

    it('each user sees their stored bytes and quota; an admin override is enforced on the next submission', async () => {
      const user = await signIn(t.app);
      const first = await finishedFor(user.authorization);
      const storage = (await t.app.inject({ url: '/api/anime/storage', headers: user.authorization })).json() as Json;
      expect(storage).toEqual({ used_bytes: first.assets[0].byte_size, limit_bytes: 5 * 1024 ** 3, override_bytes: null, default_bytes: 5 * 1024 ** 3 });

      const admin = await signIn(t.app, { role: 'admin' });
      const url = `/api/anime/admin/users/${user.userId}/storage`;
      expectProblem(await t.app.inject({ method: 'PUT', url, headers: user.authorization, payload: { storage_bytes: 1 } }), 403);
      expectProblem(await t.app.inject({ method: 'PUT', url, headers: admin.authorization, payload: { storage_bytes: -1 } }), 400, 'validation');
      expectProblem(await t.app.inject({ method: 'PUT', url: `/api/anime/admin/users/${randomUUID()}/storage`, headers: admin.authorization, payload: { storage_bytes: 1 } }), 404);
      const set = await t.app.inject({ method: 'PUT', url, headers: admin.authorization, payload: { storage_bytes: first.assets[0].byte_size } });
      expect(set.json()).toMatchObject({ limit_bytes: first.assets[0].byte_size, override_bytes: first.assets[0].byte_size });

      const refused = expectProblem(await generate(t.app, user.authorization, { prompt: 'one more', type: 'image' }), 403, 'quota-storage');
      expect(refused).toMatchObject({ quota: 'storage', limit: first.assets[0].byte_size, used: first.assets[0].byte_size });
      expect((await t.app.inject({ url: '/api/anime/storage', headers: user.authorization })).json()).toMatchObject({ override_bytes: first.assets[0].byte_size });

      // deleting a job makes room again
      await t.app.inject({ method: 'DELETE', url: `/api/anime/jobs/${first.job_id}`, headers: user.authorization });
      expect((await t.app.inject({ url: '/api/anime/storage', headers: user.authorization })).json()).toMatchObject({ used_bytes: 0 });
      expect((await generate(t.app, user.authorization, { prompt: 'room again', type: 'image' })).statusCode).toBe(202);
      const reset = await t.app.inject({ method: 'PUT', url, headers: admin.authorization, payload: { storage_bytes: null } });
      expect(reset.json()).toMatchObject({ override_bytes: null, limit_bytes: 5 * 1024 ** 3 });
      await t.app.services.audit.flush();
      const audit = await t.app.services.store.db.selectFrom('audit_log').select('actor_id').where('action', '=', 'admin.user.storage-quota').where('target', '=', user.userId).execute();
      expect(audit).toHaveLength(2);
    });

    it('a user deletes their account with their password: jobs, objects, sessions, keys and links go; the audit trail stays', async () => {
      const user = await registerAndLogin(t.app);
      const job = await finishedFor(user.authorization);
      const link = (await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${job.job_id}/shares`, headers: user.authorization, payload: { expires_in: 3600 } })).json() as Json;
      const key = (await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: user.authorization, payload: { name: 'script', scopes: ['jobs:read'] } })).json() as Json;
      expect((await t.app.inject({ url: '/api/anime/jobs', headers: { 'x-api-key': key.key } })).statusCode).toBe(200);
      const db = t.app.services.store.db;
      await t.app.services.audit.flush();
      const auditBefore = await db.selectFrom('audit_log').select('seq').where('actor_id', '=', user.userId).execute();
      expect(auditBefore.length).toBeGreaterThan(3);

      const wrong = expectProblem(await t.app.inject({ method: 'DELETE', url: '/api/anime/account', headers: user.authorization, payload: { password: 'not the password at all' } }), 403, 'reauthentication-failed');
      expect(wrong.detail).toBe('The password is not right.');
      expectProblem(await t.app.inject({ method: 'DELETE', url: '/api/anime/account', headers: user.authorization, payload: {} }), 400, 'validation');
      const deleted = await t.app.inject({ method: 'DELETE', url: '/api/anime/account', headers: user.authorization, payload: { password: user.password } });
      expect(deleted.statusCode).toBe(204);

      expectProblem(await t.app.inject({ url: '/api/anime/jobs', headers: user.authorization }), 401);
      expectProblem(await t.app.inject({ url: '/api/anime/jobs', headers: { 'x-api-key': key.key } }), 401);
      expectProblem(await t.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token: user.refreshToken } }), 401);
      expectProblem(await t.app.inject({ url: `/api/anime/shared/${link.token}` }), 404);
      expectProblem(await t.app.inject({ url: job.assets[0].url }), 404);
      expect(await keysOf(job.job_id)).toEqual([]);
      for (const table of ['jobs', 'assets', 'sessions', 'api_keys', 'share_links'] as const) {
        expect(await db.selectFrom(table).select('user_id').where('user_id', '=', user.userId).execute()).toEqual([]);
      }
      const tombstone = await db.selectFrom('users').selectAll().where('id', '=', user.userId).executeTakeFirstOrThrow();
      expect(tombstone).toMatchObject({ email: `deleted-${user.userId}@deleted.invalid`, disabled: 1, password_hash: '!', totp_secret: null });
      expect((await db.selectFrom('users').select('id').where('email', '=', user.email).execute())).toEqual([]);
      await t.app.services.audit.flush();
      const auditAfter = await db.selectFrom('audit_log').select(['seq', 'action']).where('actor_id', '=', user.userId).execute();
      expect(auditAfter.length).toBeGreaterThan(auditBefore.length);
      expect(auditAfter.map((row) => row.action)).toContain('account.delete');
    });

    it('a user with a second factor must have stepped up to delete the account', async () => {
      const user = await registerAndLogin(t.app);
      await t.app.services.store.db.updateTable('users').set({ totp_enabled: 1 }).where('id', '=', user.userId).execute();
      expectProblem(await t.app.inject({ method: 'DELETE', url: '/api/anime/account', headers: user.authorization, payload: { password: user.password } }), 403, 'step-up-required');
      expect((await t.app.inject({ url: '/api/anime/jobs', headers: user.authorization })).statusCode).toBe(200);
    });

    it('an admin deletes another account; not their own there, and a user cannot', async () => {
      const target = await signIn(t.app);
      const job = await finishedFor(target.authorization);
      const admin = await signIn(t.app, { role: 'admin' });
      const other = await signIn(t.app);
      expectProblem(await t.app.inject({ method: 'DELETE', url: `/api/anime/admin/users/${target.userId}`, headers: other.authorization }), 403);
      expectProblem(await t.app.inject({ method: 'DELETE', url: `/api/anime/admin/users/${admin.userId}`, headers: admin.authorization }), 409, 'conflict');
      const deleted = await t.app.inject({ method: 'DELETE', url: `/api/anime/admin/users/${target.userId}`, headers: admin.authorization });
      expect(deleted.statusCode).toBe(204);
      expectProblem(await t.app.inject({ url: '/api/anime/jobs', headers: target.authorization }), 401);
      expect(await keysOf(job.job_id)).toEqual([]);
      expectProblem(await t.app.inject({ method: 'DELETE', url: `/api/anime/admin/users/${target.userId}`, headers: admin.authorization }), 404);
    });

    it('the sweep removes orphaned objects and expired failed/canceled jobs, and keeps everything else', async () => {
      const user = await signIn(t.app);
      const kept = await finishedFor(user.authorization);
      const storage = t.app.services.production.assets;
      const orphan = randomUUID();
      await storage.objects.put(`assets/${orphan}-0.png`, Buffer.from('orphaned result'), 'image/png');
      await storage.objects.put(`thumbnails/${orphan}-0.webp`, Buffer.from('orphaned thumbnail'), 'image/webp');

      const canceled = (await generate(t.app, user.authorization, { prompt: 'canceled long ago', type: 'video', frames: 120, width: 512, height: 512 })).json() as Json;
      await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${canceled.job_id}/cancel`, headers: user.authorization });
      const recent = (await generate(t.app, user.authorization, { prompt: 'canceled just now', type: 'video', frames: 120, width: 512, height: 512 })).json() as Json;
      await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${recent.job_id}/cancel`, headers: user.authorization });
      const db = t.app.services.store.db;
      const longAgo = new Date(Date.now() - 31 * 86_400_000).toISOString();
      await db.updateTable('jobs').set({ finished_at: longAgo }).where('id', 'in', [canceled.job_id, kept.job_id]).execute();

      const housekeeping = new Housekeeping({ store: t.app.services.store, storage, settings: t.config.assets, log: t.app.log });
      const youngFirst = await housekeeping.sweep();
      expect(youngFirst).toEqual({ leftovers: 0, orphans: 0, expiredJobs: 1 }); // orphans younger than the grace: a worker may be about to commit them
      expect(await keysOf(orphan)).toHaveLength(2);
      const report = await housekeeping.sweep({ graceMs: 0 });
      expect(report).toEqual({ leftovers: 0, orphans: 2, expiredJobs: 0 });
      expect(await keysOf(orphan)).toEqual([]);
      expect(await keysOf(kept.job_id)).toHaveLength(2);
      expect((await t.app.inject({ url: kept.assets[0].url })).statusCode).toBe(200);
      expectProblem(await t.app.inject({ url: `/api/anime/jobs/${canceled.job_id}`, headers: user.authorization }), 404);
      expect((await t.app.inject({ url: `/api/anime/jobs/${recent.job_id}`, headers: user.authorization })).json()).toMatchObject({ status: 'canceled' });
    });
  });
}
