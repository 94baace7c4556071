import { expect, it } from 'vitest';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { generate, type Json } from './helpers.js';

describeEachDialect('scale-out with Redis unreachable', (dialect) => {
  const t = useTestApp(dialect, { redisUrl: 'redis://127.0.0.1:1', redisPrefix: 'cf-test-down:' }, { worker: false });

  it('a job is still accepted and stored as queued (announced once Redis is back)', { timeout: 20_000 }, async () => {
    const user = await signIn(t.app);
    const response = await generate(t.app, user.authorization, { prompt: 'while redis is down', type: 'image' });
    expect(response.statusCode).toBe(202);
    const id = (response.json() as Json).job_id;
    const row = await t.app.services.store.db.selectFrom('jobs').select('status').where('id', '=', id).executeTakeFirstOrThrow();
    expect(row.status).toBe('queued');
  });
});
