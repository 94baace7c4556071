/**
 * RFC 9421 HTTP Message Signatures (hmac-sha256) over `@method`, `@target-uri` and the RFC 9530
 * `Content-Digest` (sha-256), with `created`, `keyid`, `alg` and `nonce` parameters.
 *
 * The verifier accepts exactly this profile and nothing looser: one signature, these three
 * components, these four parameters, age <= maxAgeSeconds, and each (keyid, nonce) only once.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  isInnerList,
  ParseError,
  parseDictionary,
  SerializeError,
  serializeDictionary,
  serializeInnerList,
  serializeString,
  type BareItem,
  type Dictionary,
  type Item,
  type Parameters,
} from 'structured-headers';

export type SignatureFailure =
  | 'missing'
  | 'malformed'
  | 'unknown-key'
  | 'bad-digest'
  | 'bad-signature'
  | 'expired'
  | 'future'
  | 'replayed'
  | 'components';

export type VerifyResult = { ok: true; keyId: string } | { ok: false; reason: SignatureFailure };

export interface SignatureHeaders {
  'content-digest': string;
  'signature-input': string;
  signature: string;
}

export interface SignRequestInput {
  method: string;
  /** The absolute target URI, exactly as the request addresses it. */
  url: string;
  body?: Uint8Array | string;
  keyId: string;
  secret: Uint8Array | string;
  /** Unix seconds (default: now). */
  created?: number;
  /** Default: 128 random bits, base64url. */
  nonce?: string;
}

export interface IncomingSignedRequest {
  method: string;
  /** The absolute target URI, built by the server from its own configured origin and the path. */
  url: string;
  /** Lower-case names, as Node gives them. */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** The raw body bytes exactly as received (undefined or empty for no body). */
  body?: Uint8Array | string;
}

export interface VerifyOptions {
  lookupSecret(keyId: string): Promise<Uint8Array | undefined> | Uint8Array | undefined;
  /** Unix seconds (default: now). */
  now?: number;
  /** Oldest acceptable `created`, in seconds (default 300). */
  maxAgeSeconds?: number;
  replay: ReplayGuard;
}

/**
 * Remembers which signatures were already used. `firstUse` is true exactly once per key while the
 * entry lives. A Redis version is one atomic command: `SET <key> 1 NX EX <ttl>` (reply "OK" means
 * first use, a null reply means seen before).
 */
export interface ReplayGuard {
  firstUse(key: string, ttlSeconds: number): Promise<boolean>;
}

export const SIGNATURE_LABEL = 'sig1';
export const SIGNATURE_ALG = 'hmac-sha256';
export const DEFAULT_MAX_AGE_SECONDS = 300;
/** How far `created` may be ahead of our clock. */
export const FUTURE_SKEW_SECONDS = 5;
const MIN_SECRET_BYTES = 16;
const MAX_FIELD_CHARS = 4096;
const MAX_PARAM_CHARS = 256;
const HMAC_BYTES = 32;

const COMPONENTS = ['@method', '@target-uri', 'content-digest'] as const;
type ComponentId = (typeof COMPONENTS)[number];
const PARAM_NAMES = ['created', 'keyid', 'alg', 'nonce'] as const;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

// ---------------------------------------------------------------------------------------------
// Content-Digest (RFC 9530)

/** `sha-256=:<base64>:` of the exact body bytes (an empty body has a digest too). */
export function contentDigest(body: Uint8Array | string): string {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  return `sha-256=:${createHash('sha256').update(bytes).digest('base64')}:`;
}

// ---------------------------------------------------------------------------------------------
// Signing

