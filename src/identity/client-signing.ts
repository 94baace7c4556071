/**
 * Request signing for Celforge API clients.
 *
 * Critical operations made with an API key (admin actions, deletes, publishing) must carry an
 * RFC 9421 HTTP message signature: hmac-sha256 over `@method`, `@target-uri` and the RFC 9530
 * `Content-Digest` of the body, with `created` (at most 5 minutes old), `keyid` (the API key's id)
 * and a fresh `nonce` (each signature is accepted once).
 *
 * A client keeps two things from the answer that created the key, which is the only time either
 * is shown: the key (`key`, sent with every request) and its signing secret (`signing_secret`,
 * 32 random bytes as base64url, never sent). The secret is random, not derived from the key, so a
 * key that leaks through a request header (a proxy log, a captured request) cannot sign: it
 * reads, but it makes no critical change. The server keeps the secret only encrypted.
 *
 *   const headers = signedHeaders({ method: 'DELETE', url: 'https://studio.example/api/auth/api-keys/ab12', apiKey, signingSecret });
 *   await fetch(url, { method: 'DELETE', headers: { 'x-api-key': apiKey, ...headers } });
 *
 * `url` must be exactly the absolute URI the request goes to (the server's public origin, path and
 * query as sent); `body` exactly the bytes sent (none: the empty body's digest is signed).
 */
import { apiKeyIdOf, SIGNING_SECRET_TEXT } from './api-keys/format.js';
import { signRequest, type SignatureHeaders } from '../access/http-signatures.js';

/** The key's id: the `keyid` of its signatures. */
export function apiKeyId(apiKey: string): string {
  const id = apiKeyIdOf(apiKey);
  if (id === null) throw new TypeError('not a Celforge API key');
  return id;
}

/** The bytes of a `signing_secret` as the creation answer gave it (base64url of 32 bytes). */
export function decodeSigningSecret(signingSecret: string): Buffer {
  if (typeof signingSecret !== 'string' || !SIGNING_SECRET_TEXT.test(signingSecret)) {
    throw new TypeError('not a Celforge signing secret (43 base64url characters)');
  }
  return Buffer.from(signingSecret, 'base64url');
}

export interface SignedRequestInput {
  method: string;
  /** absolute URI, e.g. https://studio.example/api/auth/api-keys/ab12?x=1 */
  url: string;
  /** the exact body bytes or text sent; omit for none */
  body?: Uint8Array | string;
  apiKey: string;
  /** `signing_secret` from the answer that created the key (base64url) */
  signingSecret: string;
  /** unix seconds; default now */
  created?: number;
  /** default: 128 random bits */
  nonce?: string;
}

/** `Content-Digest`, `Signature-Input` and `Signature` headers to add to the request. */
export function signedHeaders(input: SignedRequestInput): SignatureHeaders {
  return signRequest({
    method: input.method,
    url: input.url,
    body: input.body,
    keyId: apiKeyId(input.apiKey),
    secret: decodeSigningSecret(input.signingSecret),
    ...(input.created !== undefined && { created: input.created }),
    ...(input.nonce !== undefined && { nonce: input.nonce }),
  });
}
