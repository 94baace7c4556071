import { describe, expect, it } from 'vitest';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { expectNoPath, expectProblem, generate, ROOMY_LIMITS, waitFor, type Json } from './helpers.js';
import { HoldingRenderer } from './renderer-doubles.js';

const INJECTIONS = [
  "rain drops; an updated look -- it's",
  "' UNION SELECT * FROM users --",
  "Robert'); DROP TABLE jobs;--",
  '"; delete from assets where "1"="1',
  '桜の下で — «anime» 🌸 <script>alert(1)</script> %00 ${x} {{y}}',
];

describeEachDialect('production jobs', (dialect) => {
  const renderer = new HoldingRenderer();
  const t = useTestApp(dialect, { limits: ROOMY_LIMITS }, { renderer });

  describe('POST /generate', () => {
    it('accepts a job with 202, type defaults, a Location and a queued state', async () => {
      const user = await signIn(t.app);
      const image = await generate(t.app, user.authorization, { prompt: 'a quiet harbour at dawn', type: 'image' });
      expect(image.statusCode).toBe(202);
      const job = image.json() as Json;
      expect(job).toMatchObject({ type: 'image', status: 'queued', progress: 0, error: null, assets: [], prompt: 'a quiet harbour at dawn' });
      expect(job.params).toMatchObject({ width: 512, height: 512, steps: 20 });
      expect(job.params.frames).toBeUndefined();
      expect(job.params.seed).toBeGreaterThanOrEqual(0);
      expect(image.headers.location).toBe(`/api/anime/jobs/${job.job_id}`);

      const video = (await generate(t.app, user.authorization, { prompt: 'waves', type: 'video', frames: 3 })).json() as Json;
      expect(video.params).toMatchObject({ width: 512, height: 288, frames: 3, fps: 12 });
    });

    it('the job type decides the output: an image is a PNG, a video an MP4 and its animated WebP', async () => {
      const user = await signIn(t.app);
      const image = (await generate(t.app, user.authorization, { prompt: 'a fox', type: 'image', width: 64, height: 64, seed: 7 })).json() as Json;
      const video = (await generate(t.app, user.authorization, { prompt: 'a fox', type: 'video', width: 64, height: 64, frames: 3, seed: 7 })).json() as Json;
      const doneImage = await waitFor(t.app, user.authorization, image.job_id, ['succeeded', 'failed']);
      const doneVideo = await waitFor(t.app, user.authorization, video.job_id, ['succeeded', 'failed']);
      expect(doneImage).toMatchObject({ status: 'succeeded', progress: 100 });
      expect(doneImage.assets).toHaveLength(1);
      expect(doneImage.assets[0].content_type).toBe('image/png');
      expect(doneVideo.assets.map((a: Json) => a.content_type)).toEqual(['video/mp4', 'image/webp']);
      const mp4 = await t.app.inject({ url: doneVideo.assets[0].url });
      expect(mp4.rawPayload.subarray(4, 8).toString()).toBe('ftyp');
      const bytes = await t.app.inject({ url: doneVideo.assets[1].url });
      expect(bytes.rawPayload.subarray(0, 4).toString()).toBe('RIFF');
      expect(bytes.rawPayload.includes(Buffer.from('ANIM'))).toBe(true);
      expect(doneImage.started_at).not.toBeNull();
      expect(doneImage.finished_at >= doneImage.started_at).toBe(true);
    });

    it('takes prompts that look like SQL or shell byte for byte, and the store is untouched', async () => {
      const user = await signIn(t.app);
      const { db } = t.app.services.store;
      const usersBefore = (await db.selectFrom('users').select(db.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n;
      for (const prompt of INJECTIONS) {
        const response = await generate(t.app, user.authorization, { prompt, negative_prompt: prompt, type: 'image', width: 64, height: 64 });
        expect(response.statusCode).toBe(202);
        const job = response.json() as Json;
        expect(job.prompt).toBe(prompt);
        expect(job.negative_prompt).toBe(prompt);
        const stored = await db.selectFrom('jobs').select(['prompt', 'negative_prompt']).where('id', '=', job.job_id).executeTakeFirstOrThrow();
        expect(stored).toEqual({ prompt, negative_prompt: prompt });
        const read = (await t.app.inject({ url: `/api/anime/jobs/${job.job_id}`, headers: user.authorization })).json() as Json;
        expect(read.prompt).toBe(prompt);
      }
      const usersAfter = (await db.selectFrom('users').select(db.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n;
      expect(Number(usersAfter)).toBe(Number(usersBefore));
      const jobs = await db.selectFrom('jobs').select('id').where('user_id', '=', user.userId).execute();
      expect(jobs).toHaveLength(INJECTIONS.length);
    });

    it('refuses bad bodies with 400 problem+json and stores nothing', async () => {
      const user = await signIn(t.app);
      const cases: [unknown, string][] = [
        [{ prompt: '   \n\t  ', type: 'image' }, '/prompt'],
        [{ prompt: 'x'.repeat(501), type: 'image' }, '/prompt'],
        [{ prompt: 'a\u0000b', type: 'image' }, '/prompt'],
        [{ prompt: 'line one\nline two', type: 'image' }, '/prompt'],
        [{ prompt: 'bell \u0007', type: 'image' }, '/prompt'],
        [{ prompt: 'del \u007f', type: 'image' }, '/prompt'],
        [{ prompt: 'c1 \u0085', type: 'image' }, '/prompt'],
        [{ prompt: 'ok', negative_prompt: 'esc \u001b[31m', type: 'image' }, '/negative_prompt'],
        [{ prompt: 42, type: 'image' }, '/prompt'],
        [{ prompt: 'ok', type: 'gif' }, '/type'],
        [{ prompt: 'ok' }, '/type'],
        [{ prompt: 'ok', type: 'image', width: '512' }, '/width'],
        [{ prompt: 'ok', type: 'image', width: 513 }, '/width'],
        [{ prompt: 'ok', type: 'image', height: 4096 }, '/height'],
        [{ prompt: 'ok', type: 'image', steps: 0 }, '/steps'],
        [{ prompt: 'ok', type: 'image', steps: 101 }, '/steps'],
        [{ prompt: 'ok', type: 'image', seed: -1 }, '/seed'],
        [{ prompt: 'ok', type: 'image', seed: 2 ** 32 }, '/seed'],
        [{ prompt: 'ok', type: 'video', frames: 1 }, '/frames'],
        [{ prompt: 'ok', type: 'video', frames: 121 }, '/frames'],
        [{ prompt: 'ok', type: 'video', fps: 61 }, '/fps'],
        [{ prompt: 'ok', type: 'image', frames: 10 }, '/frames'],
        [{ prompt: 'ok', type: 'video', width: 2048, height: 2048, frames: 120 }, '/frames'],
        [{ prompt: 'ok', type: 'image', style: 'x'.repeat(33) }, '/style'],
        [{ prompt: 'ok', type: 'image', user_id: 'someone-else' }, '/user_id'],
        [{ prompt: 'ok', type: 'image', status: 'succeeded' }, '/status'],
      ];
      for (const [body, pointer] of cases) {
        const problem = expectProblem(await generate(t.app, user.authorization, body), 400);
        expect(problem.errors, JSON.stringify(body)).toEqual(expect.arrayContaining([expect.objectContaining({ pointer })]));
      }
      expectProblem(
        await generate(t.app, user.authorization, '{"prompt": "ok", "type": "image"', { 'content-type': 'application/json' }),
        400,
        'malformed-json',
      );
      const stored = await t.app.services.store.db.selectFrom('jobs').select('id').where('user_id', '=', user.userId).execute();
      expect(stored).toEqual([]);
    });

    it('accepts exactly 500 characters after trimming, counted as characters', async () => {
      const user = await signIn(t.app);
      const prompt = '桜'.repeat(499) + '🌸';
      const response = await generate(t.app, user.authorization, { prompt: `  ${prompt}  `, type: 'image' });
      expect(response.statusCode).toBe(202);
      expect((response.json() as Json).prompt).toBe(prompt);
    });

    it('needs a signed-in caller', async () => {
      expectProblem(await t.app.inject({ method: 'POST', url: '/api/anime/generate', payload: { prompt: 'x', type: 'image' } }), 401);
      expectProblem(await generate(t.app, { authorization: 'Bearer forged.token.value' }, { prompt: 'x', type: 'image' }), 401);
    });
  });

  describe('Idempotency-Key', () => {
    it('a retry gets the same job; another body with the key is a 409; each user has own keys', async () => {
      const user = await signIn(t.app);
      const body = { prompt: 'retry me', type: 'image', width: 64, height: 64 };
      const first = await generate(t.app, user.authorization, body, { 'idempotency-key': 'order-1' });
      expect(first.statusCode).toBe(202);
      const again = await generate(t.app, user.authorization, body, { 'idempotency-key': 'order-1' });
      expect(again.statusCode).toBe(200);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect((again.json() as Json).job_id).toBe((first.json() as Json).job_id);
      // the random seed drawn for the first request does not make a retry differ
      expect((again.json() as Json).params.seed).toBe((first.json() as Json).params.seed);

      expectProblem(await generate(t.app, user.authorization, { ...body, prompt: 'something else' }, { 'idempotency-key': 'order-1' }), 409, 'conflict');

      const other = await signIn(t.app);
      const theirs = await generate(t.app, other.authorization, body, { 'idempotency-key': 'order-1' });
      expect(theirs.statusCode).toBe(202);
      expect((theirs.json() as Json).job_id).not.toBe((first.json() as Json).job_id);

      const rows = await t.app.services.store.db.selectFrom('jobs').select('id').where('user_id', '=', user.userId).execute();
      expect(rows).toHaveLength(1);
    });

    it('concurrent retries with one key make one job', async () => {
      const user = await signIn(t.app);
      const body = { prompt: 'race', type: 'image', width: 64, height: 64, seed: 1 };
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => generate(t.app, user.authorization, body, { 'idempotency-key': 'same-key' })),
      );
      const ids = new Set(answers.map((a) => (a.json() as Json).job_id));
      expect(ids.size).toBe(1);
      expect(answers.filter((a) => a.statusCode === 202)).toHaveLength(1);
    });

    it('refuses a malformed key', async () => {
      const user = await signIn(t.app);
      for (const key of ['x'.repeat(129), 'has space', 'ключ']) {
        expectProblem(await generate(t.app, user.authorization, { prompt: 'ok', type: 'image' }, { 'idempotency-key': key }), 400);
      }
    });
  });

  describe('reading jobs', () => {
    it("another user's job is a 404 exactly like a missing one, on every job route", async () => {
      const owner = await signIn(t.app);
      const stranger = await signIn(t.app);
      const job = (await generate(t.app, owner.authorization, { prompt: 'mine', type: 'image', width: 64, height: 64 })).json() as Json;
      await waitFor(t.app, owner.authorization, job.job_id, ['succeeded']);
      const missing = '00000000-0000-4000-8000-000000000000';
      const routes: [string, string, unknown?][] = [
        ['GET', '/api/anime/jobs/%s'],
        ['GET', '/api/anime/generation/%s/status'],
        ['GET', '/api/anime/jobs/%s/events'],
        ['POST', '/api/anime/jobs/%s/cancel'],
        ['POST', '/api/anime/jobs/%s/publish', { visibility: 'public' }],
        ['DELETE', '/api/anime/jobs/%s/publish'],
      ];
      for (const [method, url, payload] of routes) {
        const theirs = await t.app.inject({ method: method as 'GET', url: url.replace('%s', job.job_id), headers: stranger.authorization, payload: payload as Json });
        const none = await t.app.inject({ method: method as 'GET', url: url.replace('%s', missing), headers: stranger.authorization, payload: payload as Json });
        const a = expectProblem(theirs, 404, 'not-found');
        const b = expectProblem(none, 404, 'not-found');
        expect(a).toEqual(b);
      }
      const stored = await t.app.services.store.db.selectFrom('jobs').select(['status', 'visibility']).where('id', '=', job.job_id).executeTakeFirstOrThrow();
      expect(stored).toEqual({ status: 'succeeded', visibility: null });
    });

    it('the old status path gives the same answer as GET /jobs/{id}', async () => {
      const user = await signIn(t.app);
      const job = (await generate(t.app, user.authorization, { prompt: 'old path', type: 'image', width: 64, height: 64 })).json() as Json;
      await waitFor(t.app, user.authorization, job.job_id, ['succeeded']);
      const a = await t.app.inject({ url: `/api/anime/jobs/${job.job_id}`, headers: user.authorization });
      const b = await t.app.inject({ url: `/api/anime/generation/${job.job_id}/status`, headers: user.authorization });
      expect(b.json()).toEqual(a.json());
    });

    it('lists own jobs newest first in cursor pages, with filters', async () => {
      const user = await signIn(t.app);
      const other = await signIn(t.app);
      await generate(t.app, other.authorization, { prompt: 'not yours', type: 'image' });
      const made: string[] = [];
      for (let i = 0; i < 7; i++) {
        const type = i % 3 === 0 ? 'video' : 'image';
        const body = { prompt: `hold: job ${i}`, type, width: 64, height: 64, ...(type === 'video' && { frames: 2 }) };
        made.push(((await generate(t.app, user.authorization, body)).json() as Json).job_id);
        // "newest first" is by creation time; two jobs made in the same millisecond have no order
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      // the held jobs fill the worker: release them whatever happens, or every later test waits
      try {
        const seen: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const url = `/api/anime/jobs?limit=3${cursor ? `&cursor=${cursor}` : ''}`;
          const page = (await t.app.inject({ url, headers: user.authorization })).json() as Json;
          expect(page.items.length).toBeLessThanOrEqual(3);
          seen.push(...page.items.map((j: Json) => j.job_id));
          cursor = page.next_cursor;
          pages += 1;
        } while (cursor);
        expect(pages).toBe(3);
        expect(seen).toEqual([...made].reverse());

        const videos = (await t.app.inject({ url: '/api/anime/jobs?type=video&limit=100', headers: user.authorization })).json() as Json;
        expect(videos.items.map((j: Json) => j.job_id)).toEqual([made[6], made[3], made[0]]);
        const canceled = (await t.app.inject({ url: '/api/anime/jobs?status=canceled', headers: user.authorization })).json() as Json;
        expect(canceled.items).toEqual([]);

        expectProblem(await t.app.inject({ url: '/api/anime/jobs?cursor=not-a-cursor', headers: user.authorization }), 400);
        expectProblem(await t.app.inject({ url: '/api/anime/jobs?limit=101', headers: user.authorization }), 400, 'validation');
        expectProblem(await t.app.inject({ url: '/api/anime/jobs?status=lost', headers: user.authorization }), 400, 'validation');
        expectProblem(await t.app.inject({ url: '/api/anime/jobs?user_id=x', headers: user.authorization }), 400, 'validation');
      } finally {
        for (const id of made) await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${id}/cancel`, headers: user.authorization });
      }
    });
  });

  describe('cancel', () => {
    it('a running job is interrupted in the renderer and ends canceled; a second cancel is a 409', async () => {
      const user = await signIn(t.app);
      const job = (await generate(t.app, user.authorization, { prompt: 'hold: forever', type: 'image', width: 64, height: 64 })).json() as Json;
      await waitFor(t.app, user.authorization, job.job_id, ['running']);
      const abortedBefore = renderer.aborted;
      const response = await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${job.job_id}/cancel`, headers: user.authorization });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toMatchObject({ status: 'canceled', assets: [] });
      await expect.poll(() => renderer.aborted).toBe(abortedBefore + 1);
      expectProblem(await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${job.job_id}/cancel`, headers: user.authorization }), 409, 'conflict');
      const row = await t.app.services.store.db.selectFrom('jobs').selectAll().where('id', '=', job.job_id).executeTakeFirstOrThrow();
      expect(row).toMatchObject({ status: 'canceled', locked_by: null });
      expect(row.finished_at).not.toBeNull();
      const assets = await t.app.services.store.db.selectFrom('assets').select('id').where('job_id', '=', job.job_id).execute();
      expect(assets).toEqual([]);
    });

    it('a queued job can be canceled before it starts', async () => {
      const user = await signIn(t.app);
      // fill the worker's slots so the next job waits
      const holders = [];
      for (let i = 0; i < t.config.workerConcurrency; i++) {
        holders.push(((await generate(t.app, user.authorization, { prompt: `hold: slot ${i}`, type: 'image' })).json() as Json).job_id);
      }
      for (const id of holders) await waitFor(t.app, user.authorization, id, ['running']);
      const waiting = (await generate(t.app, user.authorization, { prompt: 'waiting', type: 'image' })).json() as Json;
      const canceled = await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${waiting.job_id}/cancel`, headers: user.authorization });
      expect(canceled.json()).toMatchObject({ status: 'canceled', started_at: null });
      for (const id of holders) await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${id}/cancel`, headers: user.authorization });
    });
  });

  describe('GET /jobs/{id}/events', () => {
    it('streams progress and status as server-sent events until a terminal state', async () => {
      const user = await signIn(t.app);
      const job = (await generate(t.app, user.authorization, { prompt: 'hold: stream', type: 'image', width: 64, height: 64 })).json() as Json;
      const streams = Array.from({ length: 5 }, () => t.app.inject({ url: `/api/anime/jobs/${job.job_id}/events`, headers: user.authorization }));
      await waitFor(t.app, user.authorization, job.job_id, ['running']);
      await new Promise((resolve) => setTimeout(resolve, 50));
      await t.app.inject({ method: 'POST', url: `/api/anime/jobs/${job.job_id}/cancel`, headers: user.authorization });
      for (const response of await Promise.all(streams)) {
        expect(response.statusCode).toBe(200);
        expect(response.headers['content-type']).toMatch(/^text\/event-stream/);
        const events = response.body
          .split('\n\n')
          .filter((block) => block.startsWith('event:'))
          .map((block) => {
            const [name, data] = block.split('\n');
            return { name: name!.slice('event: '.length), data: JSON.parse(data!.slice('data: '.length)) as Json };
          });
        expect(events[0]!.name).toBe('status');
        const last = events.at(-1)!;
        expect(last).toMatchObject({ name: 'status', data: { job_id: job.job_id, status: 'canceled' } });
        expectNoPath(response.body);
      }
    });

    it('a finished job sends its final state and ends', async () => {
      const user = await signIn(t.app);
      const job = (await generate(t.app, user.authorization, { prompt: 'quick', type: 'image', width: 64, height: 64 })).json() as Json;
      await waitFor(t.app, user.authorization, job.job_id, ['succeeded']);
      const response = await t.app.inject({ url: `/api/anime/jobs/${job.job_id}/events`, headers: user.authorization });
      expect(response.body).toContain('event: status');
      expect(response.body).toContain('"status":"succeeded"');
    });

    it('follows a job from queued to succeeded with progress in between', async () => {
      const user = await signIn(t.app);
      const job = (await generate(t.app, user.authorization, { prompt: 'watch me', type: 'video', width: 64, height: 64, frames: 12 })).json() as Json;
      const response = await t.app.inject({ url: `/api/anime/jobs/${job.job_id}/events`, headers: user.authorization });
      expect(response.body).toMatch(/"status":"succeeded"/);
      const last = response.body.trim().split('\n\n').at(-1)!;
      expect(last).toMatch(/^event: status\n/);
      // the MP4 and the animated WebP
      expect(JSON.parse(last.split('\n')[1]!.slice(6)).assets).toHaveLength(2);
    });
  });

  it('no answer names a file path', async () => {
    const user = await signIn(t.app);
    const job = (await generate(t.app, user.authorization, { prompt: 'paths', type: 'image', width: 64, height: 64 })).json() as Json;
    await waitFor(t.app, user.authorization, job.job_id, ['succeeded']);
    for (const url of [`/api/anime/jobs/${job.job_id}`, '/api/anime/jobs', `/api/anime/generation/${job.job_id}/status`, '/api/anime/openapi.json']) {
      const response = await t.app.inject({ url, headers: user.authorization });
      expect(response.statusCode).toBe(200);
      expectNoPath(response.body);
      expect(response.body).not.toContain(t.config.dataDir);
      expect(response.body).not.toMatch(/storage_key|locked_by|\.png"|\.webp"/);
    }
  });
});

describeEachDialect('event streams and shutdown', (dialect) => {
  const t = useTestApp(dialect, { limits: ROOMY_LIMITS }, { renderer: new HoldingRenderer() });

  it('closing the server ends open event streams instead of hanging', async () => {
    const user = await signIn(t.app);
    const job = (await generate(t.app, user.authorization, { prompt: 'hold: until shutdown', type: 'image' })).json() as Json;
    const base = await t.app.listen({ host: '127.0.0.1', port: 0 });
    const response = await fetch(`${base}/api/anime/jobs/${job.job_id}/events`, { headers: user.authorization });
    const reader = response.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toMatch(/^event: status\n/);
    const closing = t.app.close();
    for (;;) if ((await reader.read()).done) break;
    await closing;
  });
});
