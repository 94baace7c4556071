import { spawn } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { Type } from 'typebox';
import { beforeAll, expect, it } from 'vitest';
import { GENESIS_HASH, rowHash, type AuditRow } from '../../src/audit/chain.js';
import { pendingRow } from '../../src/audit/pending.js';
import { appendRows, StoreAuditor, verifyTrail } from '../../src/audit/service.js';
import { openStore } from '../../src/db/database.js';
import { ROOT, cliEnv, runCli } from '../support/cli.js';
import { useTestApp, signIn, type SignedIn } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';

const PASSWORD = 'correct-horse-battery-9f2c';
const PROMPT = 'a private prompt about the secret castle 71b3';

/** Test-only routes: a body with a password-like field, and one that records security events. */
async function extraRoutes(app: FastifyInstance) {
  app.post(
    '/test/echo',
    {
      config: { auth: 'optional' },
      schema: { body: Type.Object({ password: Type.String({ maxLength: 100 }), prompt: Type.String({ maxLength: 200 }) }, { additionalProperties: false }) },
    },
    async () => ({ ok: true }),
  );
  app.get('/test/signed/:id', { config: { auth: 'public' } }, async () => ({ ok: true }));
}

const SECURITY_EVENTS = [
  { action: 'auth.login', outcome: 'success' },
  { action: 'auth.login', outcome: 'failure', detail: { reason: 'bad-credentials', password: PASSWORD } },
  { action: 'auth.refresh.reuse', outcome: 'denied', detail: { refresh_token: 'rt-abc-123' } },
  { action: 'auth.totp.enable', outcome: 'success', detail: { code: '123456', otp: '654321' } },
  { action: 'auth.totp.disable', outcome: 'success' },
  { action: 'auth.apikey.create', outcome: 'success', detail: { api_key: 'cfk_live_secret', scopes: ['jobs:read'] } },
  { action: 'auth.apikey.revoke', outcome: 'success' },
  { action: 'admin.user.role', outcome: 'success', detail: { from: 'user', to: 'admin' } },
  { action: 'auth.session.revoke', outcome: 'success', detail: { reason: 'logout' } },
  { action: 'admin.user.disable', outcome: 'success' },
  { action: 'limits.rejected', outcome: 'denied', detail: { class: 'signin', authorization: 'Bearer x' } },
  { action: 'job.create', outcome: 'success', detail: { prompt: PROMPT, nested: { secret_id: 's', ok: 1 } } },
] as const;

