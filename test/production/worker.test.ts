import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { JobEvents } from '../../src/production/events.js';
import { claimJob } from '../../src/production/store.js';
import { JobWorker } from '../../src/production/worker.js';
import type { Renderer } from '../../src/renderers/renderer.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { generate, ROOMY_LIMITS, type Json } from './helpers.js';
import { permanent, retryable, ScriptedRenderer } from './renderer-doubles.js';

function makeWorker(app: FastifyInstance, renderer: Renderer, options: { concurrency?: number; jobTimeoutMs?: number; leaseMs?: number } = {}) {
  return new JobWorker({
    store: app.services.store,
    renderer,
    events: new JobEvents(),
    assets: app.services.production.assets,
    concurrency: options.concurrency ?? 2,
    jobTimeoutMs: options.jobTimeoutMs ?? 30_000,
    leaseMs: options.leaseMs ?? 30_000,
    log: app.log,
    pollMs: 20,
    backoffMs: 20,
  });
}

async function rows(app: FastifyInstance, ids: string[]) {
  return app.services.store.db.selectFrom('jobs').selectAll().where('id', 'in', ids).execute();
}

async function settle(app: FastifyInstance, ids: string[]) {
  await expect
    .poll(async () => (await rows(app, ids)).filter((r) => ['succeeded', 'failed', 'canceled'].includes(r.status)).length, { timeout: 20_000, interval: 50 })
    .toBe(ids.length);
  return rows(app, ids);
}

