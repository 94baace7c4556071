import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from './config.js';

/** Where the embedded mode keeps the secrets it makes for itself (mode 0700, files 0600). */
export function secretsDir(dataDir: string): string {
  return path.join(dataDir, 'secrets');
}

function temporaryFile(file: string): string {
  return `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}

/** Replaces a secret file atomically: readers see the old content or the new, never a part. */
export function writeSecretFile(file: string, content: string): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = temporaryFile(file);
  writeFileSync(temp, content, { mode: 0o600 });
  renameSync(temp, file);
}

/**
 * A secret the embedded mode makes on first start and keeps in `<dataDir>/secrets/<name>`.
 * Two processes starting at once agree on one value: the file is published with link(), which
 * fails when it already exists, and the loser reads the winner's.
 */
export function localSecret(dataDir: string, name: string, make: () => string): string {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(name)) throw new TypeError('secret name must be a plain file name');
  const file = path.join(secretsDir(dataDir), name);
  const existing = readIfPresent(file);
  if (existing !== undefined) return existing;
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const value = make();
  const temp = temporaryFile(file);
  writeFileSync(temp, `${value}\n`, { mode: 0o600 });
  try {
    linkSync(temp, file);
    return value;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return readFileSync(file, 'utf8').trim();
  } finally {
    unlinkSync(temp);
  }
}

function readIfPresent(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** 32 random bytes as base64: the form of the encryption and URL-signing keys. */
export function randomKey(): string {
  return randomBytes(32).toString('base64');
}

/**
 * The key for signed asset URLs: `CELFORGE_URL_SIGNING_KEY` (base64, at least 32 bytes), else a
 * key made once in the data dir with mode 0600.
 */
export function loadUrlSigningKey(options: { dataDir: string; urlSigningKey?: string }): Buffer {
  if (options.urlSigningKey) {
    const key = Buffer.from(options.urlSigningKey, 'base64');
    if (key.length < 32) throw new ConfigError('CELFORGE_URL_SIGNING_KEY: must be at least 32 bytes, base64');
    return key;
  }
  const file = path.join(options.dataDir, 'secrets', 'url-signing.key');
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const temp = `${file}.${process.pid}.tmp`;
    writeFileSync(temp, randomBytes(32).toString('base64'), { mode: 0o600 });
    renameSync(temp, file);
  }
  return Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
}
