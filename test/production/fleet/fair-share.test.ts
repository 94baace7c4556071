import { beforeEach, expect, it } from 'vitest';
import { claimFair, fairSharePolicy, recordGpuUse } from '../../../src/production/fleet/fair-share.js';
import { signIn, useTestApp, type SignedIn } from '../../support/app.js';
import { describeEachDialect } from '../../support/dialects.js';
import { expectProblem, generate, ROOMY_LIMITS, type Json } from '../helpers.js';

const LEASE = () => new Date(Date.now() + 60_000).toISOString();

describeEachDialect('fair-share claims', (dialect) => {
  // No embedded worker: the tests claim by hand.
  const t = useTestApp(dialect, { limits: ROOMY_LIMITS, fleetRoleWeights: { admin: 2 } }, { worker: false });
  const store = () => t.app.services.store;

  beforeEach(async () => {
    // Each test starts from an empty queue.
    await store().db.updateTable('jobs').set({ status: 'canceled' }).where('status', 'in', ['queued', 'running']).execute();
  });

  async function submit(user: SignedIn, count: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const response = await generate(t.app, user.authorization, { prompt: `job ${i}`, type: 'image', width: 64, height: 64, steps: 1 });
      expect(response.statusCode).toBe(202);
      ids.push((response.json() as Json).job_id);
    }
    return ids;
  }

  async function claimOwners(count: number, owners: Map<string, string>, policy?: ReturnType<typeof fairSharePolicy>): Promise<string[]> {
    const got: string[] = [];
    for (let i = 0; i < count; i++) {
      const job = await claimFair(store(), 'w-test', new Date(), LEASE(), policy);
      got.push(job ? owners.get(job.user_id)! : '-');
    }
    return got;
  }

  it('a light user submitting after a heavy batch is served next, not after the batch', async () => {
    const heavy = await signIn(t.app);
    const light = await signIn(t.app);
    const heavyIds = await submit(heavy, 6);
    const [lightId] = await submit(light, 1);
    const first = await claimFair(store(), 'w-test', new Date(), LEASE());
    expect(first?.id).toBe(heavyIds[0]);
    const second = await claimFair(store(), 'w-test', new Date(), LEASE());
    expect(second?.id).toBe(lightId);
    expect(second).toMatchObject({ status: 'running', locked_by: 'w-test', attempts: 1 });
    // Then the heavy user's jobs in their own order.
    const rest = [];
    for (let i = 0; i < 5; i++) rest.push((await claimFair(store(), 'w-test', new Date(), LEASE()))?.id);
    expect(rest).toEqual(heavyIds.slice(1));
    expect(await claimFair(store(), 'w-test', new Date(), LEASE())).toBeUndefined();
  });

  it('an admin-set weight gives a user more running slots; a running cap holds', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    const b = await signIn(t.app);
    const a = await signIn(t.app);
    const owners = new Map([
      [a.userId, 'A'],
      [b.userId, 'B'],
    ]);
    await submit(b, 6);
    await submit(a, 6);
    const put = await t.app.inject({ method: 'PUT', url: `/api/anime/admin/users/${a.userId}/share`, headers: admin.authorization, payload: { weight: 2, max_running: null } });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({ user_id: a.userId, weight: 2, weight_from: 'user', max_running: null, gpu_seconds: 0 });
    // B's jobs are older, but A weighs twice as much: two of A's for one of B's.
    expect(await claimOwners(6, owners)).toEqual(['B', 'A', 'A', 'B', 'A', 'A']);

    const capped = await t.app.inject({ method: 'PUT', url: `/api/anime/admin/users/${b.userId}/share`, headers: admin.authorization, payload: { weight: 1, max_running: 2 } });
    expect(capped.json()).toMatchObject({ max_running: 2 });
    // B holds 2 running: only A's jobs (2 left) can start, then nothing though B still waits.
    expect(await claimOwners(4, owners)).toEqual(['A', 'A', '-', '-']);
    const waiting = await store().db.selectFrom('jobs').select('user_id').where('status', '=', 'queued').execute();
    expect(waiting.map((row) => owners.get(row.user_id))).toEqual(['B', 'B', 'B', 'B']);
    const audited = () => store().db.selectFrom('audit_log').selectAll().where('action', '=', 'admin.user.share').where('target', '=', b.userId).execute();
    await expect.poll(async () => (await audited()).length, { timeout: 10_000 }).toBe(1);
  });

  it("a role's configured weight applies to its users; a weight an admin set for the user wins", async () => {
    const policy = fairSharePolicy(t.app.config);
    const admin = await signIn(t.app, { role: 'admin' });
    const user = await signIn(t.app);
    const owners = new Map([
      [admin.userId, 'admin'],
      [user.userId, 'user'],
    ]);
    // GPU accounting alone writes a share row: it sets no weight.
    await recordGpuUse(store().db, admin.userId, 1, new Date());
    await submit(user, 6);
    await submit(admin, 6);
    const share = async (id: string) => (await t.app.inject({ url: `/api/anime/admin/users/${id}/share`, headers: admin.authorization })).json();
    expect(await share(admin.userId)).toMatchObject({ weight: 2, weight_from: 'role' });
    // The user's jobs are older, but admins weigh 2 (CELFORGE_FLEET_ROLE_WEIGHTS=admin=2): two of theirs for one.
    expect(await claimOwners(6, owners, policy)).toEqual(['user', 'admin', 'admin', 'user', 'admin', 'admin']);

    await store().db.updateTable('jobs').set({ status: 'canceled' }).where('status', 'in', ['queued', 'running']).execute();
    await submit(user, 4);
    await submit(admin, 4);
    const put = await t.app.inject({ method: 'PUT', url: `/api/anime/admin/users/${admin.userId}/share`, headers: admin.authorization, payload: { weight: 1, max_running: null } });
    expect(put.json()).toMatchObject({ weight: 1, weight_from: 'user' });
    expect(await claimOwners(4, owners, policy)).toEqual(['user', 'admin', 'user', 'admin']);
  });

  it('between users with nothing running, the one with less recent GPU use goes first', async () => {
    const busy = await signIn(t.app);
    const idle = await signIn(t.app);
    const owners = new Map([
      [busy.userId, 'busy'],
      [idle.userId, 'idle'],
    ]);
    await submit(busy, 1);
    await submit(idle, 1);
    await recordGpuUse(store().db, busy.userId, 60_000, new Date());
    expect(await claimOwners(2, owners)).toEqual(['idle', 'busy']);
  });

  it('an urgent claim takes only a job of a user with nothing running', async () => {
    const heavy = await signIn(t.app);
    const light = await signIn(t.app);
    await submit(heavy, 3);
    await claimFair(store(), 'w-test', new Date(), LEASE());
    expect(await claimFair(store(), 'w-test', new Date(), LEASE(), undefined, { idleUsersOnly: true })).toBeUndefined();
    const [lightId] = await submit(light, 2);
    expect((await claimFair(store(), 'w-test', new Date(), LEASE(), undefined, { idleUsersOnly: true }))?.id).toBe(lightId);
    expect(await claimFair(store(), 'w-test', new Date(), LEASE(), undefined, { idleUsersOnly: true })).toBeUndefined();
  });

  it('racing claimers never take a job twice nor pass a cap', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    const users = await Promise.all([signIn(t.app), signIn(t.app), signIn(t.app)]);
    for (const user of users) {
      await submit(user, 4);
      await t.app.inject({ method: 'PUT', url: `/api/anime/admin/users/${user.userId}/share`, headers: admin.authorization, payload: { weight: 1, max_running: 3 } });
    }
    const claimed = await Promise.all(Array.from({ length: 15 }, (_, i) => claimFair(store(), `racer-${i}`, new Date(), LEASE())));
    // A racer that lost (its pick filled up meanwhile) gets nothing; what is left is taken in turn.
    for (let job = await claimFair(store(), 'last', new Date(), LEASE()); job; job = await claimFair(store(), 'last', new Date(), LEASE())) claimed.push(job);
    const got = claimed.filter((job) => job !== undefined);
    expect(new Set(got.map((job) => job!.id)).size).toBe(got.length);
    expect(got).toHaveLength(9);
    for (const user of users) expect(got.filter((job) => job!.user_id === user.userId)).toHaveLength(3);
  });

  it('share settings: admins only, a known user, a valid body', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    const user = await signIn(t.app);
    const url = `/api/anime/admin/users/${user.userId}/share`;
    expect((await t.app.inject({ method: 'PUT', url, headers: user.authorization, payload: { weight: 50, max_running: null } })).statusCode).toBe(403);
    expectProblem(await t.app.inject({ method: 'PUT', url, headers: admin.authorization, payload: { weight: 0, max_running: null } }), 400);
    expectProblem(await t.app.inject({ method: 'PUT', url, headers: admin.authorization, payload: { weight: 1, max_running: 0 } }), 400);
    expectProblem(
      await t.app.inject({ method: 'PUT', url: '/api/anime/admin/users/nobody/share', headers: admin.authorization, payload: { weight: 1, max_running: null } }),
      404,
    );
    expect((await t.app.inject({ url, headers: admin.authorization })).json()).toEqual({ user_id: user.userId, weight: 1, weight_from: 'role', max_running: null, gpu_seconds: 0 });
  });
});

