import { hash, timingSafeEqual } from 'node:crypto';
import type { ApiKeyScope, Principal } from '../../access/principal.js';
import type { Auditor } from '../../audit/events.js';
import type { Store } from '../../db/database.js';
import type { EventBus } from '../../db/event-bus.js';
import { HttpProblem, notFound } from '../../http/problem.js';
import type { Encryptor } from '../encryption.js';
import { ApiKeyCache } from './cache.js';
import { EvictionBus, type Eviction } from './eviction.js';
import { API_KEY_ID, apiKeyIdOf, hashApiKey, newApiKey, newSigningSecret } from './format.js';
import { findApiKeyState, insertApiKeyWithinCap, listApiKeys, revokeApiKey, touchApiKey, type ApiKeyState } from './store.js';

export { API_KEY_SCOPES, type ApiKeyScope } from '../../access/principal.js';

export const MAX_KEYS_PER_USER = 25;
const DAY_MS = 86_400_000;
export const DEFAULT_LIFETIME_DAYS = 90;
export const MAX_LIFETIME_DAYS = 365;
const TOUCH_INTERVAL_MS = 60_000;

/** Why an API key was refused: for the audit trail only; the client always hears the same thing. */
export type ApiKeyFailure = 'malformed' | 'unknown' | 'revoked' | 'expired' | 'user-disabled';

export class ApiKeyRefused extends Error {
  constructor(
    readonly reason: ApiKeyFailure,
    readonly keyId: string | null,
  ) {
    super(`api key refused (${reason})`);
  }
}

export interface NewApiKeyInput {
  name: string;
  scopes: ApiKeyScope[];
  expires_at?: string;
}

export interface RequestContext {
  ip?: string | null;
  requestId?: string | null;
}

interface Logger {
  warn(obj: object, msg: string): void;
}

export interface ApiKeyServiceOptions {
  store: Store;
  encryptor: Encryptor;
  audit: Auditor;
  /** scale-out: evictions reach every instance through it */
  bus: EventBus | null;
  /** the eviction channel, `${redisPrefix}apikeys` */
  channel: string;
  log: Logger;
  /** throws unless this session verified its second factor recently (creating an admin-scope key needs it) */
  assertSteppedUp: (principal: Principal) => Promise<void>;
  clock?: () => number;
}

/**
 * API keys: creation (the key and a random signing secret shown once; the key stored as a SHA-256
 * hash, the secret encrypted), listing, revocation effective at once on every instance, and
 * authentication from a cached row.
 */
export class ApiKeyService {
  readonly #cache: ApiKeyCache;
  readonly #bus: EvictionBus;
  readonly #touched = new Map<string, number>();
  readonly #clock: () => number;

  constructor(private readonly options: ApiKeyServiceOptions) {
    this.#clock = options.clock ?? (() => Date.now());
    this.#cache = new ApiKeyCache(1000, 30_000, this.#clock);
    this.#bus = new EvictionBus(options.bus, options.channel, (eviction) => this.#apply(eviction), options.log);
  }

  async create(principal: Principal, input: NewApiKeyInput, context: RequestContext = {}) {
    if (principal.via !== 'token') {
      throw new HttpProblem(403, 'session-required', 'API keys are made from a signed-in session, not with another API key.');
    }
    const name = input.name.trim();
    if (name.length === 0 || name.length > 100 || /\p{Cc}/u.test(name)) {
      throw new HttpProblem(400, 'invalid-name', 'The name must be 1–100 characters without control characters.');
    }
    const scopes = [...new Set(input.scopes)];
    if (scopes.includes('admin')) {
      if (principal.role !== 'admin') throw new HttpProblem(403, 'forbidden', 'Only administrators can grant the "admin" scope.');
      // the same bar as admin work in a session: enrolled second factor, verified in the last 15 minutes
      await this.options.assertSteppedUp(principal);
    }
    const now = this.#clock();
    const expiresAt = this.#expiry(input.expires_at, now);
    const nowIso = new Date(now).toISOString();
    const { id, key } = newApiKey();
    // Random, not derived from the key: whoever sees the key in a request header cannot sign.
    const signingSecret = newSigningSecret();
    const sealedSecret = this.options.encryptor.encrypt(signingSecret, id);
    const signingSecretText = signingSecret.toString('base64url');
    signingSecret.fill(0);
    const row = {
      id,
      user_id: principal.userId,
      name,
      key_hash: hashApiKey(key),
      scopes: JSON.stringify(scopes),
      signing_secret: sealedSecret,
      created_at: nowIso,
      expires_at: expiresAt,
      last_used_at: null,
      revoked_at: null,
    };
    if (!(await insertApiKeyWithinCap(this.options.store, row, MAX_KEYS_PER_USER, nowIso))) {
      throw new HttpProblem(409, 'too-many-api-keys', `A user can hold at most ${MAX_KEYS_PER_USER} live API keys; revoke one first.`);
    }
    this.#audit('auth.apikey.create', principal, id, context, { scopes, expires_at: expiresAt });
    return { id, key, signing_secret: signingSecretText, prefix: `cfk_${id}`, name, scopes, created_at: nowIso, expires_at: expiresAt };
  }