/** Signs a request; add the three returned fields to it as headers. */
export function signRequest(input: SignRequestInput): SignatureHeaders {
  const secret = toBytes(input.secret);
  if (secret.length < MIN_SECRET_BYTES) throw new TypeError(`secret must be at least ${MIN_SECRET_BYTES} bytes`);
  const created = input.created ?? Math.floor(Date.now() / 1000);
  if (!Number.isSafeInteger(created) || created < 0) throw new TypeError('created must be unix seconds');
  const nonce = input.nonce ?? randomBytes(16).toString('base64url');
  checkParamText(input.keyId, 'keyId');
  checkParamText(nonce, 'nonce');
  if (!isToken(input.method)) throw new TypeError('method must be an HTTP token');
  if (!isTargetUri(input.url)) throw new TypeError('url must be an absolute http(s) URI in ASCII');

  const digest = contentDigest(input.body ?? '');
  const params = serializeSignatureParams(COMPONENTS, { created, keyid: input.keyId, alg: SIGNATURE_ALG, nonce });
  const base = buildSignatureBase(COMPONENTS, { '@method': input.method, '@target-uri': input.url, 'content-digest': digest }, params);
  const mac = hmac(secret, base);
  return {
    'content-digest': digest,
    'signature-input': `${SIGNATURE_LABEL}=${params}`,
    signature: serializeDictionary({ [SIGNATURE_LABEL]: mac }),
  };
}

/**
 * The RFC 9421 §2.5 signature base that `signRequest` signs, for inspection and tests.
 */
export function signatureBase(input: {
  method: string;
  url: string;
  body?: Uint8Array | string;
  keyId: string;
  created: number;
  nonce: string;
}): string {
  const params = serializeSignatureParams(COMPONENTS, { created: input.created, keyid: input.keyId, alg: SIGNATURE_ALG, nonce: input.nonce });
  const values = { '@method': input.method, '@target-uri': input.url, 'content-digest': contentDigest(input.body ?? '') };
  return buildSignatureBase(COMPONENTS, values, params);
}

function checkParamText(value: string, name: string): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_PARAM_CHARS || !/^[\x20-\x7e]+$/.test(value)) {
    throw new TypeError(`${name} must be 1-${MAX_PARAM_CHARS} printable ASCII characters`);
  }
}

// ---------------------------------------------------------------------------------------------
// Verification

/**
 * Verifies the request's `sig1`-style signature. Never throws for anything the client sent;
 * errors from `lookupSecret` or the replay guard propagate (they are server faults).
 */
export async function verifyRequestSignature(req: IncomingSignedRequest, opts: VerifyOptions): Promise<VerifyResult> {
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  const maxAge = opts.maxAgeSeconds ?? DEFAULT_MAX_AGE_SECONDS;
  if (!Number.isFinite(now) || !Number.isFinite(maxAge) || maxAge <= 0) {
    throw new RangeError('now and maxAgeSeconds must be finite seconds');
  }

  const inputField = fieldValue(req.headers, 'signature-input');
  const signatureField = fieldValue(req.headers, 'signature');
  const digestField = fieldValue(req.headers, 'content-digest');
  if (inputField === undefined || signatureField === undefined || digestField === undefined) return fail('missing');

  const parsed = parseSignatureFields(inputField, signatureField);
  if (!parsed.ok) return parsed;
  const { components, params, paramsText, signature } = parsed;

  if (params.created > now + FUTURE_SKEW_SECONDS) return fail('future');
  if (now - params.created > maxAge) return fail('expired');
  if (!isToken(req.method) || !isTargetUri(req.url)) return fail('malformed');
  if (digestField !== contentDigest(req.body ?? '')) return fail('bad-digest');

  const secret = await opts.lookupSecret(params.keyid);
  if (secret === undefined || secret.length < MIN_SECRET_BYTES) return fail('unknown-key');

  // The base is rebuilt from the request as received; the client only chose the order.
  const values = { '@method': req.method, '@target-uri': req.url, 'content-digest': digestField };
  const expected = hmac(secret, buildSignatureBase(components, values, paramsText));
  if (signature.length !== HMAC_BYTES || !timingSafeEqual(signature, expected)) return fail('bad-signature');

  const ttl = Math.ceil(maxAge) + FUTURE_SKEW_SECONDS + 1; // as long as the signature could be accepted
  if (!(await opts.replay.firstUse(replayKey(params.keyid, params.nonce), ttl))) return fail('replayed');
  return { ok: true, keyId: params.keyid };
}

function fail(reason: SignatureFailure): { ok: false; reason: SignatureFailure } {
  return { ok: false, reason };
}

