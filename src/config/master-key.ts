/** The master key for secrets at rest: 32 bytes (AES-256-GCM). */
export const MASTER_KEY_BYTES = 32;

/**
 * Reads a 32-byte master key written as base64 or base64url (padding optional).
 * The error message never repeats the input.
 */
export function parseMasterKey(text: string): Buffer {
  const fail = (why: string): never => {
    throw new Error(`master key must be base64 or base64url of exactly 32 bytes: ${why}`);
  };
  if (typeof text !== 'string') fail('not a string');
  const s = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) fail('not base64/base64url text');
  if (/[+/]/.test(s) && /[-_]/.test(s)) fail('mixes the base64 and base64url alphabets');
  const unpadded = s.replace(/=+$/, '');
  if (unpadded.length !== 43 || (s.length !== 43 && s.length !== 44)) {
    fail(`decodes to ${Math.floor((unpadded.length * 3) / 4)} bytes`);
  }
  const key = Buffer.from(unpadded.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  // 43 characters carry 258 bits; the last 2 must be zero or the text is not a canonical encoding.
  if (key.length !== MASTER_KEY_BYTES || key.toString('base64url') !== unpadded.replace(/\+/g, '-').replace(/\//g, '_')) {
    fail('not a canonical encoding');
  }
  if (key.every((b) => b === 0)) fail('all-zero key (placeholder?)');
  return key;
}
