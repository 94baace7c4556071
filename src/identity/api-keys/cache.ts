import { LRUCache } from 'lru-cache';
import type { ApiKeyState } from './store.js';

interface Entry {
  state: ApiKeyState;
  /** the decrypted signing secret, once a signed request needed it */
  secret?: Buffer;
}

/**
 * A small LRU of key rows by id with a short TTL, so an API-key request usually costs no store
 * round trip. Every eviction bumps an epoch: a row read from the store before an eviction is not
 * cached after it, so a revoke racing with a read cannot leave a stale row behind.
 */
export class ApiKeyCache {
  readonly #entries: LRUCache<string, Entry>;
  #epoch = 0;

  constructor(maxEntries = 1000, ttlMs = 30_000, clock: () => number = Date.now) {
    // ttlResolution 0: every check reads the clock (a cached time would let a row outlive a test clock's jump)
    this.#entries = new LRUCache<string, Entry>({ max: maxEntries, ttl: ttlMs, ttlResolution: 0, perf: { now: clock } });
  }

  get epoch(): number {
    return this.#epoch;
  }

  get(id: string): Entry | undefined {
    return this.#entries.get(id);
  }

  /** Caches a row read while the epoch was `epochAtRead`; ignored if anything was evicted since. */
  set(state: ApiKeyState, epochAtRead: number): void {
    if (epochAtRead !== this.#epoch) return;
    this.#entries.set(state.id, { state });
  }

  evict(id: string): void {
    this.#epoch++;
    this.#entries.delete(id);
  }

  evictUser(userId: string): void {
    this.#epoch++;
    const ids = [...this.#entries.entries()].filter(([, entry]) => entry.state.user_id === userId).map(([id]) => id);
    for (const id of ids) this.#entries.delete(id);
  }

  clear(): void {
    this.#epoch++;
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
