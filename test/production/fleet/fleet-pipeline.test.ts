import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ComfyUIRenderer } from '../../../src/renderers/comfyui/renderer.js';
import { startComfyUIDouble, type ComfyUIDouble } from '../../doubles/comfyui.js';
import { signIn, useTestApp } from '../../support/app.js';
import { describeEachDialect } from '../../support/dialects.js';
import { generate, ROOMY_LIMITS, waitFor, type Json } from '../helpers.js';

/** Doubles and a fleet renderer over them, made before the app that uses them. */
function useFleet(count: number, depths?: number[]) {
  const handle = { doubles: [] as ComfyUIDouble[], renderer: undefined as unknown as ComfyUIRenderer };
  beforeAll(async () => {
    for (let i = 0; i < count; i++) handle.doubles.push(await startComfyUIDouble({ stepDelayMs: 2 }));
    handle.renderer = new ComfyUIRenderer({ urls: handle.doubles.map((d) => d.url), depths, pollIntervalMs: 50, requestTimeoutMs: 1_000 });
  });
  afterAll(async () => Promise.all(handle.doubles.map((d) => d.close())));
  return handle;
}

const promptsFor = (d: ComfyUIDouble, jobId: string) => d.prompts.filter((p) => JSON.stringify(p.prompt).includes(`"celforge_${jobId}"`));

async function submit(app: Parameters<typeof generate>[0], authorization: Record<string, string>, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const response = await generate(app, authorization, { prompt: `fleet ${i}`, type: 'image', width: 64, height: 64, steps: 2 });
    expect(response.statusCode).toBe(202);
    ids.push((response.json() as Json).job_id);
  }
  return ids;
}

