import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Directories in the system's temporary folder (`TMPDIR`) that results pass through on their way
 * to the object store: a job's downloaded or converted video, a video being stripped. Their owner
 * removes them; a process killed midway leaves them behind, and `sweepScratchDirs` removes those.
 */
const PREFIX = 'celforge-scratch-';

export function makeScratchDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), PREFIX));
}

/** A job run's scratch directory: made when first asked for (most runs never need one), removed at the run's end. */
export class RunScratch {
  #dir: Promise<string> | undefined;

  readonly path = (): Promise<string> => (this.#dir ??= makeScratchDir());

  async remove(): Promise<void> {
    const dir = await this.#dir?.catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

/** Removes scratch directories older than `maxAgeMs` (no owner keeps one that long); returns how many. */
export async function sweepScratchDirs(maxAgeMs: number): Promise<number> {
  const cutoff = Date.now() - maxAgeMs;
  let removed = 0;
  for (const name of await readdir(tmpdir())) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = path.join(tmpdir(), name);
    try {
      if ((await stat(dir)).mtimeMs >= cutoff) continue;
      await rm(dir, { recursive: true, force: true });
      removed++;
    } catch {
      // removed meanwhile, or not ours to remove
    }
  }
  return removed;
}
