import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { ObjectStore } from './backends/object-store.js';
import { ownerOfKey } from './storage.js';

export interface MigrationReport {
  copied: number;
  /** already in the target with the same size and SHA-256 (an earlier, interrupted run) */
  verified: number;
  failed: { key: string; reason: string }[];
  bytes: number;
}

async function sha256(stream: Readable): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: hash.digest('hex'), size };
}

/**
 * Copies every result and derivative from one object store to another (`celforge assets migrate
 * --to s3`). Each object is checked after the copy by reading it back: same size and SHA-256 as
 * the source, or it counts as failed. Objects the target already holds intact are not copied
 * again, so an interrupted run is simply run again. The source is never changed.
 */
export async function migrateObjects(source: ObjectStore, target: ObjectStore, onProgress?: (key: string, outcome: string) => void): Promise<MigrationReport> {
  const report: MigrationReport = { copied: 0, verified: 0, failed: [], bytes: 0 };
  for await (const item of source.list()) {
    if (!ownerOfKey(item.key)) continue;
    try {
      const expected = await sha256(await source.open(item.key));
      const present = await target.stat(item.key);
      if (present?.size === expected.size && (await sha256(await target.open(item.key))).digest === expected.digest) {
        report.verified++;
        onProgress?.(item.key, 'verified');
        continue;
      }
      const contentType = item.key.startsWith('thumbnails/') ? 'image/webp' : contentTypeOf(item.key);
      await target.put(item.key, await source.open(item.key), contentType);
      const copied = await sha256(await target.open(item.key));
      if (copied.size !== expected.size || copied.digest !== expected.digest) throw new Error('the copy differs from the source');
      report.copied++;
      report.bytes += copied.size;
      onProgress?.(item.key, 'copied');
    } catch (error) {
      report.failed.push({ key: item.key, reason: error instanceof Error ? error.message : String(error) });
      onProgress?.(item.key, 'failed');
    }
  }
  return report;
}

const BY_EXTENSION: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  mp4: 'video/mp4',
  webm: 'video/webm',
};

function contentTypeOf(key: string): string {
  return BY_EXTENSION[key.slice(key.lastIndexOf('.') + 1)] ?? 'application/octet-stream';
}
