import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Type, type Static } from 'typebox';
import type { Store } from '../db/database.js';
import { HttpProblem } from '../http/problem.js';
import type { AuditEvent, Auditor } from './events.js';
import { exportTrail, listTrail, verifyTrail } from './service.js';
import { readHead, type AuditFilter } from './store.js';

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

const FilterFields = {
  action: Type.Optional(Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9._-]+$' })),
  actor: Type.Optional(Type.String({ minLength: 1, maxLength: 254, description: "the actor's user id, or their e-mail" })),
  outcome: Type.Optional(Type.Union([Type.Literal('success'), Type.Literal('failure'), Type.Literal('denied')])),
  from: Type.Optional(ISO_TIME),
  to: Type.Optional(ISO_TIME),
};

const Query = Type.Object(
  {
    ...FilterFields,
    cursor: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
  },
  { additionalProperties: false },
);
const ExportQuery = Type.Object(FilterFields, { additionalProperties: false });

const Chain = Type.Object({
  head: Type.Object({ seq: Type.Integer(), hash: Type.String() }),
  /** the last check on this instance, or null when none ran since it started */
  verified: Type.Union([
    Type.Object({
      ok: Type.Boolean(),
      /** the head when checked: every row up to it was whole when ok */
      through_seq: Type.Integer(),
      hash: Type.String(),
      rows: Type.Integer(),
      problem: Type.Union([Type.String(), Type.Null()]),
      at: Type.String(),
    }),
    Type.Null(),
  ]),
});

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

type Verified = Static<typeof Chain>['verified'];

export async function auditRoutes(app: FastifyInstance, options: { store: Store; audit: Auditor }) {
  const { store, audit } = options;
  const admin = { role: 'admin', rateClass: 'admin', scope: 'admin' } as const;
  let verified: Verified = null;

  /** The filter of a query; an actor named by e-mail is looked up (no such person: matches nothing). */
  async function filterOf(query: Static<typeof ExportQuery>): Promise<AuditFilter> {
    let actorId = query.actor;
    if (actorId?.includes('@')) {
      const user = await store.db.selectFrom('users').select('id').where('email', '=', actorId.trim().toLowerCase()).executeTakeFirst();
      actorId = user?.id ?? actorId;
    }
    return { action: query.action, actorId, outcome: query.outcome, from: utc('from', query.from), to: utc('to', query.to) };
  }

  app.get<{ Querystring: Static<typeof Query> }>(
    '/admin/audit',
    {
      config: admin,
      schema: {
        tags: ['admin'],
        summary: 'The audit trail, newest first',
        querystring: Query,
        response: { 200: Page },
      },
    },
    async (request) => listTrail(store, await filterOf(request.query), request.query.cursor, request.query.limit ?? 50),
  );

  app.get<{ Querystring: Static<typeof ExportQuery> }>(
    '/admin/audit/export',
    {
      config: admin,
      schema: {
        tags: ['admin'],
        summary: 'The filtered trail as JSON lines, oldest first',
        querystring: ExportQuery,
        produces: ['application/x-ndjson'],
      },
    },
    async (request, reply) => {
      const filter = await filterOf(request.query);
      audit.record({
        action: 'admin.audit.export',
        outcome: 'success',
        // admin routes: authentication has set the principal (audit sits below access, so no principalOf here)
        actorId: request.principal?.userId,
        ip: request.ip,
        requestId: request.id,
        detail: { filter: { ...filter } },
      });
      const lines = (async function* () {
        for await (const row of exportTrail(store, filter)) yield `${JSON.stringify(row)}\n`;
      })();
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
      return reply
        .type('application/x-ndjson')
        .header('content-disposition', `attachment; filename="celforge-audit-${stamp}.jsonl"`)
        .header('cache-control', 'no-store')
        .send(Readable.from(lines));
    },
  );

  app.get(
    '/admin/audit/chain',
    { config: admin, schema: { tags: ['admin'], summary: 'The head of the hash chain and the last check', response: { 200: Chain } } },
    async () => {
      const head = await readHead(store.db);
      return { head: { seq: Number(head.seq), hash: head.hash }, verified };
    },
  );

  app.post(
    '/admin/audit/verify',
    { config: { ...admin, critical: true }, schema: { tags: ['admin'], summary: 'Checks the whole hash chain now', response: { 200: Chain } } },
    async (request) => {
      const result = await verifyTrail(store);
      verified = {
        ok: result.ok,
        through_seq: Number(result.head.seq),
        hash: result.head.hash,
        rows: result.rows,
        problem: result.problem ?? null,
        at: new Date().toISOString(),
      };
      audit.record({
        action: 'admin.audit.verify',
        outcome: result.ok ? 'success' : 'failure',
        actorId: request.principal?.userId,
        ip: request.ip,
        requestId: request.id,
        detail: { through_seq: verified.through_seq, rows: result.rows, ...(result.problem && { problem: result.problem }) },
      });
      return { head: { seq: Number(result.head.seq), hash: result.head.hash }, verified };
    },
  );
}
