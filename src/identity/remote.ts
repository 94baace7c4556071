import { createPublicKey, type KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isRevocationEvent, type RevocationView } from './revocations.js';
import { KeysUnavailableError, type KeyLookup } from './tokens.js';

const FETCH_TIMEOUT_MS = 2_000;
/** An unknown kid makes at most one JWKS fetch per this interval (a flood of forged kids cannot hammer the auth service). */
const REFETCH_INTERVAL_MS = 5_000;

/**
 * The auth service's JWKS, for an API node that verifies tokens locally: cached, fetched again on an
 * unknown kid (rate-limited). Only Ed25519 keys are taken. When the keys cannot be fetched at all,
 * lookups fail with KeysUnavailableError (503), never with "accept".
 */
export function remoteKeyLookup(authUrl: string): KeyLookup & { refresh(): Promise<void> } {
  const url = new URL('/api/auth/jwks.json', authUrl);
  let keys = new Map<string, KeyObject>();
  let lastFetch = 0;
  let loaded = false;
  let pending: Promise<void> | null = null;

  async function fetchKeys(): Promise<void> {
    lastFetch = Date.now();
    const response = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: 'error' });
    if (!response.ok) throw new Error(`JWKS answered ${response.status}`);
    const body = (await response.json()) as { keys?: unknown };
    const next = new Map<string, KeyObject>();
    for (const jwk of Array.isArray(body.keys) ? body.keys : []) {
      const k = jwk as Record<string, unknown>;
      if (k.kty !== 'OKP' || k.crv !== 'Ed25519' || typeof k.x !== 'string' || typeof k.kid !== 'string' || 'd' in k) continue;
      next.set(k.kid, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: k.x }, format: 'jwk' }));
    }
    keys = next;
    loaded = true;
  }

  function refresh(): Promise<void> {
    pending ??= fetchKeys().finally(() => (pending = null));
    return pending;
  }

  const lookup = async (kid: string) => {
    const known = keys.get(kid);
    if (known) return known;
    if (loaded && Date.now() - lastFetch < REFETCH_INTERVAL_MS) return undefined;
    try {
      await refresh();
    } catch {
      if (!loaded) throw new KeysUnavailableError('the auth service keys cannot be fetched');
      return undefined;
    }
    return keys.get(kid);
  };
  return Object.assign(lookup, { refresh });
}

/**
 * Follows the auth service's revocation feed (server-sent events) into the local view. The view is
 * ready only while the stream is open and has spoken within `staleMs` (the feed sends a heartbeat
 * every 5 s); otherwise every authenticated request on this node answers 503.
 */
export class RevocationFeedFollower {
  private controller = new AbortController();
  private lastMessage = 0;
  private connected = false;
  private stopped = false;
  private watchdog: NodeJS.Timeout;

  constructor(
    private readonly options: { authUrl: string; serviceToken: string; view: RevocationView; staleMs?: number; onError?: (error: unknown) => void },
  ) {
    options.view.setReady(false);
    this.watchdog = setInterval(() => this.updateReady(), 1_000);
    this.watchdog.unref();
  }

  start(): void {
    void this.loop();
  }

  /** Resolves when the feed delivered its snapshot, or after `timeoutMs`. */
  async waitUntilReady(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (this.options.view.isReady()) return true;
      await sleep(50);
    }
    return this.options.view.isReady();
  }

  close(): void {
    this.stopped = true;
    clearInterval(this.watchdog);
    this.controller.abort();
  }

  private updateReady(): void {
    const fresh = this.connected && Date.now() - this.lastMessage < (this.options.staleMs ?? 15_000);
    this.options.view.setReady(fresh);
  }

  private async loop(): Promise<void> {
    let delay = 250;
    while (!this.stopped) {
      try {
        await this.follow();
        delay = 250;
      } catch (error) {
        if (!this.stopped) this.options.onError?.(error);
      }
      this.connected = false;
      this.updateReady();
      if (this.stopped) return;
      await sleep(delay);
      delay = Math.min(delay * 2, 5_000);
    }
  }

  private async follow(): Promise<void> {
    this.controller = new AbortController();
    const connectTimer = setTimeout(() => this.controller.abort(), FETCH_TIMEOUT_MS);
    const response = await fetch(new URL('/api/auth/revocations', this.options.authUrl), {
      headers: { 'x-celforge-service-token': this.options.serviceToken, accept: 'text/event-stream' },
      signal: this.controller.signal,
      redirect: 'error',
    });
    clearTimeout(connectTimer);
    if (!response.ok || !response.body) throw new Error(`revocation feed answered ${response.status}`);
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of response.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        this.handle(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
      if (buffer.length > 1_000_000) throw new Error('revocation feed message too large');
    }
  }

  private handle(message: string): void {
    let event = 'message';
    let data = '';
    for (const line of message.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data += line.slice(6);
    }
    const parsed: unknown = JSON.parse(data);
    if (event === 'snapshot' && Array.isArray(parsed)) {
      for (const item of parsed) if (isRevocationEvent(item)) this.options.view.apply(item);
      this.connected = true;
    } else if (event === 'revocation' && isRevocationEvent(parsed)) {
      this.options.view.apply(parsed);
    }
    this.lastMessage = Date.now();
    this.updateReady();
  }
}
