/**
 * Encryption at rest for small secrets (TOTP secrets, API-key signing secrets).
 *
 * AES-256-GCM, a fresh random 12-byte IV per message, and one compact text box:
 *   v1.<keyId>.<iv base64url>.<ciphertext+tag base64url>
 * The caller's associated data (e.g. the user id) is authenticated but not stored, so a box copied
 * to another row does not decrypt there.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { MASTER_KEY_BYTES as KEY_BYTES } from '../config/master-key.js';

export { parseMasterKey } from '../config/master-key.js';

export interface MasterKey {
  id: string;
  key: Buffer;
}

export interface EncryptorOptions {
  current: MasterKey;
  previous?: readonly MasterKey[];
}

export interface Encryptor {
  /** Seals `plaintext` (UTF-8 text or bytes) bound to `aad`; always uses the current key. */
  encrypt(plaintext: string | Uint8Array, aad: string): string;
  /** Opens a box sealed with any listed key; throws DecryptionError on any failure. */
  decrypt(box: string, aad: string): Buffer;
  /** `decrypt`, then a strict UTF-8 decode. */
  decryptText(box: string, aad: string): string;
  /** True when the box was sealed with a key other than the current one (re-encrypt it). */
  needsRotation(box: string): boolean;
}

export type DecryptionFailure = 'malformed' | 'unknown-key' | 'auth-failed';

/** Deliberately carries only a reason code: never key material, never the box or the aad. */
export class DecryptionError extends Error {
  readonly reason: DecryptionFailure;
  constructor(reason: DecryptionFailure) {
    super(`cannot decrypt secret (${reason})`);
    this.name = 'DecryptionError';
    this.reason = reason;
  }
}

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const MAX_PLAINTEXT_BYTES = 64 * 1024;
const MAX_BOX_CHARS = 4 + 33 + 17 + Math.ceil(((MAX_PLAINTEXT_BYTES + TAG_BYTES) * 4) / 3);
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const B64URL = /^[A-Za-z0-9_-]*$/;
// A domain label keeps these boxes from being confused with any other use of the same key.
const AAD_LABEL = 'celforge/secret/v1';

export function createEncryptor(options: EncryptorOptions): Encryptor {
  const keys = keyTable(options);
  const current = options.current;

  function open(box: string, aad: string): Buffer {
    checkAad(aad);
    const parts = parseBox(box);
    const key = keys.get(parts.keyId);
    if (!key) throw new DecryptionError('unknown-key');
    const tagStart = parts.sealed.length - TAG_BYTES;
    const decipher = createDecipheriv('aes-256-gcm', key, parts.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData(parts.keyId, aad));
    decipher.setAuthTag(parts.sealed.subarray(tagStart));
    try {
      return Buffer.concat([decipher.update(parts.sealed.subarray(0, tagStart)), decipher.final()]);
    } catch {
      throw new DecryptionError('auth-failed');
    }
  }

  return {
    encrypt(plaintext, aad) {
      checkAad(aad);
      const data = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : Buffer.from(plaintext);
      if (data.length > MAX_PLAINTEXT_BYTES) throw new RangeError('plaintext too large');
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', current.key, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(associatedData(current.id, aad));
      const sealed = Buffer.concat([cipher.update(data), cipher.final(), cipher.getAuthTag()]);
      return [VERSION, current.id, iv.toString('base64url'), sealed.toString('base64url')].join('.');
    },
    decrypt: open,
    decryptText(box, aad) {
      const bytes = open(box, aad);
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        throw new DecryptionError('malformed');
      }
    },
    needsRotation(box) {
      return parseBox(box).keyId !== current.id;
    },
  };
}

function keyTable(options: EncryptorOptions): Map<string, Buffer> {
  const table = new Map<string, Buffer>();
  for (const { id, key } of [options.current, ...(options.previous ?? [])]) {
    if (typeof id !== 'string' || !KEY_ID.test(id)) {
      throw new TypeError('encryption key id must be 1-32 characters of [A-Za-z0-9_-]');
    }
    if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
      throw new TypeError(`encryption key "${id}" must be a 32-byte Buffer`);
    }
    if (table.has(id)) throw new TypeError(`encryption key id "${id}" is listed twice`);
    table.set(id, key);
  }
  return table;
}

function checkAad(aad: string): void {
  if (typeof aad !== 'string' || aad.length === 0) {
    throw new TypeError('associated data must be a non-empty string');
  }
}

// keyId never contains NUL, and the caller's aad comes last, so the encoding is unambiguous.
function associatedData(keyId: string, aad: string): Buffer {
  return Buffer.from(`${AAD_LABEL}\0${keyId}\0${aad}`, 'utf8');
}

interface BoxParts {
  keyId: string;
  iv: Buffer;
  sealed: Buffer;
}

function parseBox(box: string): BoxParts {
  if (typeof box !== 'string' || box.length > MAX_BOX_CHARS) throw new DecryptionError('malformed');
  const parts = box.split('.');
  if (parts.length !== 4) throw new DecryptionError('malformed');
  const [version, keyId, ivText, sealedText] = parts as [string, string, string, string];
  if (version !== VERSION || !KEY_ID.test(keyId)) throw new DecryptionError('malformed');
  const iv = strictBase64url(ivText);
  const sealed = strictBase64url(sealedText);
  if (iv.length !== IV_BYTES || sealed.length < TAG_BYTES) throw new DecryptionError('malformed');
  return { keyId, iv, sealed };
}

// Node's decoder skips bad characters silently; insist on the one canonical spelling instead.
function strictBase64url(text: string): Buffer {
  if (!B64URL.test(text)) throw new DecryptionError('malformed');
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) throw new DecryptionError('malformed');
  return bytes;
}
