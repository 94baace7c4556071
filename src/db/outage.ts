import type { FastifyBaseLogger } from 'fastify';
import { isStoreReady, type Store } from './database.js';
import { isStoreUnavailable } from './faults.js';

/** An outage ends only after the store answered and no failure was seen for this long (no flapping logs). */
const QUIET_MS = 5_000;

/**
 * Tracks store outages seen by requests and jobs, so that an outage is logged once when it begins
 * and once when it ends (with its length and how many operations it failed), not once per request.
 * While one is open, a probe asks the store every second whether it is back.
 */
export class StoreOutage {
  #since: number | null = null;
  #lastFailure = 0;
  #failures = 0;
  #probe: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: Store,
    private readonly log: Pick<FastifyBaseLogger, 'error' | 'warn'>,
    private readonly options: { probeMs?: number; quietMs?: number } = {},
  ) {}

  /** whether an outage is open */
  get down(): boolean {
    return this.#since !== null;
  }

  /** Reports an error; true when it is a store outage (then the caller answers "try later"). */
  report(error: unknown): boolean {
    if (!isStoreUnavailable(error)) return false;
    this.#failures += 1;
    this.#lastFailure = Date.now();
    if (this.#since === null) {
      this.#since = this.#lastFailure;
      this.log.error({ err: error }, 'store unavailable: requests get 503 and jobs wait until it is back');
      this.#probe = setInterval(() => void this.#check(), this.options.probeMs ?? 1000);
      this.#probe.unref();
    }
    return true;
  }

  close(): void {
    if (this.#probe) clearInterval(this.#probe);
    this.#probe = null;
  }

  async #check(): Promise<void> {
    if (this.#since === null || Date.now() - this.#lastFailure < (this.options.quietMs ?? QUIET_MS)) return;
    if (!(await isStoreReady(this.store)) || this.#since === null) return;
    this.log.warn({ downMs: Date.now() - this.#since, failures: this.#failures }, 'store available again');
    this.#since = null;
    this.#failures = 0;
    this.close();
  }
}
