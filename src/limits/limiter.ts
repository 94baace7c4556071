import type { FastifyBaseLogger } from 'fastify';
import { serializeItem } from 'structured-headers';
import type { LimitSettings, RatePolicyName } from '../config/config.js';
import { HttpProblem } from '../http/problem.js';
import type { RateDecision, RateStore } from './rate-store.js';

/** Policies that refuse service when their store cannot answer; the others let the request through. */
const FAIL_CLOSED: ReadonlySet<RatePolicyName> = new Set(['signin-ip', 'signin-account', 'generation']);
/** Bound on the windows remembered as spent (a flood of distinct addresses cannot grow it further). */
const SPENT_LIMIT = 10_000;

export interface Charge {
  policy: RatePolicyName;
  decision: RateDecision | null;
}

/** What `consume` reports to metrics. */
export interface LimiterEvents {
  rejected(policy: RatePolicyName): void;
  storeFailed(policy: RatePolicyName): void;
}

/**
 * Charges a policy's budget for one subject (a user id or a client address) and turns the answer
 * into the draft-ietf-httpapi-ratelimit-headers fields, a 429 or — when the store is down — a 503
 * for the fail-closed policies.
 */
export class RateLimiter {
  private lastWarning = 0;
  /** `policy:subject` → when its window resets, for windows this instance saw spent */
  private readonly spent = new Map<string, number>();
  /** each policy's `RateLimit-Policy` item; they never change */
  private readonly policyItems: Record<RatePolicyName, string>;
  /** each policy's name as a structured-field string, the start of its `RateLimit` item */
  private readonly policyNames: Record<RatePolicyName, string>;

  constructor(
    private readonly settings: LimitSettings,
    private readonly store: RateStore,
    private readonly log: FastifyBaseLogger,
    private readonly events: LimiterEvents,
  ) {
    const items = Object.entries(settings.rates).map(([policy, { quota, windowSeconds }]) => [
      policy,
      serializeItem(policy, new Map([['q', quota], ['w', windowSeconds]])),
    ]);
    this.policyItems = Object.fromEntries(items) as Record<RatePolicyName, string>;
    this.policyNames = Object.fromEntries(Object.keys(settings.rates).map((policy) => [policy, serializeItem(policy)])) as Record<RatePolicyName, string>;
  }

  get costs(): LimitSettings['costs'] {
    return this.settings.costs;
  }

  /**
   * Charges `cost` units; throws the 429 (or 503) problem, headers of `earlier` charges included,
   * when refused. In memory the answer is immediate (no promise, no extra turn of the event loop);
   * with Redis it is a promise that rejects with the problem.
   */
  consume(policy: RatePolicyName, subject: string, cost = 1, earlier: Charge[] = []): Charge | Promise<Charge> {
    const { quota, windowSeconds } = this.settings.rates[policy];
    const key = `${policy}:${subject}`;
    let answer: RateDecision | Promise<RateDecision>;
    try {
      answer = this.store.consume(key, cost, quota, windowSeconds * 1000);
    } catch (error) {
      return this.storeDown(policy, error);
    }
    if (answer instanceof Promise) {
      return answer.then(
        (decision) => this.decide(policy, key, decision, earlier),
        (error: unknown) => this.storeDown(policy, error),
      );
    }
    return this.decide(policy, key, answer, earlier);
  }

  /**
   * Milliseconds until the window of `policy` for `subject` resets, when this instance saw it spent;
   * 0 otherwise. No store round trip: another instance may have spent it unseen, and the next
   * `consume` here finds out.
   */
  spentFor(policy: RatePolicyName, subject: string): number {
    if (this.spent.size === 0) return 0;
    const key = `${policy}:${subject}`;
    const resetAt = this.spent.get(key);
    if (resetAt === undefined) return 0;
    const resetMs = resetAt - Date.now();
    if (resetMs > 0) return resetMs;
    this.spent.delete(key);
    return 0;
  }

  /** The 429 for a spent window of `policy` that resets in `resetMs`; counted as a rejection. */
  refuse(policy: RatePolicyName, resetMs: number, earlier: Charge[] = []): HttpProblem {
    return this.refusal({ policy, decision: { allowed: false, remaining: 0, resetMs } }, earlier);
  }

  /** `RateLimit-Policy` and `RateLimit` structured-field lists for the charges made so far. */
  headers(charges: Charge[]): Record<string, string> {
    let policies = '';
    let state = '';
    for (const { policy, decision } of charges) {
      if (!decision) continue;
      const separator = policies ? ', ' : '';
      policies += separator + this.policyItems[policy];
      // integers need no serialiser; building the item per request would cost more than the rest of the header
      state += `${separator}${this.policyNames[policy]};r=${decision.remaining};t=${Math.max(0, Math.ceil(decision.resetMs / 1000))}`;
    }
    return policies ? { 'ratelimit-policy': policies, ratelimit: state } : {};
  }

  private decide(policy: RatePolicyName, key: string, decision: RateDecision, earlier: Charge[]): Charge {
    if (decision.remaining === 0) this.rememberSpent(key, decision.resetMs);
    if (!decision.allowed) throw this.refusal({ policy, decision }, earlier);
    return { policy, decision };
  }

  /** The store did not answer: fail-closed policies refuse with a 503, the others let the request through. */
  private storeDown(policy: RatePolicyName, error: unknown): Charge {
    this.events.storeFailed(policy);
    this.warn(error);
    if (FAIL_CLOSED.has(policy)) {
      throw new HttpProblem(503, 'rate-limit-unavailable', 'This service cannot check its rate limits right now; retry shortly.', {
        headers: { 'retry-after': '5' },
      });
    }
    return { policy, decision: null };
  }

  private refusal(charge: Charge & { decision: RateDecision }, earlier: Charge[]): HttpProblem {
    const { policy, decision } = charge;
    this.events.rejected(policy);
    const retryAfter = Math.max(1, Math.ceil(decision.resetMs / 1000));
    return new HttpProblem(429, 'rate-limited', `Too many requests for "${policy}"; retry in ${retryAfter} s.`, {
      headers: { ...this.headers([...earlier, charge]), 'retry-after': String(retryAfter) },
      extensions: { policy, retry_after: retryAfter },
    });
  }

  private rememberSpent(key: string, resetMs: number): void {
    const now = Date.now();
    if (this.spent.size >= SPENT_LIMIT) {
      for (const [k, resetAt] of this.spent) if (resetAt <= now) this.spent.delete(k);
      for (const k of this.spent.keys()) {
        if (this.spent.size < SPENT_LIMIT * 0.9) break;
        this.spent.delete(k);
      }
    }
    this.spent.delete(key);
    this.spent.set(key, now + resetMs);
  }

  private warn(error: unknown): void {
    const now = Date.now();
    if (now - this.lastWarning < 10_000) return;
    this.lastWarning = now;
    this.log.warn({ err: error instanceof Error ? { message: error.message } : undefined }, 'rate-limit store unavailable');
  }
}
