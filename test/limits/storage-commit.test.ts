import { expect, it } from 'vitest';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { generate, ROOMY_LIMITS, waitFor, type Json } from '../production/helpers.js';
import { ScriptedRenderer } from '../production/renderer-doubles.js';

/**
 * Two jobs whose results fit the storage quota one at a time but not together, rendered at the
 * same moment: both may pass the check before upload, so the one in the completing transaction
 * decides, and exactly one is kept.
 */
describeEachDialect('storage quota when jobs finish at once', (dialect) => {
  /** while set, a render waits until two renders wait, then both go on */
  let pair: { arrived: number; go: () => void; both: Promise<void> } | null = null;
  const renderer = new ScriptedRenderer(async () => {
    if (!pair) return;
    if (++pair.arrived === 2) pair.go();
    await pair.both;
  });
  const t = useTestApp(dialect, { workerConcurrency: 2, limits: ROOMY_LIMITS }, { renderer });

  it('keeps exactly one of two results when only one more fits, and says so on the other', async () => {
    const user = await signIn(t.app);
    const admin = await signIn(t.app, { role: 'admin' });
    const twin = { prompt: 'twin', type: 'image', width: 64, height: 64, seed: 5 };
    const submit = async () => ((await generate(t.app, user.authorization, twin)).json() as Json).job_id as string;
    // one twin alone: the bytes each of them takes
    const first = await waitFor(t.app, user.authorization, await submit(), ['succeeded']);
    const size = first.assets[0].byte_size as number;
    const limit = 2 * size + Math.floor(size / 2);
    const set = await t.app.inject({ method: 'PUT', url: `/api/anime/admin/users/${user.userId}/storage`, headers: admin.authorization, payload: { storage_bytes: limit } });
    expect(set.statusCode).toBe(200);

    let go!: () => void;
    pair = { arrived: 0, go: () => go(), both: new Promise<void>((resolve) => (go = resolve)) };
    const ids = [await submit(), await submit()];
    const ended = await Promise.all(ids.map((id) => waitFor(t.app, user.authorization, id, ['succeeded', 'failed'])));
    pair = null;

    expect(ended.map((job) => job.status).sort()).toEqual(['failed', 'succeeded']);
    const kept = ended.find((job) => job.status === 'succeeded')!;
    const refused = ended.find((job) => job.status === 'failed')!;
    expect(kept.assets.map((asset: Json) => asset.byte_size)).toEqual([size]);
    expect(refused.error).toBe(
      `The result takes ${size} bytes; with the ${2 * size} bytes of your stored results that passes your storage quota of ${limit} bytes, so it was not kept. Delete some jobs to make room, then submit again.`,
    );
    expect(refused.assets).toEqual([]);
    const usage = (await t.app.inject({ url: '/api/anime/storage', headers: user.authorization })).json() as Json;
    expect(usage).toMatchObject({ used_bytes: 2 * size, limit_bytes: limit });
  });
});
