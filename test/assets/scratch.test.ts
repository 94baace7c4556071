import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeScratchDir, sweepScratchDirs } from '../../src/assets/scratch.js';

// this file's process alone: scratch directories are made in TMPDIR
const root = mkdtempSync(path.join(tmpdir(), 'celforge-tmpdir-'));
const previous = process.env.TMPDIR;
beforeAll(() => {
  process.env.TMPDIR = root;
});
afterAll(() => {
  if (previous === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = previous;
  rmSync(root, { recursive: true, force: true });
});

it('scratch directories a killed worker left are swept once older than the limit; younger ones and others stay', async () => {
  const old = await makeScratchDir();
  writeFileSync(path.join(old, 'output-0.mp4'), 'half a video');
  const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
  utimesSync(old, twoHoursAgo, twoHoursAgo);
  const young = await makeScratchDir();
  const other = path.join(root, 'someone-else');
  mkdirSync(other);
  utimesSync(other, twoHoursAgo, twoHoursAgo);
  expect(path.dirname(old)).toBe(root);

  expect(await sweepScratchDirs(3600_000)).toBe(1);
  expect(readdirSync(root).sort()).toEqual([path.basename(young), 'someone-else'].sort());
});
