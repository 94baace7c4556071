import { randomUUID } from 'node:crypto';
import { createReadStream, mkdirSync, statSync, type ReadStream } from 'node:fs';
import { readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { RenderOutput } from '../renderers/renderer.js';

/** Content types a result may have, and the extension its file gets. Anything else is refused. */
const TYPES: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
  'image/gif': 'gif',
  'video/mp4': 'mp4',
  'video/webm': 'webm',
};

const KEY = /^[0-9a-f-]{36}-\d{1,3}\.[a-z0-9]{1,5}$/;
/** `<storage key>.<uuid>.tmp`, as `write` names its temporary files */
const TEMP = /^[0-9a-f-]{36}-\d{1,3}\.[a-z0-9]{1,5}\.[0-9a-f-]{36}\.tmp$/;

/**
 * A temporary file older than this was left by a writer that died (a write takes seconds); a
 * younger one may still be written by another process sharing the data dir.
 */
export const STALE_TEMP_MS = 60 * 60 * 1000;

export interface StoredFile {
  storageKey: string;
  contentType: string;
  byteSize: number;
}

/**
 * Result files under `<data dir>/assets`, named by job id and position. A file is written to a
 * temporary name and renamed into place, so a re-run of the same job (after a crash) replaces
 * it whole instead of adding a second one.
 */
export class AssetStorage {
  readonly #dir: string;

  constructor(dataDir: string) {
    this.#dir = path.join(dataDir, 'assets');
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
  }

  async write(jobId: string, position: number, output: RenderOutput): Promise<StoredFile> {
    const contentType = output.contentType.toLowerCase();
    const extension = TYPES[contentType];
    if (!extension) throw new Error(`renderer produced an unsupported content type`);
    const storageKey = `${jobId}-${position}.${extension}`;
    const file = this.#path(storageKey);
    const temp = `${file}.${randomUUID()}.tmp`;
    try {
      await writeFile(temp, output.data, { mode: 0o600 });
      await rename(temp, file);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    return { storageKey, contentType, byteSize: output.data.length };
  }

  /** Removes temporary files a killed writer left behind; returns how many. */
  async removeStaleTemps(maxAgeMs = STALE_TEMP_MS): Promise<number> {
    const cutoff = Date.now() - maxAgeMs;
    let removed = 0;
    for (const name of await readdir(this.#dir)) {
      if (!TEMP.test(name)) continue;
      const file = path.join(this.#dir, name);
      try {
        if ((await stat(file)).mtimeMs >= cutoff) continue;
        await rm(file, { force: true });
        removed++;
      } catch {
        // renamed or removed meanwhile
      }
    }
    return removed;
  }

  async remove(storageKey: string): Promise<void> {
    await rm(this.#path(storageKey), { force: true });
  }

  size(storageKey: string): number | null {
    try {
      return statSync(this.#path(storageKey)).size;
    } catch {
      return null;
    }
  }

  open(storageKey: string, range?: { start: number; end: number }): ReadStream {
    return createReadStream(this.#path(storageKey), range);
  }

  #path(storageKey: string): string {
    if (!KEY.test(storageKey)) throw new Error('not a storage key');
    return path.join(this.#dir, storageKey);
  }
}

export function extensionFor(contentType: string): string {
  return TYPES[contentType] ?? 'bin';
}
