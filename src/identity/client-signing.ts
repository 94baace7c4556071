/**
 * Request signing for Celforge API clients.
 *
 * Critical operations made with an API key (admin actions, deletes, publishing) must carry an
 * RFC 9421 HTTP message signature: hmac-sha256 over `@method`, `@target-uri` and the RFC 9530
 * `Content-Digest` of the body, with `created` (at most 5 minutes old), `keyid` (the API key's id)
 * and a fresh `nonce` (each signature is accepted once).
 *
 * The signing secret is derived from the API key, so a client keeps one thing:
 *   secret = HMAC-SHA256(key = the whole API key text, message = "celforge request signing v1")
 * The server derived the same secret when it made the key and keeps it only encrypted.
 *
 *   const headers = signedHeaders({ method: 'DELETE', url: 'https://studio.example/api/auth/api-keys/ab12', apiKey });
 *   await fetch(url, { method: 'DELETE', headers: { 'x-api-key': apiKey, ...headers } });
 *
 * `url` must be exactly the absolute URI the request goes to (the server's public origin, path and
 * query as sent); `body` exactly the bytes sent (none: the empty body's digest is signed).
 */
import { createHmac } from 'node:crypto';
import { apiKeyIdOf } from './api-keys/format.js';
import { signRequest, type SignatureHeaders } from './signatures.js';

export const SIGNING_SECRET_LABEL = 'celforge request signing v1';

/** The HMAC secret for request signatures made with this API key (32 bytes). */
export function deriveSigningSecret(apiKey: string): Buffer {
  if (apiKeyIdOf(apiKey) === null) throw new TypeError('not a Celforge API key');
  return createHmac('sha256', apiKey).update(SIGNING_SECRET_LABEL, 'utf8').digest();
}

/** The key's id: the `keyid` of its signatures. */
export function apiKeyId(apiKey: string): string {
  const id = apiKeyIdOf(apiKey);
  if (id === null) throw new TypeError('not a Celforge API key');
  return id;
}

export interface SignedRequestInput {
  method: string;
  /** absolute URI, e.g. https://studio.example/api/auth/api-keys/ab12?x=1 */
  url: string;
  /** the exact body bytes or text sent; omit for none */
  body?: Uint8Array | string;
  apiKey: string;
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
    secret: deriveSigningSecret(input.apiKey),
    ...(input.created !== undefined && { created: input.created }),
    ...(input.nonce !== undefined && { nonce: input.nonce }),
  });
}
