import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { TERMINAL, type JobEvent, type JobEvents } from './events.js';
import { GenerateBody } from './params.js';
import { JobStatusSchema, JobTypeSchema } from '../db/schema.js';
import { eventStreams } from '../http/event-stream.js';
import { contextOf } from '../http/request-context.js';
import type { ProductionService } from './service.js';
import { AdminJob, AdminJobPage, JobPage, JobView } from './views.js';
import { principalOf } from '../access/authentication.js';

const JobIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
const ListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    status: Type.Optional(JobStatusSchema),
    type: Type.Optional(JobTypeSchema),
  },
  { additionalProperties: false },
);
const Count = Type.Record(Type.String(), Type.Integer());
const Millis = Type.Union([Type.Number(), Type.Null()]);
const FleetStats = Type.Object({
  waiting: Type.Integer(),
  backends: Type.Array(
    Type.Object({
      id: Type.String(),
      ok: Type.Boolean(),
      depth: Type.Integer(),
      in_flight: Type.Integer(),
      in_flight_here: Type.Integer(),
      utilization: Type.Number(),
      idle_gap_ms: Type.Object({ count: Type.Integer(), p50: Millis, p99: Millis }),
      render_ms: Type.Record(Type.String(), Type.Number()),
    }),
  ),
});
const Percentiles = Type.Object({ count: Type.Integer(), p50: Millis, p95: Millis });
const JobBucket = Type.Object({ at: Type.String(), by_status: Count, by_type: Count });
const Stats = Type.Object({
  generated_at: Type.String(),
  jobs: Type.Object({ by_state: Count, by_type: Count }),
  active_jobs: Type.Integer(),
  queue_depth: Type.Integer(),
  users: Type.Integer(),
  /** people with a session used in the last hour / day */
  active_users: Type.Object({ last_hour: Type.Integer(), last_day: Type.Integer() }),
  render_ms_24h: Percentiles,
  /** queue wait (created → started) of the jobs started in the last day, and of the oldest job still queued */
  wait_ms_24h: Type.Intersect([Percentiles, Type.Object({ oldest_queued: Millis })]),
  /** jobs created per hour (last 24) and per day (last 14), oldest first */
  series: Type.Object({ hourly: Type.Array(JobBucket), daily: Type.Array(JobBucket) }),
  rate_limited_24h: Type.Object({
    total: Type.Integer(),
    by_policy: Count,
    hourly: Type.Array(Type.Object({ at: Type.String(), count: Type.Integer() })),
  }),
  renderer: Type.Object({
    name: Type.String(),
    ok: Type.Boolean(),
    backends: Type.Optional(Type.Array(Type.Object({ id: Type.String(), ok: Type.Boolean(), queue: Type.Optional(Type.Integer()) }))),
  }),
  fleet: Type.Union([FleetStats, Type.Null()]),
  gpu_seconds_by_user: Type.Array(Type.Object({ user_id: Type.String(), gpu_seconds: Type.Number() })),
});

export { contextOf } from '../http/request-context.js';

const HEARTBEAT_MS = 15_000;
/** what a stream's last event asks the client to wait before reconnecting when the server goes away */
const RECONNECT_MS = 2_000;

