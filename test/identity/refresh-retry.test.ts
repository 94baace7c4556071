import { createHash } from 'node:crypto';
import { parseSetCookie } from 'cookie';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { REFRESH_RETRY_SECONDS } from '../../src/identity/service.js';
import { useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { startServer, type RunningServer } from '../support/server.js';
import { TEST_PASSWORD } from '../support/users.js';

const ORIGIN = 'http://studio.test:8331';
const studioHeaders = { 'x-celforge-studio': '1', origin: ORIGIN };
const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/**
 * A refresh whose answer was lost (the tab closed or reloaded mid-request) is retried with the
 * token it spent: within a short window, while the successor is unused, that is a retry and not a
 * stolen token. Everything else stays reuse and ends the session.
 */
describeEachDialect('identity: a retried refresh after a lost answer', (dialect) => {
  const t = useTestApp(dialect, { publicUrl: ORIGIN });
  /** a `celforge serve` process of its own on the same store */
  let other: RunningServer;
  beforeAll(async () => {
    other = await startServer({ dataDir: t.config.dataDir, ...(t.config.databaseUrl && { databaseUrl: t.config.databaseUrl }) }, { env: { CELFORGE_PUBLIC_URL: ORIGIN } });
  });
  afterAll(async () => {
    await other?.stop();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  let n = 0;
  const signIn = async () => {
    const email = `retry-${dialect}-${++n}@example.test`;
    await t.app.services.identity.createUser({ email, password: TEST_PASSWORD, role: 'user' });
    const login = await t.app.inject({ method: 'POST', url: '/api/auth/browser/login', headers: studioHeaders, payload: { email, password: TEST_PASSWORD }, remoteAddress: `10.8.0.${n}` });
    expect(login.statusCode).toBe(200);
    return { cookie: cookieOf(login), sessionId: login.json().session_id as string, userId: (await t.app.services.identity.findUserByEmail(email))!.id };
  };
  const refresh = (cookie: string) =>
    t.app.inject({ method: 'POST', url: '/api/auth/browser/refresh', headers: { ...studioHeaders, cookie: `celforge_refresh=${cookie}` } });
  /** the same request to the other process, answered in the shape of an injected one */
  const refreshElsewhere = async (cookie: string) => {
    const response = await fetch(`${other.url}/api/auth/browser/refresh`, { method: 'POST', headers: { ...studioHeaders, cookie: `celforge_refresh=${cookie}` } });
    const body = await response.text();
    return { statusCode: response.status, headers: { 'set-cookie': response.headers.getSetCookie() }, json: () => JSON.parse(body) };
  };
  const me = (token: string) => t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } });
  const cookieOf = (response: { headers: Record<string, unknown> }) => {
    const line = response.headers['set-cookie'];
    return parseSetCookie(String(Array.isArray(line) ? line[0] : line)).value!;
  };
  const liveTokens = (sessionId: string) =>
    t.app.services.store.db.selectFrom('refresh_tokens').select('token_hash').where('session_id', '=', sessionId).where('used_at', 'is', null).execute();
  const session = (sessionId: string) => t.app.services.store.db.selectFrom('sessions').selectAll().where('id', '=', sessionId).executeTakeFirstOrThrow();
  const audited = async (action: string, sessionId: string) => {
    await t.app.services.audit.flush();
    const rows = await t.app.services.store.db.selectFrom('audit_log').select(['outcome', 'detail']).where('action', '=', action).where('target', '=', sessionId).execute();
    return rows.map((row) => ({ outcome: row.outcome, detail: typeof row.detail === 'string' ? JSON.parse(row.detail) : row.detail }));
  };
  const expectRefused = (response: { statusCode: number; json: () => unknown }) => {
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ type: 'urn:celforge:problem:invalid-grant', status: 401 });
  };

  it('the spent token again, its successor unused: an ordinary refresh, and the family keeps one live token', async () => {
    const { cookie: first, sessionId } = await signIn();
    const lost = await refresh(first);
    expect(lost.statusCode).toBe(200);
    const unseen = cookieOf(lost);

    const retried = await refresh(first);
    expect(retried.statusCode).toBe(200);
    expect(Object.keys(retried.json()).sort()).toEqual(['access_token', 'expires_in', 'session_id', 'token_type']);
    expect(retried.json().session_id).toBe(sessionId);
    const fresh = cookieOf(retried);
    expect(fresh).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect([first, unseen]).not.toContain(fresh);
    expect((await me(retried.json().access_token)).json()).toMatchObject({ id: expect.any(String) });
    expect(await liveTokens(sessionId)).toEqual([{ token_hash: sha256(fresh) }]);
    expect(await audited('auth.refresh.retry', sessionId)).toEqual([{ outcome: 'success', detail: { after_ms: expect.any(Number) } }]);
    expect(await audited('auth.refresh.reuse', sessionId)).toEqual([]);

    // The new token rotates as usual; the session is alive.
    const next = await refresh(fresh);
    expect(next.statusCode).toBe(200);
    expect((await session(sessionId)).revoked_at).toBeNull();
  });

  it('the withdrawn successor is refused afterwards: presenting it is reuse and ends the session', async () => {
    const { cookie: first, sessionId } = await signIn();
    const unseen = cookieOf(await refresh(first));
    const retried = await refresh(first);
    expect(retried.statusCode).toBe(200);

    expectRefused(await refresh(unseen));
    expect(await session(sessionId)).toMatchObject({ revoked_reason: 'refresh-reuse' });
    expectRefused(await refresh(cookieOf(retried)));
    expect((await me(retried.json().access_token)).statusCode).toBe(401);
    expect(await audited('auth.refresh.reuse', sessionId)).toHaveLength(1);
  });

  it('a second retry of the same rotation is refused, and the session goes on', async () => {
    const { cookie: first, sessionId } = await signIn();
    await refresh(first);
    const retried = await refresh(first);
    expect(retried.statusCode).toBe(200);

    const again = await refresh(first);
    expectRefused(again);
    expect((await session(sessionId)).revoked_at).toBeNull();
    expect(await liveTokens(sessionId)).toEqual([{ token_hash: sha256(cookieOf(retried)) }]);
    expect((await me(retried.json().access_token)).statusCode).toBe(200);
    expect(await audited('auth.refresh.retry', sessionId)).toEqual([
      { outcome: 'success', detail: { after_ms: expect.any(Number) } },
      { outcome: 'denied', detail: { after_ms: expect.any(Number), reason: 'already-retried' } },
    ]);
    expect((await refresh(cookieOf(retried))).statusCode).toBe(200);
  });

  it('once the successor has been used, the spent token is reuse: the whole family ends', async () => {
    const { cookie: first, sessionId } = await signIn();
    const second = cookieOf(await refresh(first));
    const third = await refresh(second);
    expect(third.statusCode).toBe(200);

    expectRefused(await refresh(first));
    expect(await session(sessionId)).toMatchObject({ revoked_reason: 'refresh-reuse' });
    expect(await liveTokens(sessionId)).toHaveLength(1); // left in place, but dead with its session
    expectRefused(await refresh(cookieOf(third)));
    expect((await me(third.json().access_token)).statusCode).toBe(401);
    expect(await audited('auth.refresh.retry', sessionId)).toEqual([]);
    expect(await audited('auth.refresh.reuse', sessionId)).toEqual([{ outcome: 'denied', detail: null }]);
  });

  it(`the window is ${REFRESH_RETRY_SECONDS} s: just inside it is a retry, past it reuse`, async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const inside = await signIn();
    await refresh(inside.cookie);
    vi.setSystemTime(Date.now() + (REFRESH_RETRY_SECONDS - 2) * 1000);
    expect((await refresh(inside.cookie)).statusCode).toBe(200);
    expect((await session(inside.sessionId)).revoked_at).toBeNull();

    const outside = await signIn();
    const successor = cookieOf(await refresh(outside.cookie));
    vi.setSystemTime(Date.now() + (REFRESH_RETRY_SECONDS + 1) * 1000);
    expectRefused(await refresh(outside.cookie));
    expect(await session(outside.sessionId)).toMatchObject({ revoked_reason: 'refresh-reuse' });
    expectRefused(await refresh(successor));
    expect(await audited('auth.refresh.retry', outside.sessionId)).toEqual([]);
  });

  it('a retry whose clock reads a moment before the rotation (it started first) is still a retry, once', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { cookie, sessionId } = await signIn();
    const rotatedAt = Date.now();
    expect((await refresh(cookie)).statusCode).toBe(200);
    vi.setSystemTime(rotatedAt - 5);
    const retried = await refresh(cookie);
    expect(retried.statusCode).toBe(200);
    expect((await session(sessionId)).revoked_at).toBeNull();
    expect(await liveTokens(sessionId)).toEqual([{ token_hash: sha256(cookieOf(retried)) }]);
    expectRefused(await refresh(cookie));
    expect((await session(sessionId)).revoked_at).toBeNull();
    expect((await refresh(cookieOf(retried))).statusCode).toBe(200);
  });

  it('concurrent retries of one spent token in two processes: exactly one wins, the family keeps one live token', async () => {
    for (let round = 0; round < 3; round++) {
      const { cookie: first, sessionId } = await signIn();
      expect((await refresh(first)).statusCode).toBe(200);

      const answers = await Promise.all([0, 1, 2, 3].map((i) => (i % 2 ? refreshElsewhere(first) : refresh(first))));
      const won = answers.filter((answer) => answer.statusCode === 200);
      expect(won, JSON.stringify(answers.map((a) => a.statusCode))).toHaveLength(1);
      for (const lost of answers.filter((answer) => answer.statusCode !== 200)) expectRefused(lost);

      expect((await session(sessionId)).revoked_at).toBeNull();
      expect(await liveTokens(sessionId)).toEqual([{ token_hash: sha256(cookieOf(won[0]!)) }]);
      expect((await me(won[0]!.json().access_token)).statusCode).toBe(200);
      // The other process writes its audit rows in its own time.
      await expect.poll(async () => (await audited('auth.refresh.retry', sessionId)).map((r) => r.outcome).sort()).toEqual(['denied', 'denied', 'denied', 'success']);
      expect((await refreshElsewhere(cookieOf(won[0]!))).statusCode).toBe(200);
    }
  });

  it('the body-based refresh of API clients gets the same retry', async () => {
    const email = `retry-api-${dialect}@example.test`;
    await t.app.services.identity.createUser({ email, password: TEST_PASSWORD, role: 'user' });
    const login = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password: TEST_PASSWORD }, remoteAddress: '10.8.1.1' });
    const spent = login.json().refresh_token as string;
    const body = (refresh_token: string) => t.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refresh_token } });
    expect((await body(spent)).statusCode).toBe(200);
    const retried = await body(spent);
    expect(retried.statusCode).toBe(200);
    expect(await liveTokens(login.json().session_id)).toEqual([{ token_hash: sha256(retried.json().refresh_token) }]);
  });
});
