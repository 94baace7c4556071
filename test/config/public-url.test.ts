import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { localSecret } from '../../src/config/local-secrets.js';

describe('CELFORGE_PUBLIC_URL', () => {
  it('defaults to http://<host>:<port> and accepts a bare origin', () => {
    expect(loadConfig({}).publicUrl).toBe('http://127.0.0.1:8331');
    expect(loadConfig({ CELFORGE_HOST: '::1', CELFORGE_PORT: '9000' }).publicUrl).toBe('http://[::1]:9000');
    expect(loadConfig({ CELFORGE_PUBLIC_URL: 'https://studio.example' }).publicUrl).toBe('https://studio.example');
    expect(loadConfig({ CELFORGE_PUBLIC_URL: 'https://studio.example:8443/' }).publicUrl).toBe('https://studio.example:8443');
  });

  it('refuses anything but an http(s) origin', () => {
    for (const value of ['studio.example', 'ftp://studio.example', 'https://studio.example/api', 'https://studio.example?x=1']) {
      expect(() => loadConfig({ CELFORGE_PUBLIC_URL: value }), value).toThrow(/CELFORGE_PUBLIC_URL/);
    }
  });
});

describe('localSecret', () => {
  it('makes the secret once, mode 0600 in a 0700 directory, and reads it back afterwards', () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-secret-'));
    let made = 0;
    const make = () => `value-${++made}`;
    expect(localSecret(dataDir, 'encryption-key', make)).toBe('value-1');
    expect(localSecret(dataDir, 'encryption-key', make)).toBe('value-1');
    expect(made).toBe(1);
    const file = path.join(dataDir, 'secrets', 'encryption-key');
    expect(readFileSync(file, 'utf8')).toBe('value-1\n');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
  });

  it('refuses names that are not plain file names', () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-secret-'));
    for (const name of ['../escape', 'a/b', '.hidden', '']) expect(() => localSecret(dataDir, name, () => 'x'), name).toThrow(TypeError);
  });
});