// RFC 9421 §2.1: one value per field, repeated lines joined with ", ", outer whitespace removed.
function fieldValue(headers: IncomingSignedRequest['headers'], name: string): string | undefined {
  if (!Object.hasOwn(headers, name)) return undefined;
  const raw = headers[name];
  if (typeof raw !== 'string' && !Array.isArray(raw)) return undefined;
  const joined = typeof raw === 'string' ? raw : raw.join(', ');
  const value = joined.replace(/^[ \t]+|[ \t]+$/g, '');
  return value === '' ? undefined : value;
}

/** A fixed-length key (Redis-friendly) that cannot collide across different (keyId, nonce) pairs. */
function replayKey(keyId: string, nonce: string): string {
  return `httpsig:${createHash('sha256').update(JSON.stringify([keyId, nonce])).digest('hex')}`;
}

interface SignatureParams {
  created: number;
  keyid: string;
  alg: string;
  nonce: string;
}

type ParsedSignature =
  | { ok: true; components: ComponentId[]; params: SignatureParams; paramsText: string; signature: Buffer }
  | { ok: false; reason: SignatureFailure };

function parseSignatureFields(inputField: string, signatureField: string): ParsedSignature {
  if (inputField.length > MAX_FIELD_CHARS || signatureField.length > MAX_FIELD_CHARS) return fail('malformed');
  const inputs = parseStrictDictionary(inputField);
  const signatures = parseStrictDictionary(signatureField);
  if (!inputs || !signatures || inputs.size !== 1 || signatures.size !== 1) return fail('malformed');

  const [label, input] = [...inputs][0]!;
  const sig = signatures.get(label);
  if (!sig || isInnerList(sig) || !(sig[0] instanceof ArrayBuffer) || sig[1].size > 0) return fail('malformed');
  if (!isInnerList(input)) return fail('malformed');

  const components = readComponents(input[0]);
  if (!Array.isArray(components)) return fail(components);
  const params = readParams(input[1]);
  if (!('created' in params)) return fail(params.reason);
  // The canonical serialisation of what we parsed: the same text an honest signer produced.
  const paramsText = serializeInnerList(input);
  return { ok: true, components, params, paramsText, signature: Buffer.from(sig[0]) };
}

function readComponents(items: Item[]): ComponentId[] | SignatureFailure {
  const seen: ComponentId[] = [];
  for (const [id, params] of items) {
    if (typeof id !== 'string') return 'malformed';
    if (params.size > 0 || !(COMPONENTS as readonly string[]).includes(id)) return 'components';
    if (seen.includes(id as ComponentId)) return 'malformed'; // RFC 9421 §2.5: never listed twice
    seen.push(id as ComponentId);
  }
  return seen.length === COMPONENTS.length ? seen : 'components';
}

function readParams(found: Parameters): SignatureParams | { reason: SignatureFailure } {
  if ([...found.keys()].some((name) => !(PARAM_NAMES as readonly string[]).includes(name))) return { reason: 'malformed' };
  const created = found.get('created');
  const keyid = found.get('keyid');
  const alg = found.get('alg');
  const nonce = found.get('nonce');
  if (created === undefined || keyid === undefined || alg === undefined || nonce === undefined) return { reason: 'components' };
  if (typeof created !== 'number' || !Number.isSafeInteger(created) || created < 0) return { reason: 'malformed' };
  if (!isParamString(keyid) || !isParamString(alg) || !isParamString(nonce)) return { reason: 'malformed' };
  if (alg !== SIGNATURE_ALG) return { reason: 'malformed' };
  return { created, keyid, alg, nonce };
}

function isParamString(item: BareItem): item is string {
  return typeof item === 'string' && item.length > 0 && item.length <= MAX_PARAM_CHARS;
}

// ---------------------------------------------------------------------------------------------
// Signature base (RFC 9421 §2.5)

/**
 * One line per covered component, `"<id>": <value>`, then the `"@signature-params"` line; lines
 * joined by LF with no trailing LF.
 */
function buildSignatureBase(
  order: readonly ComponentId[],
  values: Record<ComponentId, string>,
  paramsText: string,
): string {
  const lines = order.map((id) => `${serializeString(id)}: ${values[id]}`);
  lines.push(`"@signature-params": ${paramsText}`);
  return lines.join('\n');
}

