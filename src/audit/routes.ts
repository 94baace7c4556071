import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Type, type Static } from 'typebox';
import type { Store } from '../db/database.js';
import { HttpProblem } from '../http/problem.js';
import type { AuditEvent, Auditor } from './events.js';
import { listTrail } from './service.js';

function outcomeOf(status: number): AuditEvent['outcome'] {
  if (status === 401 || status === 403 || status === 429) return 'denied';
  return status >= 400 ? 'failure' : 'success';
}

/**
 * Every request that reached a route becomes an `http.request` row: answered, or closed by the
 * client first (aborted, or an event stream the client left: status 499). Only the route pattern
 * is kept, never the raw URL (query strings carry signed-URL tokens), and nothing from headers or
 * bodies. Requests by API key name the key.
 */
export const auditRequests = fp(async (app: FastifyInstance, options: { audit: Auditor }) => {
  const recorded = new WeakSet<FastifyRequest>();
  const record = (request: FastifyRequest, status: number, durationMs: number, aborted: boolean) => {
    if (recorded.has(request)) return;
    recorded.add(request);
    const principal = request.principal;
    const route = request.routeOptions.url ?? '(no route)';
    options.audit.record({
      action: 'http.request',
      outcome: aborted ? 'failure' : outcomeOf(status),
      actorId: principal?.userId ?? null,
      target: `${request.method} ${route}`,
      ip: request.ip,
      requestId: request.id,
      detail: {
        method: request.method,
        route,
        status,
        duration_ms: Math.round(durationMs * 100) / 100,
        ...(aborted && { aborted: true }),
        ...(principal && { via: principal.via }),
        ...(principal?.apiKeyId && { credential: `api-key:${principal.apiKeyId}` }),
      },
    });
  };
  app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    record(request, reply.statusCode, reply.elapsedTime, false);
    done();
  });
  // Closed by the client before the answer ended. A hijacked reply (event streams) never reaches
  // onResponse; its socket closing is its end.
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    reply.raw.once('close', () => {
      const finished = reply.raw.writableFinished;
      record(request, finished ? reply.raw.statusCode : 499, reply.elapsedTime, !finished);
    });
    done();
  });
});

const ISO_TIME = Type.String({ format: 'date-time', maxLength: 40 });

const Query = Type.Object(
  {
    action: Type.Optional(Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9._-]+$' })),
    actor: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    outcome: Type.Optional(Type.Union([Type.Literal('success'), Type.Literal('failure'), Type.Literal('denied')])),
    from: Type.Optional(ISO_TIME),
    to: Type.Optional(ISO_TIME),
    cursor: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
  },
  { additionalProperties: false },
);

const Nullable = (schema: ReturnType<typeof Type.String>) => Type.Union([schema, Type.Null()]);

const Row = Type.Object({
  seq: Type.Integer(),
  at: Type.String(),
  actor_id: Nullable(Type.String()),
  action: Type.String(),
  target: Nullable(Type.String()),
  ip: Nullable(Type.String()),
  request_id: Nullable(Type.String()),
  outcome: Type.String(),
  detail: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  prev_hash: Type.String(),
  hash: Type.String(),
});

const Page = Type.Object({
  items: Type.Array(Row),
  next_cursor: Type.Union([Type.Integer(), Type.Null()]),
});

function utc(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const time = new Date(value);
  if (Number.isNaN(time.getTime())) throw new HttpProblem(400, 'bad-request', `${name} is not a valid time.`);
  return time.toISOString();
}

export async function auditRoutes(app: FastifyInstance, options: { store: Store }) {
  app.get<{ Querystring: Static<typeof Query> }>(
    '/admin/audit',
    {
      config: { role: 'admin', rateClass: 'admin', scope: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'The audit trail, newest first',
        querystring: Query,
        response: { 200: Page },
      },
    },
    async (request) => {
      const { action, actor, outcome, cursor, limit } = request.query;
      return listTrail(
        options.store,
        { action, actorId: actor, outcome, from: utc('from', request.query.from), to: utc('to', request.query.to) },
        cursor,
        limit ?? 50,
      );
    },
  );
}
