import { createHash, randomBytes } from 'node:crypto';

/**
 * API key text: `cfk_<id>_<secret>`. The id (24 hex) is the row's primary key and the signature
 * keyid; the secret is 32 random bytes as 43 base64url characters. The store keeps only the
 * SHA-256 of the whole key.
 *
 * Each key also has a request-signing secret: 32 other random bytes, unrelated to the key text,
 * given to the client as 43 base64url characters and stored only encrypted.
 */
export const API_KEY_PREFIX = 'cfk_';
const KEY_PATTERN = /^cfk_([0-9a-f]{24})_([A-Za-z0-9_-]{43})$/;
export const API_KEY_ID = /^[0-9a-f]{24}$/;

export function newApiKey(): { id: string; key: string } {
  const id = randomBytes(12).toString('hex');
  return { id, key: `${API_KEY_PREFIX}${id}_${randomBytes(32).toString('base64url')}` };
}

/** Bytes of a request-signing secret. */
export const SIGNING_SECRET_BYTES = 32;
export const SIGNING_SECRET_TEXT = /^[A-Za-z0-9_-]{43}$/;

export function newSigningSecret(): Buffer {
  return randomBytes(SIGNING_SECRET_BYTES);
}

/** The id inside a well-formed key, or null. */
export function apiKeyIdOf(key: string): string | null {
  const match = typeof key === 'string' ? KEY_PATTERN.exec(key) : null;
  return match ? match[1]! : null;
}

/** SHA-256 of the whole key, hex (what `api_keys.key_hash` holds). */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}
