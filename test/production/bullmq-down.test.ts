import { expect, it } from 'vitest';
import type { Principal } from '../../src/access/principal.js';
import { ProductionService } from '../../src/production/service.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { expectProblem, generate, ROOMY_LIMITS } from './helpers.js';

describeEachDialect('scale-out with Redis unreachable', (dialect) => {
  const t = useTestApp(dialect, { redisUrl: 'redis://127.0.0.1:1', redisPrefix: 'cf-test-down:', limits: ROOMY_LIMITS }, { worker: false });

  it('a submission fails closed: 503 problem+json with Retry-After, and no job is stored', { timeout: 20_000 }, async () => {
    const user = await signIn(t.app);
    const response = await generate(t.app, user.authorization, { prompt: 'while redis is down', type: 'image' });
    // Revocations cannot be confirmed (and the generation budget cannot be counted): never "accept" blindly.
    const problem = expectProblem(response, 503);
    expect(['urn:celforge:problem:auth-unavailable', 'urn:celforge:problem:rate-limit-unavailable']).toContain(problem.type);
    expect(response.headers['retry-after']).toBeDefined();
    const stored = await t.app.services.store.db.selectFrom('jobs').select('id').where('user_id', '=', user.userId).execute();
    expect(stored).toEqual([]);
  });

  it('a job the service accepts while Redis is down is stored as queued (the store is the truth; announced once Redis is back)', { timeout: 20_000 }, async () => {
    const user = await signIn(t.app);
    const { store, audit, production } = t.app.services;
    const service = new ProductionService({ store, audit, queue: production.queue, events: production.events, signer: production.signer, renderer: production.renderer });
    const principal: Principal = { userId: user.userId, email: user.email, role: 'user', sessionId: user.sessionId, via: 'token', scopes: null };
    const { job, replayed } = await service.generate(principal, { prompt: 'while redis is down', type: 'image' }, undefined, { ip: '127.0.0.1', requestId: 'redis-down' });
    expect(replayed).toBe(false);
    expect(job.status).toBe('queued');
    const row = await store.db.selectFrom('jobs').select(['status', 'user_id']).where('id', '=', job.job_id).executeTakeFirstOrThrow();
    expect(row).toEqual({ status: 'queued', user_id: user.userId });
  });
});
