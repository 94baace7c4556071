import { randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import { open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ObjectMissingError, type ByteRange, type ObjectStore, type StoredObject } from './object-store.js';

/** `<key>.<uuid>.tmp`, as `put` names its temporary files */
const TEMP = /\.[0-9a-f-]{36}\.tmp$/;

/**
 * Objects as files under the data dir: `<data dir>/<folder>/<name>`. A file is streamed to a
 * temporary name beside its place and renamed into it, so readers see nothing or all of it.
 */
export class DiskObjectStore implements ObjectStore {
  readonly kind = 'disk';

  constructor(
    private readonly root: string,
    private readonly folders: readonly string[],
  ) {
    for (const folder of folders) mkdirSync(path.join(root, folder), { recursive: true, mode: 0o700 });
  }

  async put(key: string, body: Buffer | Readable, _contentType: string): Promise<number> {
    const file = this.#path(key);
    const temp = `${file}.${randomUUID()}.tmp`;
    const out = createWriteStream(temp, { mode: 0o600 });
    try {
      await pipeline(Buffer.isBuffer(body) ? Readable.from([body]) : body, out);
      await rename(temp, file);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    return out.bytesWritten;
  }

  async stat(key: string): Promise<{ size: number } | null> {
    try {
      const info = await stat(this.#path(key));
      return info.isFile() ? { size: info.size } : null;
    } catch {
      return null;
    }
  }

  async open(key: string, range?: ByteRange): Promise<Readable> {
    let handle;
    try {
      handle = await open(this.#path(key), 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new ObjectMissingError('no such object');
      throw error;
    }
    return handle.createReadStream(range);
  }

  async remove(key: string): Promise<void> {
    await rm(this.#path(key), { force: true });
  }

  async *list(): AsyncIterable<StoredObject> {
    for (const folder of this.folders) {
      for (const name of await readdir(path.join(this.root, folder))) {
        if (TEMP.test(name)) continue;
        try {
          const info = await stat(path.join(this.root, folder, name));
          if (info.isFile()) yield { key: `${folder}/${name}`, size: info.size, modifiedAt: info.mtime };
        } catch {
          // removed meanwhile
        }
      }
    }
  }

  async sweepLeftovers(maxAgeMs: number): Promise<number> {
    const cutoff = Date.now() - maxAgeMs;
    let removed = 0;
    for (const folder of this.folders) {
      const dir = path.join(this.root, folder);
      for (const name of await readdir(dir)) {
        if (!TEMP.test(name)) continue;
        const file = path.join(dir, name);
        try {
          if ((await stat(file)).mtimeMs >= cutoff) continue;
          await rm(file, { force: true });
          removed++;
        } catch {
          // renamed or removed meanwhile
        }
      }
    }
    return removed;
  }

  async close(): Promise<void> {}

  #path(key: string): string {
    const [folder, name, ...rest] = key.split('/');
    if (rest.length > 0 || !folder || !name || !this.folders.includes(folder) || name.startsWith('.')) throw new Error('not an object key');
    return path.join(this.root, folder, name);
  }
}
