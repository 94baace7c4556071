import type { Locator } from '@playwright/test';
import { apiToken, expect, expectAccessible, signIn, test } from './fixtures.ts';

/** The image's source, once the browser has decoded it (a broken or blocked image has no width). */
async function shownSource(image: Locator): Promise<string> {
  await expect.poll(() => image.evaluate((element: HTMLImageElement) => element.complete && element.naturalWidth > 0)).toBe(true);
  return (await image.getAttribute('src')) ?? '';
}

test('a running job shows its latest preview frame in the queue row and in the viewer, then its result', async ({ page, server, request }) => {
  const token = await apiToken(request, server, server.users.previews);
  const prompt = 'a kite over a windy hill, live';
  // The embedded renderer sends a preview frame about every 500 ms; 80 frames at 120 ms run ~10 s.
  const made = await request.post(`${server.url}/api/anime/generate`, {
    headers: { authorization: `Bearer ${token}` },
    data: { prompt, type: 'video', frames: 80, fps: 8, width: 256, height: 256 },
  });
  expect(made.status()).toBe(202);
  const { job_id } = (await made.json()) as { job_id: string };

  await page.goto('/jobs');
  await signIn(page, server.users.previews);
  const row = page.getByRole('listitem').filter({ hasText: prompt });
  const live = row.locator('img.live');
  await expect(live).toHaveAttribute('src', /^data:image\/jpeg;base64,[A-Za-z0-9+/]+=*$/);
  const first = await shownSource(live);
  // Frames keep coming while it runs: the row shows the newest.
  await expect.poll(() => live.getAttribute('src'), { timeout: 5_000 }).not.toBe(first);
  await expect(row.getByRole('progressbar')).toBeVisible();

  await row.getByRole('link', { name: prompt }).click();
  await expect(page).toHaveURL(new RegExp(`/jobs/${job_id}$`));
  const viewerLive = page.getByRole('img', { name: `Live preview of: ${prompt}` });
  await shownSource(viewerLive);
  await expect(viewerLive).toHaveAttribute('src', /^data:image\/jpeg;base64,/);
  await expectAccessible(page, 'viewer with a live preview');

  // Done: the preview gives way to the result.
  await expect(page.getByText('succeeded', { exact: true })).toBeVisible({ timeout: 60_000 });
  await expect(viewerLive).toHaveCount(0);
  await page.goto('/jobs');
  await expect(row.getByText('succeeded', { exact: true })).toBeVisible();
  await expect(live).toHaveCount(0);
  const thumbnail = row.locator('.thumb img');
  await expect(thumbnail).toHaveAttribute('src', /\/thumbnail\?/);
  await shownSource(thumbnail);
});
