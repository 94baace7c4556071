import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';

/** A scratch directory for a test file's renders (as the worker gives each run), removed after the file. */
export function testScratchDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'celforge-test-scratch-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