  async list(userId: string) {
    const rows = await listApiKeys(this.options.store.db, userId);
    const now = new Date(this.#clock()).toISOString();
    return rows.map((row) => ({
      id: row.id,
      prefix: `cfk_${row.id}`,
      name: row.name,
      scopes: parseScopes(row.scopes),
      created_at: row.created_at,
      expires_at: row.expires_at,
      last_used_at: row.last_used_at,
      expired: row.expires_at !== null && row.expires_at <= now,
    }));
  }

  /** Revokes one of the caller's keys; from the next request on, on every instance, it is refused. */
  async revoke(principal: Principal, id: string, context: RequestContext = {}): Promise<void> {
    const revoked = API_KEY_ID.test(id) && (await revokeApiKey(this.options.store.db, id, principal.userId, new Date(this.#clock()).toISOString()));
    if (!revoked) throw notFound('No such API key.');
    await this.#evict({ kind: 'key', id });
    this.#audit('auth.apikey.revoke', principal, id, context, { via: principal.via });
  }

  /**
   * Drops every cached key row of this user on every instance. Call it after disabling a user or
   * changing their role, so their keys follow on the very next request (otherwise within 30 s).
   */
  evictUserKeys(userId: string): Promise<void> {
    return this.#evict({ kind: 'user', id: userId });
  }

  /** Drops this user's cached key rows here only (another instance's change, already applied there). */
  forgetUser(userId: string): void {
    this.#apply({ kind: 'user', id: userId });
  }

  /** The principal for a presented key, or ApiKeyRefused. */
  async authenticate(key: string): Promise<Principal> {
    const id = apiKeyIdOf(key);
    if (id === null) throw new ApiKeyRefused('malformed', null);
    return this.#admit(key, id, await this.#state(id));
  }

  /** The principal for a key whose row is cached (no store round trip) and which is accepted; else null. */
  known(key: string): Principal | null {
    const id = apiKeyIdOf(key);
    const entry = id !== null && this.#bus.live ? this.#cache.get(id) : undefined;
    if (!entry) return null;
    try {
      return this.#admit(key, id!, entry.state);
    } catch (error) {
      if (error instanceof ApiKeyRefused) return null;
      throw error;
    }
  }

  /** The decrypted HMAC secret of a live key, for signature checks. */
  async signingSecret(id: string): Promise<Buffer | undefined> {
    if (!API_KEY_ID.test(id)) return undefined;
    const entry = this.#bus.live ? this.#cache.get(id) : undefined;
    if (entry?.secret) return entry.secret;
    const state = entry?.state ?? (await this.#state(id));
    if (!state?.signing_secret || state.revoked_at !== null) return undefined;
    const secret = this.options.encryptor.decrypt(state.signing_secret, id);
    if (entry) entry.secret = secret;
    return secret;
  }

  close(): void {
    this.#bus.close();
  }

  #admit(key: string, id: string, state: ApiKeyState | undefined): Principal {
    const presented = hash('sha256', key, 'buffer');
    const derived = state && derivedOf(state);
    if (!derived || !timingSafeEqual(presented, derived.keyHash)) throw new ApiKeyRefused('unknown', id);
    const now = this.#clock();
    if (state.revoked_at !== null) throw new ApiKeyRefused('revoked', id);
    if (derived.expiresAt <= now) throw new ApiKeyRefused('expired', id);
    if (state.disabled !== 0) throw new ApiKeyRefused('user-disabled', id);
    this.#touch(id, now);
    return { userId: state.user_id, email: state.email, role: state.role, sessionId: null, via: 'api-key', scopes: derived.scopes, apiKeyId: id };
  }

  #audit(action: string, principal: Principal, id: string, context: RequestContext, detail: Record<string, unknown>): void {
    this.options.audit.record({
      action,
      outcome: 'success',
      actorId: principal.userId,
      target: `api-key:${id}`,
      ip: context.ip,
      requestId: context.requestId,
      detail,
    });
  }

  async #state(id: string): Promise<ApiKeyState | undefined> {
    const trusted = this.#bus.live;
    if (trusted) {
      const cached = this.#cache.get(id);
      if (cached) return cached.state;
    }
    const epoch = this.#cache.epoch;
    const state = await findApiKeyState(this.options.store.db, id);
    if (state && trusted) this.#cache.set(state, epoch);
    return state;
  }

  async #evict(eviction: Eviction): Promise<void> {
    this.#apply(eviction);
    await this.#bus.publish(eviction);
  }

  #apply(eviction: Eviction | 'all'): void {
    if (eviction === 'all') this.#cache.clear();
    else if (eviction.kind === 'key') this.#cache.evict(eviction.id);
    else this.#cache.evictUser(eviction.id);
  }

