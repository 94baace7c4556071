import { describe, expect, it } from 'vitest';
import { JobEvents, type JobEvent } from '../../../src/production/events.js';
import { PREVIEW_MAX_BYTES, previewRelay } from '../../../src/production/fleet/previews.js';
import { signIn, useTestApp } from '../../support/app.js';
import { describeEachDialect } from '../../support/dialects.js';
import { expectProblem, generate, ROOMY_LIMITS, type Json } from '../helpers.js';

function sse(body: string): { name: string; data: Json }[] {
  return body
    .trim()
    .split('\n\n')
    .filter((block) => block.startsWith('event: '))
    .map((block) => {
      const [name, data] = block.split('\n');
      return { name: name!.slice(7), data: JSON.parse(data!.slice(6)) as Json };
    });
}

describe('preview relay', () => {
  it('passes at most one frame per 500 ms, no frame over the size bound, images only', () => {
    const events = new JobEvents();
    const seen: JobEvent[] = [];
    events.subscribe('job-1', (event) => seen.push(event));
    events.subscribe('job-2', (event) => seen.push(event));
    let clock = 1_000;
    const relay = previewRelay(events, 'job-1', () => clock);
    const jpeg = (size: number) => ({ contentType: 'image/jpeg', data: Buffer.alloc(size, 1) });
    relay(jpeg(100)); // sent
    clock += 200;
    relay(jpeg(100)); // too soon
    clock += 300;
    relay(jpeg(PREVIEW_MAX_BYTES + 1)); // too large
    relay({ contentType: 'text/html', data: Buffer.from('<script>') }); // not an image
    relay(jpeg(50)); // sent: 500 ms after the first
    clock += 100;
    relay(jpeg(50)); // too soon
    expect(seen.map((e) => [e.kind, e.jobId, e.preview?.data.length])).toEqual([
      ['preview', 'job-1', Buffer.alloc(100, 1).toString('base64').length],
      ['preview', 'job-1', Buffer.alloc(50, 1).toString('base64').length],
    ]);
  });
});

describeEachDialect('live previews', (dialect) => {
  const t = useTestApp(dialect, { limits: ROOMY_LIMITS, previewStepMs: 150, workerConcurrency: 2 });

  it('the preview renderer\'s frames reach the job owner\'s event stream, and no other user\'s', async () => {
    const owner = await signIn(t.app);
    const other = await signIn(t.app);
    const job = (await generate(t.app, owner.authorization, { prompt: 'a lighthouse', type: 'image', width: 128, height: 96, steps: 16 })).json() as Json;
    const theirs = (await generate(t.app, other.authorization, { prompt: 'a garden', type: 'image', width: 64, height: 64, steps: 10 })).json() as Json;
    const [mine, others] = await Promise.all([
      t.app.inject({ url: `/api/anime/jobs/${job.job_id}/events`, headers: owner.authorization }),
      t.app.inject({ url: `/api/anime/jobs/${theirs.job_id}/events`, headers: other.authorization }),
    ]);
    const previews = sse(mine.body).filter((e) => e.name === 'preview');
    // 16 steps of 150 ms: 2.4 s, so at ≤ 2 per second at most 6 frames (the stream may open after the first).
    expect(previews.length).toBeGreaterThanOrEqual(2);
    expect(previews.length).toBeLessThanOrEqual(6);
    for (const preview of previews) {
      expect(preview.data).toMatchObject({ job_id: job.job_id, content_type: 'image/jpeg' });
      const bytes = Buffer.from(preview.data.data as string, 'base64');
      expect(bytes.subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff]));
      expect(bytes.length).toBeLessThanOrEqual(PREVIEW_MAX_BYTES);
    }
    expect(sse(mine.body).at(-1)!.data.status).toBe('succeeded');
    // The other user's stream carries only their own job; the owner's job is not theirs to follow.
    expect(others.body).not.toContain(job.job_id);
    expect(sse(others.body).every((e) => e.data.job_id === theirs.job_id)).toBe(true);
    expectProblem(await t.app.inject({ url: `/api/anime/jobs/${job.job_id}/events`, headers: other.authorization }), 404);
  });
});
