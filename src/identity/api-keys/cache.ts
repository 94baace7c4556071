import type { ApiKeyState } from './store.js';

interface Entry {
  state: ApiKeyState;
  loadedAt: number;
  /** the decrypted signing secret, once a signed request needed it */
  secret?: Buffer;
}

/**
 * A small LRU of key rows by id with a short TTL, so an API-key request usually costs no store
 * round trip. Every eviction bumps an epoch: a row read from the store before an eviction is not
 * cached after it, so a revoke racing with a read cannot leave a stale row behind.
 */
export class ApiKeyCache {
  readonly #entries = new Map<string, Entry>();
  #epoch = 0;

  constructor(
    private readonly maxEntries = 1000,
    private readonly ttlMs = 30_000,
    private readonly clock: () => number = Date.now,
  ) {}

  get epoch(): number {
    return this.#epoch;
  }

  get(id: string): Entry | undefined {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    this.#entries.delete(id);
    if (this.clock() - entry.loadedAt >= this.ttlMs) return undefined;
    this.#entries.set(id, entry); // most recently used last
    return entry;
  }

  /** Caches a row read while the epoch was `epochAtRead`; ignored if anything was evicted since. */
  set(state: ApiKeyState, epochAtRead: number): void {
    if (epochAtRead !== this.#epoch) return;
    this.#entries.delete(state.id);
    this.#entries.set(state.id, { state, loadedAt: this.clock() });
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
  }

  evict(id: string): void {
    this.#epoch++;
    this.#entries.delete(id);
  }

  evictUser(userId: string): void {
    this.#epoch++;
    for (const [id, entry] of this.#entries) if (entry.state.user_id === userId) this.#entries.delete(id);
  }

  clear(): void {
    this.#epoch++;
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
