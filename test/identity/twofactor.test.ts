import { generate } from 'otplib';
import { expect, it } from 'vitest';
import { useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { registerAndLogin, signIn, TEST_PASSWORD } from '../support/users.js';

const codeAt = (secret: string, offsetSeconds = 0) => generate({ secret, epoch: Math.floor(Date.now() / 1000) + offsetSeconds });

describeEachDialect('identity: TOTP, recovery codes, step-up, admin user endpoints', (dialect) => {
  const t = useTestApp(dialect);
  let ip = 0;
  const post = (url: string, authorization: string | undefined, payload?: object) =>
    t.app.inject({ method: 'POST', url, headers: authorization ? { authorization } : {}, payload, remoteAddress: `10.20.0.${++ip % 250}` });
  const login = (email: string, otp?: string) => post('/api/auth/login', undefined, { email, password: TEST_PASSWORD, ...(otp && { otp }) });

  /** A user with TOTP on; enabling spends the current step. */
  async function enrolled(role: 'admin' | 'user' = 'user') {
    const user = await registerAndLogin(t.app, { role });
    const setup = await post('/api/auth/totp/setup', user.authorization.authorization);
    expect(setup.statusCode).toBe(200);
    const { secret, otpauth_uri, qr_svg } = setup.json() as { secret: string; otpauth_uri: string; qr_svg: string };
    expect(otpauth_uri).toContain(`secret=${secret}`);
    expect(qr_svg).toMatch(/^<svg/);
    const enable = await post('/api/auth/totp/enable', user.authorization.authorization, { code: await codeAt(secret), password: TEST_PASSWORD });
    expect(enable.statusCode).toBe(200);
    const recovery = enable.json().recovery_codes as string[];
    return { ...user, secret, recovery };
  }

  it('keeps the TOTP secret encrypted at rest, bound to the user', async () => {
    const user = await enrolled();
    expect(user.recovery).toHaveLength(10);
    const row = await t.app.services.store.db.selectFrom('users').selectAll().where('id', '=', user.userId).executeTakeFirstOrThrow();
    expect(row.totp_enabled).toBe(1);
    expect(row.totp_secret).toMatch(/^v1\./);
    expect(row.totp_secret).not.toContain(user.secret);
    expect(t.app.services.encryptor.decryptText(row.totp_secret!, user.userId)).toBe(user.secret);
    expect(() => t.app.services.encryptor.decryptText(row.totp_secret!, 'another-user')).toThrow();
    const codes = await t.app.services.store.db.selectFrom('recovery_codes').select('code_hash').where('user_id', '=', user.userId).execute();
    expect(codes).toHaveLength(10);
    for (const code of user.recovery) expect(JSON.stringify(codes)).not.toContain(code.replace('-', ''));
  });

  it('login asks for the code, and a TOTP code works once', async () => {
    const user = await enrolled();
    const missing = await login(user.email);
    expect(missing.statusCode).toBe(401);
    expect(missing.json()).toMatchObject({ type: 'urn:celforge:problem:otp-required' });
    expect((await login(user.email, '000000')).json()).toMatchObject({ type: 'urn:celforge:problem:invalid-credentials' });
    const next = await codeAt(user.secret, 30);
    const first = await login(user.email, next);
    expect(first.statusCode).toBe(200);
    const session = await t.app.services.store.db.selectFrom('sessions').select('mfa_at').where('id', '=', first.json().session_id).executeTakeFirstOrThrow();
    expect(session.mfa_at).not.toBeNull();
    const replay = await login(user.email, next);
    expect(replay.statusCode).toBe(401);
    // the code of the step already spent at enrolment is refused too
    expect((await login(user.email, await codeAt(user.secret))).statusCode).toBe(401);
  });

  it('two simultaneous uses of one code: at most one passes', async () => {
    const user = await enrolled();
    const next = await codeAt(user.secret, 30);
    const results = await Promise.all([login(user.email, next), login(user.email, next), login(user.email, next)]);
    expect(results.filter((r) => r.statusCode === 200).length).toBeLessThanOrEqual(1);
  });

  it('a recovery code works once', async () => {
    const user = await enrolled();
    const code = user.recovery[0]!;
    expect((await login(user.email, code.toUpperCase())).statusCode).toBe(200);
    expect((await login(user.email, code)).statusCode).toBe(401);
    expect((await login(user.email, user.recovery[1]!)).statusCode).toBe(200);
  });

  it('admin routes need 2FA: a clear problem for admins without it', async () => {
    const admin = await signIn(t.app, { role: 'admin', steppedUp: false });
    const response = await t.app.inject({ method: 'GET', url: '/api/auth/users', headers: admin.authorization });
    expect(response.statusCode).toBe(403);
    expect(response.json()).toMatchObject({ type: 'urn:celforge:problem:enrol-2fa' });
    const user = await signIn(t.app);
    const forbidden = await t.app.inject({ method: 'GET', url: '/api/auth/users', headers: user.authorization });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json()).toMatchObject({ type: 'urn:celforge:problem:forbidden' });
  });

  it('admin routes need a second factor verified in the last 15 minutes (step-up), once per code', async () => {
    const admin = await enrolled('admin');
    const users = () => t.app.inject({ method: 'GET', url: '/api/auth/users', headers: admin.authorization });
    expect((await users()).statusCode).toBe(200); // enrolling verified the factor in this session
    const old = new Date(Date.now() - 16 * 60_000).toISOString();
    await t.app.services.store.db.updateTable('sessions').set({ mfa_at: old }).where('id', '=', admin.sessionId).execute();
    const stale = await users();
    expect(stale.statusCode).toBe(403);
    expect(stale.json()).toMatchObject({ type: 'urn:celforge:problem:step-up-required' });
    const code = await codeAt(admin.secret, 30);
    const step = await post('/api/auth/step-up', admin.authorization.authorization, { code });
    expect(step.statusCode).toBe(200);
    expect((await users()).statusCode).toBe(200);
    const replay = await post('/api/auth/step-up', admin.authorization.authorization, { code });
    expect(replay.statusCode).toBe(403);
    expect(replay.json()).toMatchObject({ type: 'urn:celforge:problem:invalid-code' });
    expect((await post('/api/auth/step-up', admin.authorization.authorization, { code: admin.recovery[0]! })).statusCode).toBe(200);
    expect((await post('/api/auth/step-up', admin.authorization.authorization, { code: admin.recovery[0]! })).statusCode).toBe(403);
  });

  it('admin user endpoints: create, page, change role, disable, end sessions', async () => {
    const admin = await enrolled('admin');
    const auth = { authorization: admin.authorization.authorization };
    const weak = await t.app.inject({ method: 'POST', url: '/api/auth/users', headers: auth, payload: { email: 'new@example.test', password: 'password1234', role: 'user' } });
    expect(weak.statusCode).toBe(422);
    const created = await t.app.inject({
      method: 'POST',
      url: '/api/auth/users',
      headers: auth,
      payload: { email: 'New.Person@Example.test', password: TEST_PASSWORD, role: 'user' },
    });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ email: 'new.person@example.test', role: 'user', disabled: false });
    expect(created.body).not.toContain('argon2');
    const dup = await t.app.inject({ method: 'POST', url: '/api/auth/users', headers: auth, payload: { email: 'new.person@example.test', password: TEST_PASSWORD, role: 'user' } });
    expect(dup.statusCode).toBe(409);

    const page = await t.app.inject({ method: 'GET', url: '/api/auth/users?limit=1', headers: auth });
    expect(page.json().items).toHaveLength(1);
    expect(page.json().next).toEqual(expect.any(String));
    expect(page.body).not.toContain('password_hash');

    const target = await registerAndLogin(t.app);
    const me = () => t.app.inject({ method: 'GET', url: '/api/auth/me', headers: target.authorization });
    const patch = (id: string, payload: object) => t.app.inject({ method: 'PATCH', url: `/api/auth/users/${id}`, headers: auth, payload });
    expect((await patch(target.userId, { role: 'admin' })).json()).toMatchObject({ role: 'admin' });
    expect((await me()).statusCode).toBe(401);
    expect((await patch(target.userId, { disabled: true })).json()).toMatchObject({ disabled: true });
    expect((await patch('00000000-0000-0000-0000-000000000000', { disabled: true })).statusCode).toBe(404);
    expect((await patch(admin.userId, { role: 'user' })).statusCode).toBe(409);
    expect((await patch(target.userId, { role: 'root' })).statusCode).toBe(400);
    expect((await patch(target.userId, {})).statusCode).toBe(400);

    const other = await registerAndLogin(t.app);
    const end = await t.app.inject({ method: 'DELETE', url: `/api/auth/users/${other.userId}/sessions`, headers: auth });
    expect(end.json()).toEqual({ revoked: 1 });
    expect((await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: other.authorization })).statusCode).toBe(401);
  });

  it('turning TOTP on needs the password again: a stolen session alone cannot lock its owner out', async () => {
    const user = await registerAndLogin(t.app);
    const { secret } = (await post('/api/auth/totp/setup', user.authorization.authorization)).json() as { secret: string };
    const noPassword = await post('/api/auth/totp/enable', user.authorization.authorization, { code: await codeAt(secret) });
    expect(noPassword.statusCode).toBe(400);
    expect(noPassword.json()).toMatchObject({ type: 'urn:celforge:problem:validation', errors: [{ pointer: '/password' }] });
    const wrong = await post('/api/auth/totp/enable', user.authorization.authorization, { code: await codeAt(secret), password: 'not the password at all' });
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json()).toMatchObject({ type: 'urn:celforge:problem:wrong-password' });
    const row = await t.app.services.store.db.selectFrom('users').select('totp_enabled').where('id', '=', user.userId).executeTakeFirstOrThrow();
    expect(row.totp_enabled).toBe(0);
    expect((await login(user.email)).statusCode).toBe(200); // still signs in with the password alone
    const right = await post('/api/auth/totp/enable', user.authorization.authorization, { code: await codeAt(secret), password: TEST_PASSWORD });
    expect(right.statusCode).toBe(200);
  });

  it('an admin resets a user\'s 2FA: step-up required, audited, the user signs in with the password again', async () => {
    const user = await enrolled();
    const reset = (headers: Record<string, string>) => t.app.inject({ method: 'DELETE', url: `/api/auth/users/${user.userId}/totp`, headers });
    const notSteppedUp = await signIn(t.app, { role: 'admin', steppedUp: false });
    expect((await reset(notSteppedUp.authorization)).json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:enrol-2fa' });
    expect((await reset(user.authorization)).statusCode).toBe(403);
    expect((await login(user.email)).json()).toMatchObject({ type: 'urn:celforge:problem:otp-required' });

    const admin = await enrolled('admin');
    const old = new Date(Date.now() - 16 * 60_000).toISOString();
    await t.app.services.store.db.updateTable('sessions').set({ mfa_at: old }).where('id', '=', admin.sessionId).execute();
    expect((await reset(admin.authorization)).json()).toMatchObject({ status: 403, type: 'urn:celforge:problem:step-up-required' });
    await post('/api/auth/step-up', admin.authorization.authorization, { code: admin.recovery[0]! });
    expect((await reset(admin.authorization)).statusCode).toBe(204);
    expect((await login(user.email)).statusCode).toBe(200);
    const codes = await t.app.services.store.db.selectFrom('recovery_codes').select('code_hash').where('user_id', '=', user.userId).execute();
    expect(codes).toHaveLength(0);
    await t.app.services.audit.flush();
    const rows = await t.app.services.store.db.selectFrom('audit_log').selectAll().where('action', '=', 'admin.user.2fa.reset').where('target', '=', user.userId).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actor_id: admin.userId, outcome: 'success' });
  });

  it('turning TOTP off needs a valid code', async () => {
    const user = await enrolled();
    expect((await post('/api/auth/totp/disable', user.authorization.authorization, { code: '123456' })).statusCode).toBe(403);
    expect((await post('/api/auth/totp/disable', user.authorization.authorization, { code: user.recovery[2]! })).statusCode).toBe(204);
    expect((await login(user.email)).statusCode).toBe(200);
  });
  it('counts the recovery codes left, and new ones need a code and replace the old, audited', async () => {
    const user = await enrolled();
    const status = () => t.app.inject({ method: 'GET', url: '/api/auth/totp', headers: user.authorization });
    expect((await status()).json()).toEqual({ enabled: true, recovery_codes_left: 10 });
    expect((await login(user.email, user.recovery[0]!)).statusCode).toBe(200);
    expect((await status()).json()).toEqual({ enabled: true, recovery_codes_left: 9 });

    const wrong = await post('/api/auth/totp/recovery-codes', user.authorization.authorization, { code: '123456' });
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json()).toMatchObject({ type: 'urn:celforge:problem:invalid-code' });
    expect((await status()).json()).toEqual({ enabled: true, recovery_codes_left: 9 });

    const fresh = await post('/api/auth/totp/recovery-codes', user.authorization.authorization, { code: await codeAt(user.secret, 30) });
    expect(fresh.statusCode).toBe(200);
    const codes = fresh.json().recovery_codes as string[];
    expect(codes).toHaveLength(10);
    expect(codes.filter((code) => user.recovery.includes(code))).toEqual([]);
    expect((await status()).json()).toEqual({ enabled: true, recovery_codes_left: 10 });
    expect((await login(user.email, user.recovery[1]!)).statusCode).toBe(401);
    expect((await login(user.email, codes[0]!)).statusCode).toBe(200);

    await t.app.services.audit.flush();
    const rows = await t.app.services.store.db.selectFrom('audit_log').select(['outcome']).where('action', '=', 'auth.2fa.recovery-codes').where('actor_id', '=', user.userId).execute();
    expect(rows.map((r) => r.outcome).sort()).toEqual(['failure', 'success']);
  });

  it('without 2FA there are no recovery codes to renew', async () => {
    const user = await registerAndLogin(t.app);
    expect((await t.app.inject({ method: 'GET', url: '/api/auth/totp', headers: user.authorization })).json()).toEqual({ enabled: false, recovery_codes_left: 0 });
    const refused = await post('/api/auth/totp/recovery-codes', user.authorization.authorization, { code: '123456' });
    expect(refused.statusCode).toBe(409);
    expect(await t.app.services.store.db.selectFrom('recovery_codes').select('code_hash').where('user_id', '=', user.userId).execute()).toEqual([]);
  });
});
