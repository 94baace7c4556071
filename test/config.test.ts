import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseDuration } from '../src/config/config.js';

describe('config', () => {
  it('has the documented defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 8331,
      dataDir: path.resolve('./data'),
      corsOrigins: [],
      trustProxy: [],
      accessTokenTtlSeconds: 900,
      renderer: 'preview',
    });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.redisUrl).toBeUndefined();
  });

  it('reads NAME_FILE twins and refuses both at once', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'celforge-config-'));
    const file = path.join(dir, 'db-url');
    writeFileSync(file, 'postgres://celforge:s3cret@db.internal:5432/celforge\n');
    expect(loadConfig({ DATABASE_URL_FILE: file }).databaseUrl).toBe('postgres://celforge:s3cret@db.internal:5432/celforge');
    expect(() => loadConfig({ DATABASE_URL_FILE: file, DATABASE_URL: 'postgres://x@y/z' })).toThrow(/both set/);
    expect(() => loadConfig({ DATABASE_URL_FILE: path.join(dir, 'missing') })).toThrow(ConfigError);
  });

  it.each([
    [{ CELFORGE_RENDERER: 'dalle' }, /CELFORGE_RENDERER: "dalle" is not one of preview, comfyui/],
    [{ CELFORGE_RENDERER: 'comfyui' }, /needs CELFORGE_COMFYUI_URLS/],
    [{ CELFORGE_PORT: '70000' }, /CELFORGE_PORT: 70000 is outside 0–65535/],
    [{ CELFORGE_PORT: '80a' }, /not a whole number/],
    [{ DATABASE_URL: 'mysql://x@y/z' }, /DATABASE_URL: must start with postgres:\/\//],
    [{ DATABASE_URL: 'not a url' }, /DATABASE_URL: not a valid URL/],
    [{ REDIS_URL: 'http://localhost' }, /REDIS_URL: must start with redis:/],
    [{ CELFORGE_CORS_ORIGINS: 'https://a.example/path' }, /not a bare origin/],
    [{ CELFORGE_TRUST_PROXY: '10.0.0.0/33' }, /not an IP address or CIDR/],
    [{ CELFORGE_TRUST_PROXY: 'proxy.local' }, /not an IP address or CIDR/],
    [{ CELFORGE_ACCESS_TOKEN_TTL: 'forever' }, /not a duration/],
    [{ CELFORGE_VAULT_ADDR: 'http://127.0.0.1:8200' }, /set CELFORGE_VAULT_TOKEN/],
    [{ CELFORGE_LOG_LEVEL: 'loud' }, /CELFORGE_LOG_LEVEL/],
    [{ CELFORGE_COMFYUI_MAX_OUTPUT_BYTES: '200MiB' }, /CELFORGE_COMFYUI_MAX_OUTPUT_BYTES: "200MiB" is not a whole number/],
    [{ CELFORGE_COMFYUI_MAX_OUTPUT_BYTES: '100' }, /CELFORGE_COMFYUI_MAX_OUTPUT_BYTES: 100 is outside/],
  ])('refuses %j with one clear line', (env, message) => {
    let error: unknown;
    try {
      loadConfig(env);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain('\n');
  });

  it('parses lists and durations', () => {
    const config = loadConfig({
      CELFORGE_CORS_ORIGINS: 'https://studio.example, http://localhost:5173',
      CELFORGE_TRUST_PROXY: '127.0.0.1, 10.0.0.0/8, ::1',
      CELFORGE_RENDERER: 'comfyui',
      CELFORGE_COMFYUI_URLS: 'http://gpu1:8188,http://gpu2:8188',
      CELFORGE_COMFYUI_MAX_OUTPUT_BYTES: '1048576',
    });
    expect(config.corsOrigins).toEqual(['https://studio.example', 'http://localhost:5173']);
    expect(config.trustProxy).toEqual(['127.0.0.1', '10.0.0.0/8', '::1']);
    expect(config.comfyuiUrls).toHaveLength(2);
    expect(config.comfyuiMaxOutputBytes).toBe(1048576);
    expect(loadConfig({}).comfyuiMaxOutputBytes).toBeUndefined();
    expect(parseDuration('X', '15m')).toBe(900);
    expect(parseDuration('X', '2h')).toBe(7200);
    expect(parseDuration('X', '45')).toBe(45);
  });
});

describe('job pipeline settings', () => {
  it('has defaults and reads the worker, time limit, lease and preview pace', () => {
    expect(loadConfig({})).toMatchObject({ workerConcurrency: 2, jobTimeoutSeconds: 600, jobLeaseSeconds: 30, previewStepMs: undefined });
    expect(
      loadConfig({ CELFORGE_WORKER_CONCURRENCY: '8', CELFORGE_JOB_TIMEOUT: '2m', CELFORGE_JOB_LEASE: '5s', CELFORGE_PREVIEW_STEP_MS: '100' }),
    ).toMatchObject({ workerConcurrency: 8, jobTimeoutSeconds: 120, jobLeaseSeconds: 5, previewStepMs: 100 });
    expect(() => loadConfig({ CELFORGE_WORKER_CONCURRENCY: '0' })).toThrow(/CELFORGE_WORKER_CONCURRENCY/);
    expect(() => loadConfig({ CELFORGE_PREVIEW_STEP_MS: '-1' })).toThrow(/CELFORGE_PREVIEW_STEP_MS/);
    expect(() => loadConfig({ CELFORGE_JOB_LEASE: 'soon' })).toThrow(/CELFORGE_JOB_LEASE/);
  });
});