describeEachDialect('audit trail', (dialect) => {
  // retention off in the app: the prune test runs the command itself
  const t = useTestApp(dialect, { auditRetentionDays: 0 }, { extraRoutes });
  let admin: SignedIn;
  let user: SignedIn;
  const storage = () => ({ dataDir: t.config.dataDir, databaseUrl: t.config.databaseUrl });
  const rows = async () => (await t.app.services.store.db.selectFrom('audit_log').selectAll().orderBy('seq', 'asc').execute()) as AuditRow[];

  beforeAll(async () => {
    admin = await signIn(t.app, { role: 'admin' });
    user = await signIn(t.app);
  });

  it('records every request with route pattern, status, principal, ip and request id, and no secret text', async () => {
    const echo = await t.app.inject({
      method: 'POST',
      url: '/test/echo?token=query-token-5e1d',
      headers: { ...user.authorization, 'x-request-id': 'req-echo-00000001' },
      payload: { password: PASSWORD, prompt: PROMPT },
    });
    expect(echo.statusCode).toBe(200);
    await t.app.inject({ method: 'GET', url: '/test/signed/abc?sig=signed-url-token-8a8a&exp=1', headers: { 'x-request-id': 'req-signed-0001' } });
    await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: 'Bearer forged.token.value', 'x-request-id': 'req-forged-0001' } });
    // under /api/: other paths are the studio's pages (index.html)
    await t.app.inject({ method: 'GET', url: '/api/no/such/path?token=zzz-9', headers: { 'x-request-id': 'req-missing-001' } });
    await t.app.services.audit.flush();

    const all = await rows();
    const byRequest = (id: string) => all.find((r) => r.request_id === id)!;
    const row = byRequest('req-echo-00000001');
    expect(row).toMatchObject({ action: 'http.request', outcome: 'success', actor_id: user.userId, ip: '127.0.0.1', target: 'POST /test/echo' });
    expect(row.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(JSON.parse(row.detail!)).toMatchObject({ method: 'POST', route: '/test/echo', status: 200, via: 'token' });
    expect(byRequest('req-signed-0001')).toMatchObject({ target: 'GET /test/signed/:id', actor_id: null, outcome: 'success' });
    expect(byRequest('req-forged-0001')).toMatchObject({ target: 'GET /api/auth/me', outcome: 'denied', actor_id: null });
    expect(JSON.parse(byRequest('req-forged-0001').detail!).status).toBe(401);
    expect(byRequest('req-missing-001')).toMatchObject({ target: 'GET (no route)', outcome: 'failure' });

    const everything = JSON.stringify(all);
    for (const secret of [PASSWORD, PROMPT, user.token, 'query-token-5e1d', 'signed-url-token-8a8a', 'forged.token.value', 'zzz-9']) {
      expect(everything).not.toContain(secret);
    }
  });

  it('records each kind of security event with its fields, masking secret-looking detail keys', async () => {
    for (const event of SECURITY_EVENTS) {
      t.app.services.audit.record({ ...event, actorId: admin.userId, target: `user:${user.userId}`, ip: '203.0.113.9', requestId: 'req-security-01' });
    }
    await t.app.services.audit.flush();
    const recorded = (await rows()).filter((r) => r.request_id === 'req-security-01');
    expect(recorded.map((r) => [r.action, r.outcome])).toEqual(SECURITY_EVENTS.map((e) => [e.action, e.outcome]));
    for (const row of recorded) expect(row).toMatchObject({ actor_id: admin.userId, target: `user:${user.userId}`, ip: '203.0.113.9' });
    const detail = (action: string, outcome: string) => JSON.parse(recorded.find((r) => r.action === action && r.outcome === outcome)!.detail!);
    expect(detail('auth.login', 'failure')).toEqual({ reason: 'bad-credentials', password: '[masked]' });
    expect(detail('auth.totp.enable', 'success')).toEqual({ code: '[masked]', otp: '[masked]' });
    expect(detail('auth.apikey.create', 'success')).toEqual({ api_key: '[masked]', scopes: ['jobs:read'] });
    expect(detail('job.create', 'success')).toEqual({ prompt: '[masked]', nested: { secret_id: '[masked]', ok: 1 } });
    const text = JSON.stringify(recorded);
    for (const secret of [PASSWORD, PROMPT, 'rt-abc-123', '123456', 'cfk_live_secret', 'Bearer x']) expect(text).not.toContain(secret);
  });

  it('200 concurrent records, plus two other processes appending at once, make one gap-free valid chain', async () => {
    const before = (await rows()).length;
    const workers = ['alpha', 'beta'].map(
      (name) =>
        new Promise<number | null>((resolve, reject) => {
          const child = spawn(process.execPath, ['--import', 'tsx', 'test/audit/append-worker.ts', name, '60'], {
            cwd: ROOT,
            env: cliEnv(storage()),
            stdio: ['ignore', 'inherit', 'inherit'],
          });
          child.on('error', reject);
          child.on('exit', resolve);
        }),
    );
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        await new Promise((resolve) => setImmediate(resolve));
        t.app.services.audit.record({ action: 'test.concurrent', outcome: 'success', target: String(i) });
      }),
    );
    await t.app.services.audit.flush();
    expect(await Promise.all(workers)).toEqual([0, 0]);

    const all = await rows();
    expect(all.length).toBe(before + 320);
    expect(all.map((r) => Number(r.seq))).toEqual(all.map((_, i) => i + 1));
    expect(all[0]!.prev_hash).toBe(GENESIS_HASH);
    for (let i = 1; i < all.length; i++) expect(all[i]!.prev_hash).toBe(all[i - 1]!.hash);
    for (const row of all) expect(rowHash(row)).toBe(row.hash);
    expect(new Set(all.filter((r) => r.action === 'test.concurrent').map((r) => r.target)).size).toBe(200);
    expect(all.filter((r) => r.action === 'test.alpha')).toHaveLength(60);
    expect((await verifyTrail(t.app.services.store)).ok).toBe(true);
  });

  it('audit verify passes, then names the first bad row after any single edit, deletion or swap', async () => {
    await t.app.services.audit.flush();
    const { db } = t.app.services.store;
    const snapshot = await rows();
    const head = await db.selectFrom('audit_head').selectAll().executeTakeFirstOrThrow();
    const n = snapshot.length;
    const restore = async () => {
      await db.deleteFrom('audit_log').execute();
      for (let i = 0; i < snapshot.length; i += 100) await db.insertInto('audit_log').values(snapshot.slice(i, i + 100)).execute();
      await db.updateTable('audit_head').set(head).where('id', '=', 1).execute();
    };

    const intact = await runCli(['audit', 'verify'], storage());
    expect(intact.stderr).toBe('');
    expect(intact.code).toBe(0);
    expect(intact.stdout).toContain(`${n} rows, chain intact (head row ${n}, hash ${snapshot.at(-1)!.hash})`);

    const mid = Math.floor(n / 2);
    const swapA = 10;
    const swapB = 11;
    // [name, tamper, first bad row, checked through the real command line (else the same check in process)]
    const cases: Array<[string, () => Promise<unknown>, string, boolean?]> = [
      ['edit one detail', () => db.updateTable('audit_log').set({ detail: '{"status":200}' }).where('seq', '=', mid).execute(), `row ${mid}: hash mismatch`, true],
      ['edit the outcome of the newest row', () => db.updateTable('audit_log').set({ outcome: 'denied' }).where('seq', '=', n).execute(), `row ${n}: hash mismatch`],
      [
        'edit a row and recompute its hash',
        async () => {
          const row = snapshot[mid - 1]!;
          const edited = { ...row, actor_id: 'someone-else' };
          await db.updateTable('audit_log').set({ actor_id: edited.actor_id, hash: rowHash(edited) }).where('seq', '=', mid).execute();
        },
        `row ${mid + 1}: prev_hash does not match row ${mid}`,
      ],
      ['delete a middle row', () => db.deleteFrom('audit_log').where('seq', '=', mid).execute(), `row ${mid} missing (gap after ${mid - 1})`, true],
      ['delete the first row', () => db.deleteFrom('audit_log').where('seq', '=', 1).execute(), 'row 1 missing (gap after 0)'],
      ['delete the newest row', () => db.deleteFrom('audit_log').where('seq', '=', n).execute(), `row ${n} missing (gap after ${n - 1}; the chain head is row ${n})`],
      ['delete the newest three rows', () => db.deleteFrom('audit_log').where('seq', '>', n - 3).execute(), `row ${n - 2} missing (gap after ${n - 3}; the chain head is row ${n})`, true],
      [
        'swap two rows',
        async () => {
          await db.updateTable('audit_log').set({ seq: -1 }).where('seq', '=', swapA).execute();
          await db.updateTable('audit_log').set({ seq: swapA }).where('seq', '=', swapB).execute();
          await db.updateTable('audit_log').set({ seq: swapB }).where('seq', '=', -1).execute();
        },
        `row ${swapA}: hash mismatch`,
        true,
      ],
    ];
    for (const [name, tamper, expected, viaCli] of cases) {
      await tamper();
      if (viaCli) {
        const result = await runCli(['audit', 'verify'], storage());
        expect({ name, code: result.code, stderr: result.stderr.trim() }).toEqual({ name, code: 1, stderr: `audit trail broken: ${expected}` });
      } else {
        const result = await verifyTrail(t.app.services.store);
        expect({ name, ok: result.ok, problem: result.problem }).toEqual({ name, ok: false, problem: expected });
      }
      await restore();
    }
    expect((await verifyTrail(t.app.services.store)).ok).toBe(true);
  }, 120_000);

  it('GET /api/anime/admin/audit filters and pages for admins only', async () => {
    for (let i = 0; i < 5; i++) t.app.services.audit.record({ action: 'auth.login', outcome: 'failure', actorId: user.userId, requestId: `page-${i}` });
    t.app.services.audit.record({ action: 'authx.other', outcome: 'failure', actorId: user.userId });
    await t.app.services.audit.flush();

    const anonymous = await t.app.inject({ method: 'GET', url: '/api/anime/admin/audit' });
    expect(anonymous.statusCode).toBe(401);
    const forbidden = await t.app.inject({ method: 'GET', url: '/api/anime/admin/audit', headers: user.authorization });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.headers['content-type']).toContain('application/problem+json');

    const get = async (query: string) => {
      const response = await t.app.inject({ method: 'GET', url: `/api/anime/admin/audit?${query}`, headers: admin.authorization });
      expect(response.statusCode, response.body).toBe(200);
      return response.json() as { items: Array<Record<string, unknown> & { seq: number }>; next_cursor: number | null };
    };
    const first = await get(`action=auth.&actor=${user.userId}&outcome=failure&limit=3`);
    expect(first.items).toHaveLength(3);
    expect(first.items.map((i) => i.request_id)).toEqual(['page-4', 'page-3', 'page-2']);
    expect(first.items.every((i) => i.action === 'auth.login' && i.actor_id === user.userId)).toBe(true);
    expect(first.next_cursor).toBe(first.items[2]!.seq);
    const second = await get(`action=auth.&actor=${user.userId}&outcome=failure&limit=3&cursor=${first.next_cursor}`);
    expect(second.items.map((i) => i.request_id)).toEqual(['page-1', 'page-0']);
    expect(second.next_cursor).toBeNull();

    const past = await get(`to=${encodeURIComponent('2000-01-01T00:00:00Z')}`);
    expect(past.items).toEqual([]);
    const recent = await get(`from=${encodeURIComponent(new Date(Date.now() - 3600_000).toISOString())}&limit=200`);
    expect(recent.items.length).toBe(200);
    expect(recent.items[0]).toMatchObject({ hash: expect.stringMatching(/^[0-9a-f]{64}$/), prev_hash: expect.stringMatching(/^[0-9a-f]{64}$/) });

    for (const query of ['limit=0', 'limit=201', 'outcome=maybe', 'from=yesterday', "action=auth'%20or%201=1", 'cursor=-1', 'extra=1']) {
      const response = await t.app.inject({ method: 'GET', url: `/api/anime/admin/audit?${query}`, headers: admin.authorization });
      expect({ query, status: response.statusCode }).toEqual({ query, status: 400 });
    }
  });

  it('audit export emits valid JSON lines, filtered by time', async () => {
    await t.app.services.audit.flush();
    const all = await runCli(['audit', 'export'], storage());
    expect(all.code).toBe(0);
    const lines = all.stdout.trim().split('\n').map((line) => JSON.parse(line) as { seq: number; detail: unknown; hash: string });
    const count = await t.app.services.store.db.selectFrom('audit_log').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
    expect(lines).toHaveLength(Number(count.n));
    expect(lines.map((l) => l.seq)).toEqual(lines.map((_, i) => i + 1));
    expect(typeof lines.find((l) => l.detail !== null)!.detail).toBe('object');
    const none = await runCli(['audit', 'export', '--to', '2001-01-01T00:00:00Z'], storage());
    expect(none).toMatchObject({ code: 0, stdout: '' });
    const bad = await runCli(['audit', 'export', '--from', 'last tuesday'], storage());
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('celforge: --from: "last tuesday" is not an ISO-8601 time');
  });

  it('prune removes old rows, records itself, and verify stays green; moving the anchor or deleting past it is found', async () => {
    const store = t.app.services.store;
    await t.app.services.audit.flush();
    // Rows written 400 days ago (a real chain, just old) followed by today's.
    const old = new Date(Date.now() - 400 * 86_400_000);
    await appendRows(store, Array.from({ length: 5 }, (_, i) => pendingRow({ action: 'test.old', outcome: 'success', target: String(i) }, old)));
    t.app.services.audit.record({ action: 'test.recent', outcome: 'success' });
    await t.app.services.audit.flush();
    const before = await rows();
    const lastOld = before.filter((r) => r.action === 'test.old').at(-1)!;

    const pruned = await runCli(['audit', 'prune', '--days', '30'], storage());
    expect(pruned.stderr).toBe('');
    expect(pruned.stdout.trim()).toBe(`pruned ${lastOld.seq} rows older than 30 days (through row ${lastOld.seq})`);
    const after = await rows();
    expect(Number(after[0]!.seq)).toBe(Number(lastOld.seq) + 1);
    const event = after.at(-1)!;
    expect(event.action).toBe('audit.prune');
    expect(JSON.parse(event.detail!)).toMatchObject({ through_seq: Number(lastOld.seq), last_hash: lastOld.hash, deleted: Number(lastOld.seq) });

    const verified = await runCli(['audit', 'verify'], storage());
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain(`${after.length} rows, chain intact`);
    expect((await runCli(['audit', 'prune', '--days', '30'], storage())).stdout.trim()).toBe('nothing older than 30 days');

    const { db } = store;
    const first = Number(after[0]!.seq);
    await db.deleteFrom('audit_log').where('seq', '=', first).execute();
    const gap = await runCli(['audit', 'verify'], storage());
    expect({ code: gap.code, stderr: gap.stderr.trim() }).toEqual({ code: 1, stderr: `audit trail broken: row ${first} missing (gap after ${first - 1})` });
    // Hiding that deletion by moving the anchor is found too: no prune event vouches for it.
    await db.updateTable('audit_head').set({ anchor_seq: first, anchor_hash: after[0]!.hash }).execute();
    const moved = await runCli(['audit', 'verify'], storage());
    expect({ code: moved.code, stderr: moved.stderr.trim() }).toEqual({
      code: 1,
      stderr: `audit trail broken: row ${first + 1}: the retention anchor does not match the last audit.prune event`,
    });
  }, 120_000);
});