describeEachDialect('job worker (durable store queue)', (dialect) => {
  // No embedded worker: each test runs its own workers on the same store.
  const t = useTestApp(dialect, { limits: ROOMY_LIMITS }, { worker: false });
  const workers: JobWorker[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
  });

  async function submit(count: number, prompt = 'job'): Promise<string[]> {
    const user = await signIn(t.app);
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const response = await generate(t.app, user.authorization, { prompt: `${prompt} ${i}`, type: 'image', width: 64, height: 64, steps: 2 });
      expect(response.statusCode).toBe(202);
      ids.push((response.json() as Json).job_id);
    }
    return ids;
  }

  it('claims are exactly-once: racing claimers never take the same job', async () => {
    const ids = await submit(12, 'claim');
    const now = new Date().toISOString();
    const lease = new Date(Date.now() + 60_000).toISOString();
    const claimed = await Promise.all(Array.from({ length: 30 }, (_, i) => claimJob(t.app.services.store, `racer-${i}`, now, lease)));
    const got = claimed.filter((job) => job !== undefined).map((job) => job!.id);
    expect(new Set(got).size).toBe(got.length);
    expect(got.sort()).toEqual([...ids].sort());
    const stored = await rows(t.app, ids);
    expect(stored.every((r) => r.status === 'running' && r.attempts === 1)).toBe(true);
    await t.app.services.store.db.updateTable('jobs').set({ status: 'canceled' }).where('id', 'in', ids).execute();
  });

  it('three workers on one store render every job exactly once, with one set of assets each', async () => {
    const ids = await submit(18, 'many');
    const renderer = new ScriptedRenderer(async () => sleep(5).then(() => undefined));
    workers.push(makeWorker(t.app, renderer, { concurrency: 3 }), makeWorker(t.app, renderer, { concurrency: 3 }), makeWorker(t.app, renderer, { concurrency: 3 }));
    await Promise.all(workers.map((w) => w.start()));
    const done = await settle(t.app, ids);
    expect(done.every((r) => r.status === 'succeeded' && r.attempts === 1 && r.progress === 100 && r.locked_by === null)).toBe(true);
    for (const id of ids) expect(renderer.calls.get(id)).toBe(1);
    const assets = await t.app.services.store.db.selectFrom('assets').select(['job_id', 'position']).where('job_id', 'in', ids).execute();
    expect(assets).toHaveLength(ids.length);
  });

  it('retries renderer faults with back-off, then succeeds', async () => {
    const [id] = await submit(1, 'flaky');
    const renderer = new ScriptedRenderer(async (_request, call) => {
      if (call < 3) throw retryable();
    });
    workers.push(makeWorker(t.app, renderer));
    await workers[0]!.start();
    const [row] = await settle(t.app, [id!]);
    expect(row).toMatchObject({ status: 'succeeded', attempts: 3, error: null });
    expect(renderer.calls.get(id!)).toBe(3);
  });

  it('gives up after the last attempt with a message for the owner', async () => {
    const [id] = await submit(1, 'down');
    const renderer = new ScriptedRenderer(async () => {
      throw retryable();
    });
    workers.push(makeWorker(t.app, renderer));
    await workers[0]!.start();
    const [row] = await settle(t.app, [id!]);
    expect(row).toMatchObject({ status: 'failed', attempts: 3, error: 'The renderer is busy; the job will be retried.' });
  });

  it('fails at once on a fault that a retry cannot fix, and hides unexpected errors', async () => {
    const [bad, broken] = await submit(2, 'bad');
    const renderer = new ScriptedRenderer(async (request) => {
      if (request.jobId === bad) throw permanent();
      throw new Error('ENOENT: no such file /opt/comfyui/output/x.png at 10.0.0.5');
    });
    workers.push(makeWorker(t.app, renderer));
    await workers[0]!.start();
    const done = await settle(t.app, [bad!, broken!]);
    expect(done.find((r) => r.id === bad)).toMatchObject({ status: 'failed', attempts: 1, error: 'This prompt could not be rendered.' });
    const hidden = done.find((r) => r.id === broken)!;
    expect(hidden).toMatchObject({ status: 'failed', attempts: 1 });
    expect(hidden.error).not.toMatch(/opt|ENOENT|10\.0/);
  });

  it('a job over its time limit is interrupted and fails', async () => {
    const [id] = await submit(1, 'slow');
    let aborted = false;
    const renderer = new ScriptedRenderer(
      (_request, _call, context) =>
        new Promise((_resolve, reject) => {
          context.signal.addEventListener('abort', () => {
            aborted = true;
            reject(context.signal.reason);
          });
        }),
    );
    workers.push(makeWorker(t.app, renderer, { jobTimeoutMs: 150 }));
    await workers[0]!.start();
    const [row] = await settle(t.app, [id!]);
    expect(row!.status).toBe('failed');
    expect(row!.error).toMatch(/time limit|limit/);
    expect(aborted).toBe(true);
  });

  it('a concurrency of one renders one job at a time', async () => {
    const ids = await submit(4, 'serial');
    let active = 0;
    let peak = 0;
    const renderer = new ScriptedRenderer(async () => {
      active += 1;
      peak = Math.max(peak, active);
      await sleep(20);
      active -= 1;
    });
    workers.push(makeWorker(t.app, renderer, { concurrency: 1 }));
    await workers[0]!.start();
    await settle(t.app, ids);
    expect(peak).toBe(1);
  });

  it("takes over a job whose worker vanished once its lease lapses", async () => {
    const [id] = await submit(1, 'orphan');
    // a worker that claimed the job and died: running, lease already lapsed
    await t.app.services.store.db
      .updateTable('jobs')
      .set({ status: 'running', locked_by: 'dead-worker', locked_until: new Date(Date.now() - 1000).toISOString(), attempts: 1 })
      .where('id', '=', id!)
      .execute();
    const renderer = new ScriptedRenderer(async () => undefined);
    workers.push(makeWorker(t.app, renderer, { leaseMs: 500 }));
    await workers[0]!.start();
    const [row] = await settle(t.app, [id!]);
    expect(row).toMatchObject({ status: 'succeeded', attempts: 2 });
  });

  it('stopping a worker puts its running jobs back in the queue', async () => {
    const [id] = await submit(1, 'shutdown');
    const renderer = new ScriptedRenderer(
      (_request, _call, context) => new Promise((_resolve, reject) => context.signal.addEventListener('abort', () => reject(context.signal.reason))),
    );
    const worker = makeWorker(t.app, renderer);
    await worker.start();
    await expect.poll(async () => (await rows(t.app, [id!]))[0]!.status).toBe('running');
    await worker.stop();
    expect((await rows(t.app, [id!]))[0]).toMatchObject({ status: 'queued', locked_by: null, attempts: 0 });
    await t.app.services.store.db.updateTable('jobs').set({ status: 'canceled' }).where('id', '=', id!).execute();
  });
});

describe('renderer factory', () => {
  it('builds the renderer the config names', async () => {
    const { createRenderer } = await import('../../src/renderers/index.js');
    const base = { previewStepMs: 0, comfyuiUrls: [], jobTimeoutSeconds: 60 };
    expect(createRenderer({ ...base, renderer: 'preview' }).name).toBe('preview');
    const comfyui = createRenderer({ ...base, renderer: 'comfyui', comfyuiUrls: ['http://127.0.0.1:1'] });
    expect(comfyui.name).toBe('comfyui');
    await comfyui.close?.();
  });
});
