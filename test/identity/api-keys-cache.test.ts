import { describe, expect, it } from 'vitest';
import { ApiKeyCache } from '../../src/identity/api-keys/cache.js';
import type { ApiKeyState } from '../../src/identity/api-keys/store.js';

const row = (id: string, userId = 'u1'): ApiKeyState => ({
  id,
  user_id: userId,
  key_hash: 'h',
  scopes: '[]',
  signing_secret: null,
  expires_at: null,
  revoked_at: null,
  email: 'e',
  role: 'user',
  disabled: 0,
  second_factor: 0,
});

describe('ApiKeyCache', () => {
  it('drops a row read before an eviction instead of caching it after (revoke racing a read)', () => {
    const cache = new ApiKeyCache();
    const epoch = cache.epoch; // a read starts
    cache.evict('k1'); // the key is revoked meanwhile
    cache.set(row('k1'), epoch); // the read finishes with the old row
    expect(cache.get('k1')).toBeUndefined();
    cache.set(row('k1'), cache.epoch);
    expect(cache.get('k1')).toBeDefined();
  });

  it('expires entries after the TTL and keeps at most maxEntries, least recently used out first', () => {
    let now = 5_000;
    const cache = new ApiKeyCache(2, 1000, () => now);
    cache.set(row('a'), cache.epoch);
    cache.set(row('b'), cache.epoch);
    expect(cache.get('a')).toBeDefined(); // a is now the most recent
    cache.set(row('c'), cache.epoch);
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBeDefined();
    now = 5_999;
    expect(cache.get('a')).toBeDefined();
    now = 6_001;
    expect(cache.get('a')).toBeUndefined();
  });

  it('evicts every row of a user', () => {
    const cache = new ApiKeyCache();
    cache.set(row('a', 'u1'), cache.epoch);
    cache.set(row('b', 'u1'), cache.epoch);
    cache.set(row('c', 'u2'), cache.epoch);
    cache.evictUser('u1');
    expect([cache.get('a'), cache.get('b')]).toEqual([undefined, undefined]);
    expect(cache.get('c')).toBeDefined();
  });
});