/** `("@method" "@target-uri" "content-digest");created=…;keyid="…";alg="hmac-sha256";nonce="…"` */
function serializeSignatureParams(components: readonly ComponentId[], params: SignatureParams): string {
  const items: Item[] = components.map((id) => [id, new Map()]);
  return serializeInnerList([items, new Map(Object.entries(params))]);
}

function hmac(secret: Uint8Array, base: string): Buffer {
  return createHmac('sha256', secret).update(base, 'utf8').digest();
}

function toBytes(value: Uint8Array | string): Uint8Array {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

function isToken(method: string): boolean {
  return typeof method === 'string' && method.length <= 32 && TOKEN.test(method);
}

// Visible ASCII only: a CR/LF (or anything URL parsing would quietly drop) must never reach the base.
function isTargetUri(url: string): boolean {
  if (typeof url !== 'string' || url.length > 8192 || !VISIBLE_ASCII.test(url)) return false;
  try {
    const parsed = new URL(url);
    return (parsed.protocol === 'https:' || parsed.protocol === 'http:') && parsed.host !== '';
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Structured Field Values (RFC 8941/9651), parsed strictly: a field must be exactly the canonical
// serialisation of what it parses to, give or take optional whitespace. That refuses a duplicate
// dictionary key or parameter (the parser would keep only the last), a decimal written as an
// integer's neighbour, and a non-canonical byte sequence, instead of quietly normalising them.

function parseStrictDictionary(text: string): Dictionary | undefined {
  try {
    const dictionary = parseDictionary(text);
    return withoutWhitespace(serializeDictionary(dictionary)) === withoutWhitespace(text) ? dictionary : undefined;
  } catch (err) {
    if (err instanceof ParseError || err instanceof SerializeError) return undefined;
    throw err;
  }
}

// Whitespace inside a string survives the round trip, so removing it on both sides compares only
// the structure.
function withoutWhitespace(text: string): string {
  return text.replace(/[ \t]/g, '');
}

// ---------------------------------------------------------------------------------------------
// In-memory replay guard

export interface MemoryReplayGuardOptions {
  /** Hard cap on remembered entries (default 100 000). */
  maxEntries?: number;
  /** Clock in milliseconds (default Date.now), injectable for tests. */
  clock?: () => number;
}

/**
 * Single-process replay guard. Entries expire after their ttl and are pruned lazily. When the cap
 * is reached with live entries only, it fails closed (reports "seen"): evicting a live entry would
 * let that signature be replayed. Only requests with a valid signature ever add entries.
 */
export class MemoryReplayGuard implements ReplayGuard {
  readonly #entries = new Map<string, number>();
  readonly #maxEntries: number;
  readonly #clock: () => number;

  constructor(options: MemoryReplayGuardOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#clock = options.clock ?? Date.now;
    if (!Number.isSafeInteger(this.#maxEntries) || this.#maxEntries < 1) throw new RangeError('maxEntries must be >= 1');
  }

  get size(): number {
    return this.#entries.size;
  }

  async firstUse(key: string, ttlSeconds: number): Promise<boolean> {
    if (typeof key !== 'string' || key === '') throw new TypeError('replay key must be a non-empty string');
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new RangeError('ttlSeconds must be positive');
    const now = this.#clock();
    this.#prune(now, false);
    const expiresAt = this.#entries.get(key);
    if (expiresAt !== undefined && expiresAt > now) return false;
    this.#entries.delete(key);
    if (this.#entries.size >= this.#maxEntries) {
      this.#prune(now, true);
      if (this.#entries.size >= this.#maxEntries) return false;
    }
    this.#entries.set(key, now + ttlSeconds * 1000);
    return true;
  }

  // Insertion order is roughly expiry order, so the cheap pass stops at the first live entry;
  // the full pass runs only when the cap is hit.
  #prune(now: number, full: boolean): void {
    for (const [key, expiresAt] of this.#entries) {
      if (expiresAt <= now) this.#entries.delete(key);
      else if (!full) return;
    }
  }
}
