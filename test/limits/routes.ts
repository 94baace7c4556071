import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { Services } from '../../src/app.js';
import { newJobRow } from '../../src/production/store.js';

/**
 * Routes mounted only in these tests: a stand-in for the generate route (it inserts a real job
 * row, so quotas count real rows), a sign-in stand-in, a read and a public address echo.
 */
export async function limitTestRoutes(app: FastifyInstance, services: Services) {
  app.get('/api/anime/_test/read', { config: { scope: 'jobs:read' } }, async (request) => ({ user: request.principal!.userId }));
  app.get('/api/anime/_test/whoami', { config: { auth: 'public' } }, async (request) => ({ ip: request.ip }));
  app.post(
    '/api/anime/_test/login',
    {
      config: { auth: 'public', rateClass: 'signin' },
      schema: { body: Type.Object({ email: Type.String({ maxLength: 320 }), password: Type.String({ maxLength: 256 }) }, { additionalProperties: false }) },
    },
    async (_request, reply) => reply.code(401).send({ ok: false }),
  );
  app.post<{ Body: { prompt: string; type: 'image' | 'video' } }>(
    '/api/anime/_test/generate',
    {
      config: { rateClass: 'generation', jobQuota: true },
      schema: {
        body: Type.Object(
          { prompt: Type.String({ minLength: 1, maxLength: 500 }), type: Type.Union([Type.Literal('image'), Type.Literal('video')]) },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      const job = newJobRow({ user_id: request.principal!.userId, type: request.body.type, prompt: request.body.prompt });
      await services.store.db.insertInto('jobs').values(job).execute();
      return reply.code(202).send({ job_id: job.id, status: 'queued' });
    },
  );
}

/** Parses `"name";a=1;b=2, "other";a=3` into { name: { a: 1, b: 2 }, other: { a: 3 } }. */
export function parseRateField(value: unknown): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const member of String(value ?? '').split(',').map((m) => m.trim()).filter(Boolean)) {
    const [name, ...params] = member.split(';');
    const key = JSON.parse(name!) as string;
    out[key] = Object.fromEntries(params.map((p) => p.split('=')).map(([k, v]) => [k!, Number(v)]));
  }
  return out;
}
