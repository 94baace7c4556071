import { statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { createTestStorage, type TestStorage } from '../support/dialects.js';
import { startCelforge, startServer } from '../support/server.js';

describe('celforge command line', () => {
  let storage: TestStorage;
  beforeAll(async () => {
    storage = await createTestStorage('sqlite');
  });
  afterAll(async () => storage.drop());

  it('bad config stops start-up with one clear line and exit code 2', async () => {
    const result = await runCli(['serve'], storage, { env: { CELFORGE_RENDERER: 'dalle' } });
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe('celforge: CELFORGE_RENDERER: "dalle" is not one of preview, comfyui');
    const port = await runCli(['serve'], storage, { env: { CELFORGE_PORT: '99999' } });
    expect(port.code).toBe(2);
    expect(port.stderr).toContain('CELFORGE_PORT');
  });

  it('an unknown command prints the usage and exits 2', async () => {
    const result = await runCli(['frobnicate'], storage);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('usage: celforge');
  });

  it('serve answers on the configured address with the SQLite store in the data dir, and stops cleanly', async () => {
    const server = await startServer(storage);
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const response = await fetch(`${server.url}/api/anime/ready`);
      expect(await response.json()).toEqual({ status: 'ready' });
      expect(statSync(path.join(storage.dataDir, 'celforge.db')).isFile()).toBe(true);
      const keyMode = statSync(path.join(storage.dataDir, 'secrets', 'signing-keys.json')).mode & 0o777;
      expect(keyMode).toBe(0o600);
    } finally {
      expect(await server.stop('SIGTERM')).toBe(0);
    }
  });

  it('worker on the store queue (no REDIS_URL) keeps running until a signal, then stops cleanly', async () => {
    const worker = await startCelforge(storage, { args: ['worker'], ready: /celforge worker \S+ ready \(store queue/ });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(worker.process.exitCode).toBeNull();
    expect(await worker.stop('SIGTERM')).toBe(0);
  });

  it('keys rotate keeps the previous key in the JWKS', async () => {
    const first = await runCli(['keys', 'rotate'], storage);
    expect(first.code).toBe(0);
    const second = await runCli(['keys', 'rotate'], storage);
    const [, current, previous] = /new signing key (\S+); previous (\S+) still verifies/.exec(second.stdout) ?? [];
    expect(current).toBeDefined();
    const server = await startServer(storage);
    try {
      const jwks = (await (await fetch(`${server.url}/api/auth/jwks.json`)).json()) as { keys: { kid: string; d?: string }[] };
      expect(jwks.keys.map((k) => k.kid)).toEqual([current, previous]);
      expect(jwks.keys.every((k) => k.d === undefined)).toBe(true);
    } finally {
      await server.stop();
    }
  });
});
