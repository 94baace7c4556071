import type { Readable } from 'node:stream';

/** `open` of a key that holds nothing. */
export class ObjectMissingError extends Error {
  override name = 'ObjectMissingError';
}

/** A byte range, both ends included. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface StoredObject {
  key: string;
  size: number;
  modifiedAt: Date;
}

export interface PresignOptions {
  contentType: string;
  disposition: string;
  expiresInSeconds: number;
}

/**
 * Where asset bytes live: a directory (embedded) or an S3-compatible bucket (scale-out). Keys are
 * `<folder>/<name>` made by AssetStorage, never by a caller's input.
 *
 * `put` is atomic: until it resolves nobody sees the key, and afterwards they see all of it; a
 * second put of the same key replaces the first whole. A writer that dies leaves at most an
 * invisible leftover (a `*.tmp` file, an unfinished multipart upload) that `sweepLeftovers` removes.
 */
export interface ObjectStore {
  readonly kind: 'disk' | 's3';
  put(key: string, body: Buffer | Readable, contentType: string): Promise<number>;
  stat(key: string): Promise<{ size: number } | null>;
  /** rejects with ObjectMissingError when the key holds nothing */
  open(key: string, range?: ByteRange): Promise<Readable>;
  remove(key: string): Promise<void>;
  list(): AsyncIterable<StoredObject>;
  /** a short-lived URL that reads the object directly; only where the back end has one */
  presign?(key: string, options: PresignOptions): Promise<string>;
  /** removes what killed writers left behind, older than `maxAgeMs`; returns how many */
  sweepLeftovers(maxAgeMs: number): Promise<number>;
  close(): Promise<void>;
}
