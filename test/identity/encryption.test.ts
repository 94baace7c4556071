import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createEncryptor, DecryptionError, parseMasterKey } from '../../src/identity/encryption.js';

const k1 = { id: 'k1', key: Buffer.alloc(32, 0x11) };
const k2 = { id: 'k2', key: Buffer.alloc(32, 0x22) };
const AAD = 'user:0f3a';
const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

function expectDecryptError(fn: () => unknown, reason: DecryptionError['reason']): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DecryptionError);
  expect((caught as DecryptionError).reason).toBe(reason);
}

/** Rebuilds a box after changing one byte of the sealed part (ciphertext + tag). */
function flipSealedByte(box: string, index: number): string {
  const [v, id, iv, sealed] = box.split('.') as [string, string, string, string];
  const bytes = Buffer.from(sealed, 'base64url');
  bytes[index]! ^= 0x01;
  return [v, id, iv, bytes.toString('base64url')].join('.');
}

function flipIvByte(box: string, index: number): string {
  const [v, id, iv, sealed] = box.split('.') as [string, string, string, string];
  const bytes = Buffer.from(iv, 'base64url');
  bytes[index]! ^= 0x80;
  return [v, id, bytes.toString('base64url'), sealed].join('.');
}

describe('createEncryptor', () => {
  const enc = createEncryptor({ current: k1 });

  it('round-trips text and bytes', () => {
    const box = enc.encrypt(SECRET, AAD);
    expect(enc.decryptText(box, AAD)).toBe(SECRET);
    const bytes = randomBytes(32);
    expect(enc.decrypt(enc.encrypt(bytes, AAD), AAD).equals(bytes)).toBe(true);
    expect(enc.decryptText(enc.encrypt('', AAD), AAD)).toBe('');
    expect(enc.decryptText(enc.encrypt('äöü 🎌', AAD), AAD)).toBe('äöü 🎌');
  });

  it('writes v1.<keyId>.<12-byte iv>.<ciphertext+16-byte tag>, base64url, and never the plaintext', () => {
    const box = enc.encrypt(SECRET, AAD);
    expect(box).toMatch(/^v1\.k1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
    const [, , iv, sealed] = box.split('.') as [string, string, string, string];
    expect(Buffer.from(iv, 'base64url')).toHaveLength(12);
    expect(Buffer.from(sealed, 'base64url')).toHaveLength(SECRET.length + 16);
    expect(box).not.toContain(SECRET);
    expect(Buffer.from(sealed, 'base64url').toString('latin1')).not.toContain(SECRET);
  });

  it('uses a fresh IV each time', () => {
    const boxes = new Set(Array.from({ length: 50 }, () => enc.encrypt(SECRET, AAD)));
    expect(boxes.size).toBe(50);
    const ivs = new Set([...boxes].map((b) => b.split('.')[2]));
    expect(ivs.size).toBe(50);
  });

  it('binds the associated data: a box moved to another row fails', () => {
    const box = enc.encrypt(SECRET, 'user:alice');
    expectDecryptError(() => enc.decrypt(box, 'user:bob'), 'auth-failed');
    expectDecryptError(() => enc.decrypt(box, 'user:alice '), 'auth-failed');
    expectDecryptError(() => enc.decrypt(box, 'user:Alice'), 'auth-failed');
    expect(() => enc.decrypt(box, '')).toThrow(TypeError);
    expect(() => enc.encrypt(SECRET, '')).toThrow(TypeError);
  });

  it('rejects a change to any byte of the ciphertext or the tag', () => {
    const box = enc.encrypt(SECRET, AAD);
    const sealedLength = Buffer.from(box.split('.')[3]!, 'base64url').length;
    for (let i = 0; i < sealedLength; i++) {
      expectDecryptError(() => enc.decrypt(flipSealedByte(box, i), AAD), 'auth-failed');
    }
  });

  it('rejects a change to any byte of the IV', () => {
    const box = enc.encrypt(SECRET, AAD);
    for (let i = 0; i < 12; i++) {
      expectDecryptError(() => enc.decrypt(flipIvByte(box, i), AAD), 'auth-failed');
    }
  });

  it('rejects a changed version or key id', () => {
    const box = enc.encrypt(SECRET, AAD);
    expectDecryptError(() => enc.decrypt(box.replace(/^v1/, 'v2'), AAD), 'malformed');
    expectDecryptError(() => enc.decrypt(box.replace(/^v1/, 'V1'), AAD), 'malformed');
    expectDecryptError(() => enc.decrypt(box.replace('.k1.', '.k9.'), AAD), 'unknown-key');
    // Relabelled as another key the decryptor does hold: still refused (key id is authenticated too).
    const both = createEncryptor({ current: k2, previous: [{ id: 'k1', key: k2.key }, { id: 'k3', key: k1.key }] });
    const own = createEncryptor({ current: { id: 'k3', key: k1.key } });
    const box3 = own.encrypt(SECRET, AAD);
    expect(both.decryptText(box3, AAD)).toBe(SECRET);
    expectDecryptError(() => both.decrypt(box3.replace('.k3.', '.k1.'), AAD), 'auth-failed');
  });

  it('rejects truncated, extended and garbage boxes without throwing anything but DecryptionError', () => {
    const box = enc.encrypt(SECRET, AAD);
    const [v, id, iv, sealed] = box.split('.') as [string, string, string, string];
    const tagOnly = Buffer.from(sealed, 'base64url').subarray(-16).toString('base64url');
    const cases: Array<[string, DecryptionError['reason']]> = [
      [box.slice(0, -4), 'auth-failed'],
      [`${box}A`, 'malformed'],
      [`${box}.`, 'malformed'],
      [[v, id, iv].join('.'), 'malformed'],
      [[v, id, iv, sealed, sealed].join('.'), 'malformed'],
      [[v, id, iv.slice(0, -2), sealed].join('.'), 'malformed'],
      [[v, id, `${iv}AAAA`, sealed].join('.'), 'malformed'],
      [[v, id, iv, Buffer.alloc(15).toString('base64url')].join('.'), 'malformed'],
      [[v, id, iv, tagOnly].join('.'), 'auth-failed'],
      [[v, id, iv, sealed.replace(/.$/, '+')].join('.'), 'malformed'],
      [[v, id, iv, `${sealed}=`].join('.'), 'malformed'],
      [[v, id, iv, ` ${sealed}`].join('.'), 'malformed'],
      [[v, '', iv, sealed].join('.'), 'malformed'],
      [[v, 'k\u00e91', iv, sealed].join('.'), 'malformed'],
      ['', 'malformed'],
      ['v1...', 'malformed'],
      ['x'.repeat(1_000_000), 'malformed'],
      ['v1.k1.\u0000.\u0000', 'malformed'],
    ];
    for (const [bad, reason] of cases) expectDecryptError(() => enc.decrypt(bad, AAD), reason);
    expectDecryptError(() => enc.decrypt(42 as unknown as string, AAD), 'malformed');
  });

  it('refuses plaintext that is not valid UTF-8 in decryptText', () => {
    const box = enc.encrypt(Buffer.from([0xff, 0xfe, 0x00]), AAD);
    expectDecryptError(() => enc.decryptText(box, AAD), 'malformed');
    expect([...enc.decrypt(box, AAD)]).toEqual([0xff, 0xfe, 0x00]);
  });

  it('names no key material in errors', () => {
    const box = enc.encrypt(SECRET, AAD);
    const secrets = [k1.key.toString('hex'), k1.key.toString('base64'), k1.key.toString('base64url'), SECRET, AAD];
    for (const attempt of [() => enc.decrypt(box, 'other'), () => enc.decrypt(flipSealedByte(box, 0), AAD), () => enc.decrypt(box.replace('.k1.', '.zz.'), AAD)]) {
      try {
        attempt();
        expect.unreachable();
      } catch (err) {
        const text = `${String(err)} ${(err as Error).stack ?? ''} ${JSON.stringify(err)}`;
        for (const s of secrets) expect(text).not.toContain(s);
        expect(text).not.toContain(box.split('.')[3]);
      }
    }
  });
});

describe('key rotation', () => {
  it('decrypts with previous keys, encrypts with the current one, and flags boxes to re-encrypt', () => {
    const before = createEncryptor({ current: k1 });
    const after = createEncryptor({ current: k2, previous: [k1] });
    const oldBox = before.encrypt(SECRET, AAD);
    expect(after.decryptText(oldBox, AAD)).toBe(SECRET);
    expect(after.needsRotation(oldBox)).toBe(true);

    const newBox = after.encrypt(SECRET, AAD);
    expect(newBox.startsWith('v1.k2.')).toBe(true);
    expect(after.needsRotation(newBox)).toBe(false);
    expectDecryptError(() => before.decrypt(newBox, AAD), 'unknown-key');

    const retired = createEncryptor({ current: k2 });
    expectDecryptError(() => retired.decrypt(oldBox, AAD), 'unknown-key');
    expect(retired.decryptText(newBox, AAD)).toBe(SECRET);
  });

  it('refuses a bad key table', () => {
    expect(() => createEncryptor({ current: { id: 'k1', key: Buffer.alloc(31, 1) } })).toThrow(/32-byte/);
    expect(() => createEncryptor({ current: { id: 'k1', key: Buffer.alloc(33, 1) } })).toThrow(/32-byte/);
    expect(() => createEncryptor({ current: { id: 'k.1', key: k1.key } })).toThrow(/key id/);
    expect(() => createEncryptor({ current: { id: '', key: k1.key } })).toThrow(/key id/);
    expect(() => createEncryptor({ current: k1, previous: [{ id: 'k1', key: k2.key }] })).toThrow(/twice/);
    try {
      createEncryptor({ current: { id: 'k1', key: Buffer.alloc(31, 0xab) } });
    } catch (err) {
      expect(String(err)).not.toMatch(/abab/i);
    }
  });
});

describe('parseMasterKey', () => {
  const key = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 251) & 0xff));

  it('accepts base64 and base64url of exactly 32 bytes, padded or not, with outer whitespace', () => {
    const b64 = key.toString('base64');
    const b64url = key.toString('base64url');
    expect(b64).toMatch(/[+/]/); // the fixture exercises the alphabet difference
    for (const text of [b64, b64.replace(/=+$/, ''), b64url, `${b64url}=`, `  ${b64}\n`]) {
      expect(parseMasterKey(text).equals(key)).toBe(true);
    }
  });

  it('rejects anything else with a clear message that does not echo the input', () => {
    const bad = [
      '',
      '   ',
      randomBytes(31).toString('base64'),
      randomBytes(33).toString('base64'),
      randomBytes(64).toString('base64'),
      randomBytes(32).toString('hex'), // 64 hex chars are valid base64 text of 48 bytes
      `${key.toString('base64').slice(0, 20)} ${key.toString('base64').slice(20)}`,
      `${key.toString('base64').slice(0, -2)}!=`,
      `${key.toString('base64')}==`,
      key.toString('base64').replace(/=$/, '').replace(/.$/, 'B'), // non-zero trailing bits
      key.toString('base64').replace(/[A-Za-z]/, '-'), // mixes '-' with '+' or '/'
      Buffer.alloc(32).toString('base64'),
      '🔑'.repeat(20),
    ];
    for (const text of bad) {
      let message = '';
      try {
        parseMasterKey(text);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, `accepted ${JSON.stringify(text)}`).toMatch(/^master key must be base64 or base64url of exactly 32 bytes/);
      if (text.trim().length > 8) expect(message).not.toContain(text.trim().slice(0, 8));
    }
  });

  it('produces a key createEncryptor accepts', () => {
    const parsed = parseMasterKey(randomBytes(32).toString('base64url'));
    const enc = createEncryptor({ current: { id: 'main', key: parsed } });
    expect(enc.decryptText(enc.encrypt('x', 'a'), 'a')).toBe('x');
  });
});