describeEachDialect('audit writer', (dialect) => {
  const t = useTestApp(dialect);
  it('never throws into the caller, and keeps events while the store is down until it is back', async () => {
    const store = openStore({ dataDir: t.config.dataDir, databaseUrl: t.config.databaseUrl });
    const errors: string[] = [];
    const auditor = new StoreAuditor(store, { retryMs: 10, onError: (message) => errors.push(message) });
    await sql`select 1`.execute(store.db);
    await store.close(); // every write now fails
    expect(() => auditor.record({ action: 'test.down', outcome: 'success' })).not.toThrow();
    await auditor.flush();
    expect(auditor.pending).toBe(1);
    expect(errors[0]).toMatch(/^audit: could not store 1 events; retrying/);
    const live = new StoreAuditor(t.app.services.store);
    live.record({ action: 'test.up', outcome: 'success' });
    await live.flush();
    expect(live.pending).toBe(0);
  });

  it('details JSON cannot carry as they are (a bigint, a cycle) are stored masked and bounded; the events around them are kept', async () => {
    const { store } = t.app.services;
    const errors: string[] = [];
    const auditor = new StoreAuditor(store, { onError: (message) => errors.push(message) });
    const cycle: Record<string, unknown> = { name: 'loop' };
    cycle.self = cycle;
    auditor.record({ action: 'test.odd', outcome: 'success', target: 'before' });
    auditor.record({ action: 'test.odd', outcome: 'success', target: 'bigint', detail: { size: 12345678901234567890n, token: 'tk-secret' } });
    auditor.record({ action: 'test.odd', outcome: 'success', target: 'cycle', detail: cycle });
    auditor.record({ action: 'test.odd', outcome: 'success', target: 'after', detail: { status: 200 } });
    await auditor.close();
    const rows = await store.db.selectFrom('audit_log').select(['target', 'detail']).where('action', '=', 'test.odd').orderBy('seq').execute();
    expect(rows.map((row) => row.target)).toEqual(['before', 'bigint', 'cycle', 'after']);
    expect(JSON.parse(rows[1]!.detail!)).toEqual({ size: '12345678901234567890', token: '[masked]' });
    expect(JSON.parse(rows[2]!.detail!)).toEqual({ name: 'loop', self: { name: 'loop', self: { name: 'loop', self: { name: 'loop', self: '[…]' } } } });
    expect(JSON.parse(rows[3]!.detail!)).toEqual({ status: 200 });
    expect(errors).toEqual([]);
    expect((await verifyTrail(store)).ok).toBe(true);
  });

  it('a refused write keeps the events and says so; once the store takes them they land in order and the chain is whole', async () => {
    const { store } = t.app.services;
    const refuse = async (on: boolean) => {
      if (dialect === 'sqlite') {
        await sql.raw(on ? "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'refused'); END" : 'DROP TRIGGER audit_refuse').execute(store.db);
      } else if (on) {
        await sql.raw("CREATE FUNCTION audit_refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql").execute(store.db);
        await sql.raw('CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_refuse()').execute(store.db);
      } else {
        await sql.raw('DROP TRIGGER audit_refuse ON audit_log').execute(store.db);
        await sql.raw('DROP FUNCTION audit_refuse()').execute(store.db);
      }
    };
    const errors: string[] = [];
    const auditor = new StoreAuditor(store, { retryMs: 10, onError: (message) => errors.push(message) });
    await refuse(true);
    for (const target of ['first', 'second', 'third']) auditor.record({ action: 'test.refused', outcome: 'success', target });
    await auditor.flush();
    expect(auditor.pending).toBe(3);
    expect(errors[0]).toMatch(/^audit: could not store 3 events; retrying/);
    expect(await store.db.selectFrom('audit_log').select('seq').where('action', '=', 'test.refused').execute()).toEqual([]);

    await refuse(false);
    await auditor.flush();
    expect(auditor.pending).toBe(0);
    const stored = await store.db.selectFrom('audit_log').select('target').where('action', '=', 'test.refused').orderBy('seq').execute();
    expect(stored.map((row) => row.target)).toEqual(['first', 'second', 'third']);
    expect((await verifyTrail(store)).ok).toBe(true);
    await auditor.close();
  });
});
