import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Principal } from '../../src/access/principal.js';
import { HttpProblem } from '../../src/http/problem.js';
import { IdentityService, STEP_UP_SECONDS, type IdentityDeps } from '../../src/identity/service.js';
import { insertSession } from '../../src/identity/store.js';
import { addUser, sqliteStore } from './memory-store.js';

const T0 = Date.parse('2026-03-01T12:00:00Z');
let store: Awaited<ReturnType<typeof sqliteStore>>;
let passkeyHolders = new Set<string>();
let identity: IdentityService;

beforeAll(async () => {
  store = await sqliteStore();
  // assertSteppedUp reads the store and asks the passkeys; nothing else of the service runs here
  identity = new IdentityService({ store, passkeys: { has: async (id: string) => passkeyHolders.has(id) } } as unknown as IdentityDeps);
});
afterAll(() => store.drop());
afterEach(() => {
  vi.useRealTimers();
  passkeyHolders = new Set();
});

let sessions = 0;
async function sessionFor(userId: string, mfa: { at: number | null; via?: 'totp' | 'passkey' | 'provider' }): Promise<Principal> {
  const id = `s-${++sessions}`;
  const at = new Date(T0 - 3_600_000).toISOString();
  await insertSession(store.db, {
    id,
    user_id: userId,
    created_at: at,
    last_seen_at: at,
    expires_at: new Date(T0 + 86_400_000).toISOString(),
    revoked_at: null,
    revoked_reason: null,
    mfa_at: mfa.at === null ? null : new Date(mfa.at).toISOString(),
    mfa_via: mfa.via ?? null,
    user_agent: null,
    ip: null,
  });
  return { userId, email: `${userId}@celforge.example`, role: 'admin', sessionId: id, via: 'token', scopes: null };
}

async function outcome(principal: Principal): Promise<string> {
  try {
    await identity.assertSteppedUp(principal);
    return 'ok';
  } catch (error) {
    expect(error).toBeInstanceOf(HttpProblem);
    expect((error as HttpProblem).status).toBe(403);
    return (error as HttpProblem).slug;
  }
}

describe('step-up', () => {
  it(`holds for ${STEP_UP_SECONDS / 60} minutes after the second factor, to the millisecond`, async () => {
    await addUser(store, 'totp-user', { totp_enabled: 1 });
    const principal = await sessionFor('totp-user', { at: T0, via: 'totp' });
    vi.useFakeTimers({ toFake: ['Date'], now: T0 });
    expect(await outcome(principal)).toBe('ok');
    vi.setSystemTime(T0 + STEP_UP_SECONDS * 1000);
    expect(await outcome(principal)).toBe('ok');
    vi.setSystemTime(T0 + STEP_UP_SECONDS * 1000 + 1);
    expect(await outcome(principal)).toBe('step-up-required');
  });

  it('asks for a step-up in a session that never did one', async () => {
    await addUser(store, 'never-stepped', { totp_enabled: 1 });
    vi.useFakeTimers({ toFake: ['Date'], now: T0 });
    expect(await outcome(await sessionFor('never-stepped', { at: null }))).toBe('step-up-required');
  });

  it('asks an admin without a second factor to enrol one first, stepped up or not', async () => {
    await addUser(store, 'no-factor');
    vi.useFakeTimers({ toFake: ['Date'], now: T0 });
    expect(await outcome(await sessionFor('no-factor', { at: T0 - 1000, via: 'totp' }))).toBe('enrol-2fa');
    expect(await outcome(await sessionFor('no-factor', { at: null }))).toBe('enrol-2fa');
  });

  it('counts a passkey as the second factor', async () => {
    await addUser(store, 'passkey-user');
    passkeyHolders.add('passkey-user');
    const principal = await sessionFor('passkey-user', { at: T0, via: 'passkey' });
    vi.useFakeTimers({ toFake: ['Date'], now: T0 + 60_000 });
    expect(await outcome(principal)).toBe('ok');
    vi.setSystemTime(T0 + STEP_UP_SECONDS * 1000 + 1);
    expect(await outcome(principal)).toBe('step-up-required');
  });

  it('counts a factor asserted by the OpenID provider only while it is recent', async () => {
    await addUser(store, 'sso-user');
    const principal = await sessionFor('sso-user', { at: T0, via: 'provider' });
    vi.useFakeTimers({ toFake: ['Date'], now: T0 + 1000 });
    expect(await outcome(principal)).toBe('ok');
    // once stale, nothing enrolled here remains, so the answer is to enrol rather than to step up
    vi.setSystemTime(T0 + STEP_UP_SECONDS * 1000 + 1);
    expect(await outcome(principal)).toBe('enrol-2fa');
  });

  it('leaves API keys (no session) to their scopes and signatures', async () => {
    await expect(identity.assertSteppedUp({ userId: 'nobody', email: 'x', role: 'admin', sessionId: null, via: 'api-key', scopes: ['admin'] })).resolves.toBeUndefined();
  });
});
