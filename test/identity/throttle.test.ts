import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_ACCOUNT_DELAY_MS, MemoryLoginThrottle, RedisLoginThrottle, type LoginThrottle, type ThrottleKey } from '../../src/identity/throttle.js';

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const redis = new Redis(REDIS_URL, { keyPrefix: `celforge-test-${randomBytes(6).toString('hex')}:` });
afterAll(async () => {
  const keys = await redis.keys(`${redis.options.keyPrefix}*`);
  if (keys.length > 0) await redis.del(...keys.map((k) => k.slice(redis.options.keyPrefix!.length)));
  redis.disconnect();
});

const login = (account: string, ip: string): ThrottleKey[] => [
  { kind: 'pair', id: `${account}:${ip}` },
  { kind: 'client', id: ip },
  { kind: 'account', id: account },
];

for (const [name, make] of [
  ['memory', () => new MemoryLoginThrottle()],
  ['redis', () => new RedisLoginThrottle(redis)],
] as const) {
  describe(`login throttle (${name})`, () => {
    const throttle: () => LoginThrottle = make;

    it('the account-wide count only delays, at most a few seconds, and never for an address that signed in before', async () => {
      const t = throttle();
      const account = `acct-${randomBytes(4).toString('hex')}`;
      expect(await t.attempt(login(account, 'home'))).toEqual({ allowed: true, delayMs: 0 });
      await t.succeeded(login(account, 'home'));
      for (let i = 0; i < 40; i++) expect((await t.attempt(login(account, `bot-${i}`))).allowed).toBe(true);
      const fresh = await t.attempt(login(account, 'hotel'));
      expect(fresh).toMatchObject({ allowed: true });
      expect(fresh.allowed && fresh.delayMs).toBeGreaterThan(0);
      expect(fresh.allowed && fresh.delayMs).toBeLessThanOrEqual(MAX_ACCOUNT_DELAY_MS);
      expect(await t.attempt(login(account, 'home'))).toEqual({ allowed: true, delayMs: 0 });
    });

    it('one address guessing one account is refused after five tries; another address is not', async () => {
      const t = throttle();
      const account = `acct-${randomBytes(4).toString('hex')}`;
      for (let i = 0; i < 5; i++) expect((await t.attempt(login(account, 'guesser'))).allowed).toBe(true);
      expect(await t.attempt(login(account, 'guesser'))).toMatchObject({ allowed: true }); // the 6th starts the back-off
      const refused = await t.attempt(login(account, 'guesser'));
      expect(refused).toMatchObject({ allowed: false });
      expect(!refused.allowed && refused.retryAfterSeconds).toBeGreaterThan(0);
      expect((await t.attempt(login(account, 'owner'))).allowed).toBe(true);
    });

    it('a per-user factor check (password, 2FA code) refuses after five failures', async () => {
      const t = throttle();
      const keys: ThrottleKey[] = [{ kind: 'factor', id: `2fa:${randomBytes(4).toString('hex')}` }];
      for (let i = 0; i < 6; i++) expect((await t.attempt(keys)).allowed).toBe(true);
      expect((await t.attempt(keys)).allowed).toBe(false);
    });
  });
}
