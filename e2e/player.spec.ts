import type { APIRequestContext } from '@playwright/test';
import sharp from 'sharp';
import { apiToken, expect, expectAccessible, signIn, startServer, test, type Server } from './fixtures.ts';

interface Asset {
  content_type: string;
  url: string;
  thumbnail_url: string;
}

/** A small video job made through the API, waited for until it succeeded. */
async function finishedVideo(request: APIRequestContext, server: Server, prompt: string): Promise<{ job_id: string; assets: Asset[] }> {
  const token = await apiToken(request, server, server.users.player);
  const headers = { authorization: `Bearer ${token}` };
  const made = await request.post(`${server.url}/api/anime/generate`, { headers, data: { prompt, type: 'video', frames: 12, fps: 6, width: 256, height: 192 } });
  expect(made.status(), await made.text()).toBe(202);
  const { job_id } = (await made.json()) as { job_id: string };
  let job: { status: string; assets: Asset[] } = { status: 'queued', assets: [] };
  await expect
    .poll(
      async () => {
        job = await (await request.get(`${server.url}/api/anime/jobs/${job_id}`, { headers })).json();
        return job.status;
      },
      { timeout: 60_000 },
    )
    .toBe('succeeded');
  return { job_id, assets: job.assets };
}

test('a video job plays its MP4 in the viewer with controls, over its poster', async ({ page, server, request }) => {
  const prompt = 'a paper lantern floating upward';
  const { job_id, assets } = await finishedVideo(request, server, prompt);
  // the MP4 first, then the animation the renderer drew; the poster is the MP4's derivative
  expect(assets.map((asset) => asset.content_type)).toEqual(['video/mp4', 'image/webp']);

  await page.goto(`/jobs/${job_id}`);
  await signIn(page, server.users.player);
  const video = page.locator('video');
  await expect(video).toHaveAttribute('controls', '');
  await expect(video).toHaveAttribute('src', assets[0]!.url);
  await expect(video).toHaveAttribute('poster', assets[0]!.thumbnail_url);
  const poster = await request.get(new URL(assets[0]!.thumbnail_url, server.url).href);
  expect(poster.headers()['content-type']).toBe('image/webp');
  expect((await sharp(await poster.body()).metadata()).width).toBe(256);

  // It plays: time moves on.
  await expect.poll(() => video.evaluate((element: HTMLVideoElement) => element.readyState), { timeout: 20_000 }).toBeGreaterThanOrEqual(1);
  await video.evaluate((element: HTMLVideoElement) => {
    element.muted = true;
    return element.play();
  });
  await expect.poll(() => video.evaluate((element: HTMLVideoElement) => element.currentTime)).toBeGreaterThan(0);
  await expect(page.getByRole('link', { name: 'Download' })).toHaveAttribute('download', /\.mp4$/);
  await expectAccessible(page, 'viewer, video');
});

test.describe('on a machine without ffmpeg', () => {
  let own: Awaited<ReturnType<typeof startServer>>;
  test.beforeAll(async () => {
    // No ffmpeg on the PATH: a video job keeps only the animated WebP the renderer drew.
    own = await startServer({ env: { PATH: '/nonexistent' } });
  });
  test.afterAll(async () => own?.stop());

  test('an animated WebP shows its poster still and plays and pauses from the keyboard', async ({ page, request }) => {
    const server = own.server;
    const prompt = 'fireflies over a summer pond';
    const { job_id, assets } = await finishedVideo(request, server, prompt);
    expect(assets.map((asset) => asset.content_type)).toEqual(['image/webp']);
    const animation = assets[0]!;

    await page.goto(`${server.url}/jobs/${job_id}`);
    await signIn(page, server.users.player);
    const still = page.getByRole('img', { name: `First frame of: ${prompt}` });
    await expect(still).toHaveAttribute('src', animation.thumbnail_url);
    await expect(page.locator('video')).toHaveCount(0);
    await expectAccessible(page, 'viewer, animation paused');

    const play = page.getByRole('button', { name: 'Play' });
    await play.focus();
    await page.keyboard.press('Enter');
    const moving = page.getByRole('img', { name: `Animation for: ${prompt}` });
    await expect(moving).toHaveAttribute('src', animation.url);
    await expect.poll(() => moving.evaluate((element: HTMLImageElement) => element.complete && element.naturalWidth)).toBe(256);
    // what it shows is the animation itself: every frame the renderer drew
    const bytes = await (await request.get(new URL(animation.url, server.url).href)).body();
    expect((await sharp(bytes, { animated: true }).metadata()).pages).toBe(12);

    const pause = page.getByRole('button', { name: 'Pause' });
    await expect(pause).toBeFocused();
    await page.keyboard.press('Space');
    await expect(still).toHaveAttribute('src', animation.thumbnail_url);
    await expect(page.getByRole('button', { name: 'Play' })).toBeFocused();
  });
});
