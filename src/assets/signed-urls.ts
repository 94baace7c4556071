import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../config/config.js';

/** A signed URL lives 15 minutes, give or take the 5-minute step that keeps URLs stable for caches. */
const LIFETIME_SECONDS = 15 * 60;
const STEP_SECONDS = 5 * 60;

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

const CANONICAL_SIGNATURE = /^[A-Za-z0-9_-]{43}$/;

/** HMAC-SHA256 over asset id and expiry: a URL that opens one asset for a short while. */
export class UrlSigner {
  constructor(private readonly key: Buffer) {}

  #mac(assetId: string, expires: number): Buffer {
    return createHmac('sha256', this.key).update(`asset:${assetId}:${expires}`).digest();
  }

  /** The query string (`expires=…&signature=…`) for the asset. */
  sign(assetId: string, nowSeconds = Math.floor(Date.now() / 1000)): { expires: number; signature: string } {
    const expires = Math.ceil((nowSeconds + LIFETIME_SECONDS) / STEP_SECONDS) * STEP_SECONDS;
    return { expires, signature: this.#mac(assetId, expires).toString('base64url') };
  }

  url(assetId: string): string {
    const { expires, signature } = this.sign(assetId);
    return `/api/anime/assets/${assetId}?expires=${expires}&signature=${signature}`;
  }

  verify(assetId: string, expires: number, signature: string, nowSeconds = Math.floor(Date.now() / 1000)): boolean {
    if (!Number.isSafeInteger(expires) || expires < nowSeconds) return false;
    if (expires > nowSeconds + LIFETIME_SECONDS + STEP_SECONDS) return false;
    // Node's decoder takes padding, the standard alphabet and trailing junk: accept the one canonical spelling only.
    if (!CANONICAL_SIGNATURE.test(signature)) return false;
    const given = Buffer.from(signature, 'base64url');
    if (given.toString('base64url') !== signature) return false;
    const expected = this.#mac(assetId, expires);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