/** The job pipeline's HTTP face: `/api/anime/generate`, `/jobs…`, the old status path, admin stats. */
export const productionRoutes: FastifyPluginAsyncTypebox<{ service: ProductionService; events: JobEvents }> = async (app, options) => {
  const { service, events } = options;
  const openEventStream = eventStreams(app);

  app.post(
    '/generate',
    {
      config: { rateClass: 'generation', jobQuota: true, scope: 'jobs:write' },
      schema: {
        tags: ['production'],
        body: GenerateBody,
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String({ maxLength: 128 })) }),
        response: { 200: JobView, 202: JobView },
      },
    },
    async (request, reply) => {
      const key = request.headers['idempotency-key'];
      const { job, replayed } = await service.generate(principalOf(request), request.body, typeof key === 'string' ? key : undefined, contextOf(request));
      reply.header('location', `/api/anime/jobs/${job.job_id}`);
      if (replayed) reply.header('idempotent-replayed', 'true');
      return reply.code(replayed ? 200 : 202).send(job);
    },
  );

  app.get(
    '/jobs',
    { config: { rateClass: 'read', scope: 'jobs:read' }, schema: { tags: ['production'], querystring: ListQuery, response: { 200: JobPage } } },
    async (request) => service.list(principalOf(request), request.query),
  );

  for (const url of ['/jobs/:id', '/generation/:id/status']) {
    app.get(
      url,
      { config: { rateClass: 'read', scope: 'jobs:read' }, schema: { tags: ['production'], params: JobIdParams, response: { 200: JobView } } },
      async (request) => service.get(principalOf(request), request.params.id),
    );
  }

  app.post(
    '/jobs/:id/cancel',
    { config: { rateClass: 'write', scope: 'jobs:write' }, schema: { tags: ['production'], params: JobIdParams, response: { 200: JobView } } },
    async (request) => service.cancel(principalOf(request), request.params.id, contextOf(request)),
  );

  app.get(
    '/jobs/:id/events',
    { config: { rateClass: 'read', scope: 'jobs:read' }, schema: { tags: ['production'], params: JobIdParams } },
    async (request, reply) => {
      const principal = principalOf(request);
      const job = await service.ownJob(principal, request.params.id);
      // Listen first, then read the state, so no change falls between the two.
      const pending: JobEvent[] = [];
      // Status changes are serialised so the last event seen is the newest state.
      let chain = Promise.resolve();
      let deliver: (event: JobEvent) => void = (event) => {
        pending.push(event);
      };
      const unsubscribe = events.subscribe(job.id, (event) => deliver(event));
      let lastSent = '';
      const stream = openEventStream(request, reply, {
        heartbeatMs: HEARTBEAT_MS,
        // The state is re-read at each heartbeat too, so a change announced where this process
        // cannot hear it (a worker elsewhere without Redis) still arrives.
        onHeartbeat: (it) => {
          it.keepAlive();
          chain = chain.then(() => sendStatus(true)).catch(() => it.close());
        },
        // The last event says why the stream ends and when to reconnect: to another instance, or to this one restarted.
        onShutdown: (it) => it.send('shutdown', { job_id: job.id, reason: 'server-shutting-down' }, RECONNECT_MS),
        onClose: unsubscribe,
      });
      const sendStatus = async (onlyIfChanged = false) => {
        if (!stream.isOpen) return;
        const view = await service.get(principal, job.id);
        const state = `${view.status}:${view.progress}`;
        if (onlyIfChanged && state === lastSent) return;
        lastSent = state;
        stream.send('status', view);
        if (TERMINAL.has(view.status)) stream.close();
      };
      const onEvent = (event: JobEvent) => {
        if (event.kind === 'progress') stream.send('progress', { job_id: event.jobId, status: event.status, progress: event.progress });
        else if (event.kind === 'preview' && event.preview) stream.send('preview', { job_id: event.jobId, content_type: event.preview.contentType, data: event.preview.data });
        else chain = chain.then(() => sendStatus()).catch(() => stream.close());
      };
      try {
        await sendStatus();
      } catch {
        stream.close();
      }
      deliver = onEvent;
      for (const event of pending) onEvent(event);
    },
  );

  const admin = { role: 'admin', rateClass: 'admin', scope: 'admin' } as const;
  app.get(
    '/admin/jobs',
    {
      config: admin,
      schema: {
        tags: ['admin'],
        summary: 'Every job, newest first, with its owner',
        querystring: Type.Object(
          { ...ListQuery.properties, owner: Type.Optional(Type.String({ minLength: 3, maxLength: 254, description: "the owner's e-mail" })) },
          { additionalProperties: false },
        ),
        response: { 200: AdminJobPage },
      },
    },
    async (request) => service.adminList(request.query),
  );

  app.post(
    '/admin/jobs/:id/cancel',
    { config: { ...admin, critical: true }, schema: { tags: ['admin'], params: JobIdParams, response: { 200: AdminJob } } },
    async (request) => service.adminCancel(principalOf(request), request.params.id, contextOf(request)),
  );

  app.get(
    '/admin/stats',
    { config: admin, schema: { tags: ['admin'], response: { 200: Stats } } },
    async () => service.stats(),
  );
};
