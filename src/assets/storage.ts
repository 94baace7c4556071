import { createReadStream } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Config } from '../config/config.js';
import type { ResultData } from '../renderers/renderer.js';
import { DiskObjectStore } from './backends/disk.js';
import type { ByteRange, ObjectStore } from './backends/object-store.js';
import { makeScratchDir } from './scratch.js';
import { imageThumbnail, stripImageMetadata, stripVideoFile, videoPoster } from './derivatives.js';

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
const ORIGINALS = 'assets';
const THUMBNAILS = 'thumbnails';

/**
 * A temporary file or unfinished upload older than this was left by a writer that died (a write
 * takes seconds); a younger one may still be written by another process.
 */
export const STALE_TEMP_MS = 60 * 60 * 1000;

export interface StoredFile {
  storageKey: string;
  contentType: string;
  byteSize: number;
}

/** What a render produced: the bytes in memory, or a file (a large video) that is never read into memory whole. */
export interface ResultBody {
  contentType: string;
  data: ResultData;
}

export interface WriteOptions {
  /** told the size of the result as it will be stored, before anything is uploaded; may refuse it by throwing */
  admit?: (byteSize: number) => Promise<void>;
}

/** The object key of a result's original, and of its thumbnail (image) or poster (video). */
export const originalKey = (storageKey: string) => `${ORIGINALS}/${checked(storageKey)}`;
export const thumbnailKey = (storageKey: string) => `${THUMBNAILS}/${checked(storageKey).replace(/\.[a-z0-9]+$/, '')}.webp`;

function checked(storageKey: string): string {
  if (!KEY.test(storageKey)) throw new Error('not a storage key');
  return storageKey;
}

/** The storage key an object key belongs to, or null for a key that is not Celforge's. */
export function ownerOfKey(key: string): { storageKey: string | null; stem: string; kind: 'original' | 'thumbnail' } | null {
  const [folder, name, ...rest] = key.split('/');
  if (rest.length > 0 || !name) return null;
  if (folder === ORIGINALS && KEY.test(name)) return { storageKey: name, stem: name.replace(/\.[a-z0-9]+$/, ''), kind: 'original' };
  if (folder === THUMBNAILS && /^[0-9a-f-]{36}-\d{1,3}\.webp$/.test(name)) return { storageKey: null, stem: name.slice(0, -5), kind: 'thumbnail' };
  return null;
}

/** The configured object store; the S3 client is loaded only when S3 is configured (it is slow to load). */
export async function openObjectStore(config: Config): Promise<ObjectStore> {
  const { s3 } = config.assets;
  if (!s3) return new DiskObjectStore(config.dataDir, [ORIGINALS, THUMBNAILS]);
  const { S3ObjectStore } = await import('./backends/s3.js');
  return new S3ObjectStore(s3);
}

/**
 * Results and their derivatives, in whichever object store is configured: the one place the job
 * pipeline saves through. A result, given as bytes or as a stream, is stored without embedded
 * metadata; an image with a 384 px WebP thumbnail, a video with a poster of the same size (its
 * only poster). Each write replaces a re-run's files whole (keys are the job id and position),
 * never adding a second copy.
 */
export class AssetStorage {
  constructor(readonly objects: ObjectStore) {}

  async write(jobId: string, position: number, output: ResultBody, options: WriteOptions = {}): Promise<StoredFile> {
    const contentType = output.contentType.toLowerCase();
    const extension = TYPES[contentType];
    if (!extension) throw new Error(`renderer produced an unsupported content type`);
    const storageKey = `${jobId}-${position}.${extension}`;
    if (contentType.startsWith('video/')) return this.#writeVideo(storageKey, contentType, output.data, options);
    const data = await stripImageMetadata(Buffer.isBuffer(output.data) ? output.data : await readFile(output.data.path), contentType);
    await options.admit?.(data.length);
    // The derivative first: a result visible in the store always has its thumbnail.
    await this.objects.put(thumbnailKey(storageKey), await imageThumbnail(data), 'image/webp');
    const byteSize = await this.objects.put(originalKey(storageKey), data, contentType);
    return { storageKey, contentType, byteSize };
  }

  /**
   * A video, given as bytes or as a file, is stripped by ffmpeg into a temporary file, its poster
   * taken from that, and it is uploaded from there as a stream, so a long video is never held in
   * memory whole.
   */
  async #writeVideo(storageKey: string, contentType: string, data: ResultData, options: WriteOptions): Promise<StoredFile> {
    const dir = await makeScratchDir();
    try {
      let input: string;
      if (Buffer.isBuffer(data)) {
        input = path.join(dir, 'rendered');
        await writeFile(input, data, { mode: 0o600 });
      } else {
        input = data.path;
      }
      const stripped = path.join(dir, `stripped.${TYPES[contentType]}`);
      // kept as it is when ffmpeg is missing or cannot read it: nothing plays it then either
      const file = (await stripVideoFile(input, stripped, contentType)) ? stripped : input;
      await options.admit?.((await stat(file)).size);
      await this.objects.put(thumbnailKey(storageKey), await videoPoster(file), 'image/webp');
      const byteSize = await this.objects.put(originalKey(storageKey), createReadStream(file), contentType);
      return { storageKey, contentType, byteSize };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Removes a result and its derivatives. */
  async remove(storageKey: string): Promise<void> {
    await Promise.all([this.objects.remove(originalKey(storageKey)), this.objects.remove(thumbnailKey(storageKey))]);
  }

  /** Removes temporary files and unfinished uploads that killed writers left behind; returns how many. */
  removeStaleTemps(maxAgeMs = STALE_TEMP_MS): Promise<number> {
    return this.objects.sweepLeftovers(maxAgeMs);
  }

  open(storageKey: string, range?: ByteRange, which: 'original' | 'thumbnail' = 'original'): Promise<Readable> {
    return this.objects.open(which === 'original' ? originalKey(storageKey) : thumbnailKey(storageKey), range);
  }

  close(): Promise<void> {
    return this.objects.close();
  }
}

export function extensionFor(contentType: string): string {
  return TYPES[contentType] ?? 'bin';
}
