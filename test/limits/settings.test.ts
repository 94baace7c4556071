import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_LIMITS, loadConfig } from '../../src/config/config.js';
import { MemoryRateStore } from '../../src/limits/rate-store.js';

describe('limit settings', () => {
  it('defaults, and overrides one policy at a time', () => {
    expect(loadConfig({}).limits).toEqual(DEFAULT_LIMITS);
    const limits = loadConfig({
      CELFORGE_RATE_LIMITS: 'read=50/10s, signin-account=5/1h',
      CELFORGE_VIDEO_COST: '8',
      CELFORGE_QUOTA_ACTIVE_JOBS: '1',
      CELFORGE_QUOTA_JOBS_PER_DAY: '10',
    }).limits;
    expect(limits.rates.read).toEqual({ quota: 50, windowSeconds: 10 });
    expect(limits.rates['signin-account']).toEqual({ quota: 5, windowSeconds: 3600 });
    expect(limits.rates.generation).toEqual(DEFAULT_LIMITS.rates.generation);
    expect(limits.costs).toEqual({ image: 1, video: 8 });
    expect([limits.activeJobs, limits.jobsPerDay]).toEqual([1, 10]);
  });

  it('refuses unknown policies and malformed values with the variable named', () => {
    for (const value of ['reads=5/60s', 'read=5', 'read=-1/60s', 'read=0/60s', 'read=5/0s', 'read=5/soon']) {
      expect(() => loadConfig({ CELFORGE_RATE_LIMITS: value })).toThrow(ConfigError);
      expect(() => loadConfig({ CELFORGE_RATE_LIMITS: value })).toThrow(/CELFORGE_RATE_LIMITS/);
    }
    expect(() => loadConfig({ CELFORGE_VIDEO_COST: '0' })).toThrow(/CELFORGE_VIDEO_COST/);
  });
});

describe('memory rate store', () => {
  it('opens a new window once the old one ends', async () => {
    let now = 1_000_000;
    const store = new MemoryRateStore(100, () => now);
    expect(await store.consume('k', 2, 3, 1000)).toEqual({ allowed: true, remaining: 1, resetMs: 1000 });
    expect(await store.consume('k', 2, 3, 1000)).toEqual({ allowed: false, remaining: 1, resetMs: 1000 });
    now += 400;
    expect(await store.consume('k', 1, 3, 1000)).toEqual({ allowed: true, remaining: 0, resetMs: 600 });
    now += 600;
    expect(await store.consume('k', 2, 3, 1000)).toEqual({ allowed: true, remaining: 1, resetMs: 1000 });
  });

  it('stays bounded under a flood of distinct keys', async () => {
    let now = 0;
    const store = new MemoryRateStore(50, () => now);
    for (let i = 0; i < 1000; i++) await store.consume(`flood-${i}`, 1, 10, 60_000);
    expect(store.size).toBeLessThanOrEqual(50);
    now += 60_001;
    await store.consume('after', 1, 10, 60_000);
    expect(store.size).toBe(1);
  });
});
