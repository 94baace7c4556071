import type { FastifyInstance } from 'fastify';
import { expect } from 'vitest';
import { DEFAULT_LIMITS, parseRateLimits, type LimitSettings } from '../../src/config/config.js';

export type Json = Record<string, any>;

/**
 * The production suites submit and poll many jobs per user; rate limits and quotas are proved in
 * test/limits, so here they are set out of the way (the same settings for in-process apps and for
 * real processes).
 */
const ROOMY_RATES = 'generation=100000/60s,read=100000/60s,write=100000/60s,anonymous=100000/60s';
export const ROOMY_LIMITS: LimitSettings = { ...DEFAULT_LIMITS, rates: parseRateLimits(ROOMY_RATES), activeJobs: 100_000, jobsPerDay: 100_000 };
export const ROOMY_LIMITS_ENV: Record<string, string> = {
  CELFORGE_RATE_LIMITS: ROOMY_RATES,
  CELFORGE_QUOTA_ACTIVE_JOBS: '100000',
  CELFORGE_QUOTA_JOBS_PER_DAY: '100000',
};

export { expectNoPath, expectProblem, PATH_LEAKS } from '../support/problem.js';

export async function generate(app: FastifyInstance, authorization: Record<string, string>, body: unknown, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url: '/api/anime/generate', headers: { ...authorization, ...headers }, payload: body as Json });
}

/** Polls the job until it reaches one of `states` (the worker runs in the same process). */
export async function waitFor(app: FastifyInstance, authorization: Record<string, string>, jobId: string, states: string[], timeoutMs = 20_000): Promise<Json> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const response = await app.inject({ url: `/api/anime/jobs/${jobId}`, headers: authorization });
    const job = response.json() as Json;
    if (states.includes(job.status)) return job;
    if (Date.now() > until) throw new Error(`job ${jobId} stayed ${job.status}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
