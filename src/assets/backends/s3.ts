import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { randomUUID } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { PresignedReads } from './presigned-reads.js';
import { type ByteRange, type ObjectStore, type PresignOptions, type StoredObject } from './object-store.js';
import type { S3Settings } from '../../config/assets.js';

/** Parts of a multipart upload: at most two are held in memory per upload. */
const PART_BYTES = 8 * 1024 * 1024;
/** Where bodies are uploaded before they are copied to their key. */
const INCOMING = 'incoming/';

/**
 * Objects in an S3-compatible bucket. Large bodies go up as multipart uploads streamed part by
 * part. A body is uploaded under `incoming/` and then copied to its key inside the store, so the
 * key shows all of it or nothing even on a store that keeps the half of a body whose sender died
 * (s3rver does; AWS S3 would refuse it). A writer killed midway leaves an `incoming/` object or an
 * unfinished multipart upload, which `sweepLeftovers` removes.
 */
export class S3ObjectStore implements ObjectStore {
  readonly kind = 's3';
  readonly #client: S3Client;
  readonly #reads = new PresignedReads((key, expiresIn) =>
    getSignedUrl(this.#client, new GetObjectCommand({ Bucket: this.settings.bucket, Key: this.#key(key) }), { expiresIn }),
  );

  constructor(private readonly settings: S3Settings) {
    this.#client = new S3Client({
      endpoint: settings.endpoint,
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      credentials:
        settings.accessKeyId && settings.secretAccessKey
          ? { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey }
          : undefined,
      // Checksums only where S3 demands them: many S3-compatible stores reject the SDK's default
      // aws-chunked trailers on streamed bodies.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  get client(): S3Client {
    return this.#client;
  }

  #key(key: string): string {
    return this.settings.prefix + key;
  }

  async put(key: string, body: Buffer | Readable, contentType: string): Promise<number> {
    let bytes = Buffer.isBuffer(body) ? body.length : 0;
    // A stream is counted on its way through; the source's failure fails the upload.
    const counted = Buffer.isBuffer(body)
      ? body
      : body.pipe(
          new Transform({
            transform(chunk: Buffer, _encoding, done) {
              bytes += chunk.length;
              done(null, chunk);
            },
          }),
        );
    if (!Buffer.isBuffer(body)) body.once('error', (error) => (counted as Transform).destroy(error));
    const { bucket } = this.settings;
    const incoming = this.#key(`${INCOMING}${key.replaceAll('/', '_')}.${randomUUID()}`);
    const upload = new Upload({
      client: this.#client,
      params: { Bucket: bucket, Key: incoming, Body: counted, ContentType: contentType },
      partSize: PART_BYTES,
      queueSize: 2,
    });
    try {
      await upload.done();
      await this.#client.send(
        new CopyObjectCommand({ Bucket: bucket, Key: this.#key(key), CopySource: `${bucket}/${incoming.split('/').map(encodeURIComponent).join('/')}`, ContentType: contentType, MetadataDirective: 'REPLACE' }),
      );
    } finally {
      await this.#client.send(new DeleteObjectCommand({ Bucket: bucket, Key: incoming })).catch(() => {});
    }
    return bytes;
  }

  async stat(key: string): Promise<{ size: number } | null> {
    try {
      const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: this.#key(key) }));
      return { size: head.ContentLength ?? 0 };
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  open(key: string, range?: ByteRange): Promise<Readable> {
    return this.#reads.open(key, range);
  }

  async remove(key: string): Promise<void> {
    this.#reads.forget(key);
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: this.#key(key) }));
  }

  async *list(): AsyncIterable<StoredObject> {
    let token: string | undefined;
    do {
      const page = await this.#client.send(
        new ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: this.settings.prefix || undefined, ContinuationToken: token }),
      );
      for (const item of page.Contents ?? []) {
        if (!item.Key || item.Key.startsWith(this.#key(INCOMING))) continue;
        yield { key: item.Key.slice(this.settings.prefix.length), size: item.Size ?? 0, modifiedAt: item.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  presign(key: string, options: PresignOptions): Promise<string> {
    const command = new GetObjectCommand({
      Bucket: this.settings.bucket,
      Key: this.#key(key),
      ResponseContentType: options.contentType,
      ResponseContentDisposition: options.disposition,
    });
    return getSignedUrl(this.#client, command, { expiresIn: options.expiresInSeconds });
  }

  async sweepLeftovers(maxAgeMs: number): Promise<number> {
    const cutoff = Date.now() - maxAgeMs;
    let removed = 0;
    let token: string | undefined;
    do {
      const page = await this.#client.send(new ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: this.#key(INCOMING), ContinuationToken: token }));
      for (const item of page.Contents ?? []) {
        if (!item.Key || (item.LastModified?.getTime() ?? 0) >= cutoff) continue;
        await this.#client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: item.Key }));
        removed++;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return removed + (await this.#abortUnfinishedUploads(cutoff));
  }

  async #abortUnfinishedUploads(cutoff: number): Promise<number> {
    let listing;
    try {
      listing = await this.#client.send(new ListMultipartUploadsCommand({ Bucket: this.settings.bucket, Prefix: this.settings.prefix || undefined }));
    } catch (error) {
      // Some S3-compatible stores cannot list uploads; a bucket lifecycle rule is the fallback (README).
      if (error instanceof S3ServiceException && error.name === 'NotImplemented') return 0;
      throw error;
    }
    let aborted = 0;
    for (const upload of listing.Uploads ?? []) {
      if (!upload.Key || !upload.UploadId || (upload.Initiated?.getTime() ?? 0) >= cutoff) continue;
      await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.settings.bucket, Key: upload.Key, UploadId: upload.UploadId }));
      aborted++;
    }
    return aborted;
  }

  async close(): Promise<void> {
    this.#client.destroy();
    this.#reads.close();
  }
}

function isMissing(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'NotFound' || error.name === 'NoSuchKey' || error.$metadata.httpStatusCode === 404);
}