  // last_used_at: at most one write a minute per key and instance, off the request path.
  #touch(id: string, now: number): void {
    const last = this.#touched.get(id);
    if (last !== undefined && now - last < TOUCH_INTERVAL_MS) return;
    this.#touched.set(id, now);
    if (this.#touched.size > 10_000) {
      for (const [key, at] of this.#touched) if (now - at >= TOUCH_INTERVAL_MS) this.#touched.delete(key);
    }
    touchApiKey(this.options.store.db, id, new Date(now).toISOString()).catch((error: unknown) => {
      this.options.log.warn({ err: error }, 'api key last-used time not stored');
    });
  }

  #expiry(text: string | undefined, now: number): string {
    if (text === undefined) return new Date(now + DEFAULT_LIFETIME_DAYS * DAY_MS).toISOString();
    const at = Date.parse(text);
    if (!Number.isFinite(at) || at <= now || at > now + MAX_LIFETIME_DAYS * DAY_MS) {
      throw new HttpProblem(400, 'invalid-expiry', `expires_at must be a time in the future, at most ${MAX_LIFETIME_DAYS} days ahead.`);
    }
    return new Date(at).toISOString();
  }
}

/** What a key row gives every request, worked out once per row (a cached row serves many requests). */
interface DerivedFromRow {
  keyHash: Buffer;
  scopes: readonly string[];
  /** ms since the epoch; Infinity for a key that does not expire */
  expiresAt: number;
}
const derivedFromRow = new WeakMap<ApiKeyState, DerivedFromRow>();

function derivedOf(state: ApiKeyState): DerivedFromRow {
  let derived = derivedFromRow.get(state);
  if (!derived) {
    // an admin scope counts only while the owner is an admin with a second factor, as admin sessions need
    const adminHolds = state.role === 'admin' && Number(state.second_factor) === 1;
    const scopes = parseScopes(state.scopes).filter((scope) => scope !== 'admin' || adminHolds);
    const expiresAt = state.expires_at === null ? Infinity : Date.parse(state.expires_at);
    derived = { keyHash: hashBytes(state.key_hash), scopes: Object.freeze(scopes), expiresAt: Number.isNaN(expiresAt) ? -Infinity : expiresAt };
    derivedFromRow.set(state, derived);
  }
  return derived;
}

function hashBytes(hex: string): Buffer {
  const bytes = Buffer.from(hex, 'hex');
  return bytes.length === 32 ? bytes : Buffer.alloc(32);
}

function parseScopes(text: string): string[] {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? value.filter((s): s is string => typeof s === 'string') : [];
  } catch {
    return [];
  }
}
