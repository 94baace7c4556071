/**
 * RFC 9421 signatures for critical requests made with a Celforge API key (deletes, publishing,
 * admin actions): hmac-sha256 over `@method`, `@target-uri` and the RFC 9530 `Content-Digest`,
 * with `created`, `keyid`, `alg` and a fresh `nonce`. Web Crypto only, so it runs in Node 20+ and
 * in browsers alike.
 *
 *   const client = createCelforgeClient({ baseUrl, fetch: signingFetch({ apiKey, signingSecret }) });
 *   await client.DELETE('/api/anime/jobs/{id}/publish', { params: { path: { id } } });
 */
import { serializeDictionary, serializeInnerList, type InnerList } from 'structured-headers';

export interface SigningOptions {
  /** the key from the answer that created it: `cfk_<24 hex id>_<secret part>` */
  apiKey: string;
  /** `signing_secret` from the same answer: 43 base64url characters */
  signingSecret: string;
  /** the fetch to send with (default: the global one) */
  fetch?: (request: Request) => Promise<Response>;
  /** unix seconds (default: now); for tests */
  now?: () => number;
}

const COMPONENTS = ['@method', '@target-uri', 'content-digest'];
const KEY = /^cfk_([0-9a-f]{24})_[A-Za-z0-9_-]{43}$/;
const SECRET = /^[A-Za-z0-9_-]{43}$/;

/** A fetch that sends the key with every request and signs it, for `createCelforgeClient({ fetch })`. */
export function signingFetch(options: SigningOptions): (request: Request) => Promise<Response> {
  const send = options.fetch ?? ((request: Request) => fetch(request));
  return async (request) => {
    const body = new Uint8Array(await request.clone().arrayBuffer());
    const headers = await signatureHeaders({ method: request.method, url: request.url, body, ...options });
    request.headers.set('x-api-key', options.apiKey);
    for (const [name, value] of Object.entries(headers)) request.headers.set(name, value);
    return send(request);
  };
}

export interface SignatureInput extends Pick<SigningOptions, 'apiKey' | 'signingSecret' | 'now'> {
  method: string;
  /** the absolute URI the request goes to */
  url: string;
  /** the exact body bytes (none: the empty body is signed) */
  body?: Uint8Array;
  nonce?: string;
}

/** `content-digest`, `signature-input` and `signature` for one request. */
export async function signatureHeaders(input: SignatureInput): Promise<Record<'content-digest' | 'signature-input' | 'signature', string>> {
  const keyId = KEY.exec(input.apiKey)?.[1];
  if (!keyId) throw new TypeError('not a Celforge API key');
  if (!SECRET.test(input.signingSecret)) throw new TypeError('not a Celforge signing secret (43 base64url characters)');
  const subtle = globalThis.crypto.subtle;
  const body = new Uint8Array(input.body ?? []);
  const digest = serializeDictionary({ 'sha-256': await subtle.digest('SHA-256', body) });
  const created = input.now?.() ?? Math.floor(Date.now() / 1000);
  const nonce = input.nonce ?? base64url(globalThis.crypto.getRandomValues(new Uint8Array(16)));
  const covered: InnerList = [COMPONENTS.map((id) => [id, new Map()]), new Map<string, string | number>([['created', created], ['keyid', keyId], ['alg', 'hmac-sha256'], ['nonce', nonce]])];
  const params = serializeInnerList(covered);
  const base = [`"@method": ${input.method.toUpperCase()}`, `"@target-uri": ${input.url}`, `"content-digest": ${digest}`, `"@signature-params": ${params}`].join('\n');
  const key = await subtle.importKey('raw', fromBase64url(input.signingSecret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const mac = await subtle.sign('HMAC', key, new TextEncoder().encode(base));
  return { 'content-digest': digest, 'signature-input': serializeDictionary({ sig1: covered }), signature: serializeDictionary({ sig1: mac }) };
}

function base64(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

const base64url = (bytes: Uint8Array) => base64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

function fromBase64url(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}