describeEachDialect('jobs on a ComfyUI fleet', (dialect) => {
  describe('depth', () => {
    const fleet = useFleet(2);
    const t = useTestApp(dialect, { limits: ROOMY_LIMITS }, { get renderer() { return fleet.renderer; } });

    it('workers start only as many jobs as keep every backend two prompts deep; the rest stay queued in the store', async () => {
      const [a, b] = fleet.doubles as [ComfyUIDouble, ComfyUIDouble];
      a.hold(true);
      b.hold(true);
      const user = await signIn(t.app);
      const ids = await submit(t.app, user.authorization, 7);
      await expect.poll(() => a.promptCount + b.promptCount, { timeout: 10_000 }).toBe(4);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect([a.pending().length, b.pending().length]).toEqual([2, 2]);
      const rows = await t.app.services.store.db.selectFrom('jobs').select(['status']).where('id', 'in', ids).execute();
      expect(rows.filter((r) => r.status === 'running')).toHaveLength(4);
      expect(rows.filter((r) => r.status === 'queued')).toHaveLength(3);
      // A queued job shows when it should be done; later ones later.
      const etas = await Promise.all(ids.slice(4).map(async (id) => (await t.app.inject({ url: `/api/anime/jobs/${id}`, headers: user.authorization })).json().eta_seconds as number));
      expect(etas.every((eta) => Number.isInteger(eta) && eta > 0)).toBe(true);
      expect(etas[2]).toBeGreaterThanOrEqual(etas[0]!);
      a.hold(false);
      b.hold(false);
      for (const id of ids) expect((await waitFor(t.app, user.authorization, id, ['succeeded', 'failed'])).status).toBe('succeeded');
      const done = await t.app.services.store.db.selectFrom('jobs').select(['attempts']).where('id', 'in', ids).execute();
      expect(done.every((r) => r.attempts === 1)).toBe(true);
      expect(a.finished.length + b.finished.length).toBe(7);

      const admin = await signIn(t.app, { role: 'admin' });
      const stats = (await t.app.inject({ url: '/api/anime/admin/stats', headers: admin.authorization })).json();
      expect(stats.fleet.waiting).toBe(0);
      expect(stats.fleet.backends.map((x: Json) => [x.id, x.ok, x.depth, x.in_flight])).toEqual([
        ['0', true, 2, 0],
        ['1', true, 2, 0],
      ]);
      for (const backend of stats.fleet.backends) {
        expect(backend.utilization).toBeGreaterThan(0);
        expect(backend.utilization).toBeLessThanOrEqual(1);
        expect(backend.render_ms.image).toBeGreaterThan(0);
      }
      const gpuSeconds = async () =>
        ((await t.app.inject({ url: '/api/anime/admin/stats', headers: admin.authorization })).json().gpu_seconds_by_user.find((u: Json) => u.user_id === user.userId)?.gpu_seconds ?? 0) as number;
      await expect.poll(gpuSeconds).toBeGreaterThan(0);
      const metrics = await t.app.inject({ url: '/metrics', headers: admin.authorization });
      expect(metrics.body).toMatch(/celforge_backend_utilization\{backend="0"\} 0\.\d+/);
      expect(metrics.body).toContain(`celforge_user_gpu_seconds{user="${user.userId}"}`);
      expect(metrics.body).toMatch(/celforge_backend_in_flight\{backend="1",up="1"\} 0/);
    });
  });

  describe('ETA', () => {
    const fleet = useFleet(2);
    const t = useTestApp(dialect, { limits: ROOMY_LIMITS }, { get renderer() { return fleet.renderer; } });

    it("a queued job's ETA counts the jobs fair share starts before it, not those created before it", async () => {
      const [a, b] = fleet.doubles as [ComfyUIDouble, ComfyUIDouble];
      a.hold(true);
      b.hold(true);
      const heavy = await signIn(t.app);
      const light = await signIn(t.app);
      const heavyIds = await submit(t.app, heavy.authorization, 10);
      await expect.poll(() => a.promptCount + b.promptCount, { timeout: 10_000 }).toBe(4);
      // The light user's first job starts at once (nothing of theirs runs); the second waits, with 1 running against 4.
      const [, lightId] = await submit(t.app, light.authorization, 2);
      const eta = async (user: typeof heavy, id: string) => (await t.app.inject({ url: `/api/anime/jobs/${id}`, headers: user.authorization })).json().eta_seconds as number;
      const queued = heavyIds.slice(4);
      const heavyEtas = await Promise.all(queued.map((id) => eta(heavy, id)));
      // It starts before every queued job of the heavy user, though created after them.
      expect(await eta(light, lightId!)).toBeLessThanOrEqual(heavyEtas[0]!);
      expect(await eta(light, lightId!)).toBeLessThan(heavyEtas.at(-1)!);
      expect(heavyEtas).toEqual([...heavyEtas].sort((x, y) => x - y));
      a.hold(false);
      b.hold(false);
      for (const id of heavyIds) expect((await waitFor(t.app, heavy.authorization, id, ['succeeded', 'failed'])).status).toBe('succeeded');
      expect((await waitFor(t.app, light.authorization, lightId!, ['succeeded', 'failed'])).status).toBe('succeeded');
    });
  });

  describe('a light user', () => {
    const fleet = useFleet(2);
    const t = useTestApp(dialect, { limits: ROOMY_LIMITS }, { get renderer() { return fleet.renderer; } });

    it('a user with nothing running starts next on the backend that frees first, ahead of a batch already waiting there', async () => {
      const [a, b] = fleet.doubles as [ComfyUIDouble, ComfyUIDouble];
      // Long renders, so the submission below lands while the first prompts still run.
      a.renderMs = 2_000;
      b.renderMs = 2_000;
      const heavy = await signIn(t.app);
      const light = await signIn(t.app);
      await submit(t.app, heavy.authorization, 10);
      await expect.poll(() => a.promptCount + b.promptCount, { timeout: 10_000 }).toBe(4);
      const [lightJob] = await submit(t.app, light.authorization, 1);
      const done = await waitFor(t.app, light.authorization, lightJob!, ['succeeded', 'failed'], 20_000);
      expect(done.status).toBe('succeeded');
      const home = [a, b].find((d) => promptsFor(d, lightJob!).length === 1)!;
      const prompt = promptsFor(home, lightJob!)[0]!;
      expect(prompt.front).toBe(true);
      // On its backend it ran right after the prompt running when it came, ahead of the one waiting.
      const before = home.prompts.filter((p) => p !== prompt && home.prompts.indexOf(p) < home.prompts.indexOf(prompt)).map((p) => p.prompt_id!);
      const position = home.finished.indexOf(prompt.prompt_id!);
      expect(position).toBeGreaterThan(0);
      expect(before.filter((id) => !home.finished.slice(0, position).includes(id))).toHaveLength(1);
      await t.app.services.store.db.updateTable('jobs').set({ status: 'canceled' }).where('user_id', '=', heavy.userId).where('status', 'in', ['queued', 'running']).execute();
    });
  });

  describe('a backend dying', () => {
    const fleet = useFleet(2);
    const t = useTestApp(dialect, { limits: ROOMY_LIMITS }, { get renderer() { return fleet.renderer; } });

    it('a backend killed mid-job: the job restarts on another backend once, counted as a retry, and finishes once', async () => {
      const [a, b] = fleet.doubles as [ComfyUIDouble, ComfyUIDouble];
      a.renderMs = 1_500;
      b.renderMs = 1_500;
      const user = await signIn(t.app);
      const ids = await submit(t.app, user.authorization, 2);
      await expect.poll(() => a.running() !== undefined && b.running() !== undefined, { timeout: 10_000 }).toBe(true);
      const victim = ids.find((id) => promptsFor(a, id).length === 1)!;
      const other = ids.find((id) => id !== victim)!;
      await a.close();
      const job = await waitFor(t.app, user.authorization, victim, ['succeeded', 'failed'], 30_000);
      expect(job.status).toBe('succeeded');
      expect(job.assets).toHaveLength(1);
      expect((await waitFor(t.app, user.authorization, other, ['succeeded', 'failed'])).status).toBe('succeeded');
      const rows = await t.app.services.store.db.selectFrom('jobs').select(['id', 'attempts']).where('id', 'in', ids).execute();
      expect(Object.fromEntries(rows.map((r) => [r.id, r.attempts]))).toEqual({ [victim]: 2, [other]: 1 });
      // Rendered to the end exactly once, on the backend still alive.
      expect(b.finished.filter((id) => promptsFor(b, victim).some((p) => p.prompt_id === id))).toHaveLength(1);
      expect(a.finished).toHaveLength(0);
      const assets = await t.app.services.store.db.selectFrom('assets').select('job_id').where('job_id', 'in', ids).execute();
      expect(assets).toHaveLength(2);
    });
  });
});
