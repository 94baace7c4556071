import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { LRUCache } from 'lru-cache';
import { ObjectMissingError, type ByteRange } from './object-store.js';

/** A presigned GET lives this long… */
const URL_SECONDS = 5 * 60;
/** …and is reused this long: well inside its life and the refresh margin of temporary credentials. */
const URL_REUSE_MS = 60_000;

/**
 * Reads of S3 objects as plain GETs of presigned URLs over keep-alive connections. A video is
 * read range by range; a URL signed (by the SDK) once per key and reused for a minute spares each
 * range the SDK's middleware stack (endpoint rules, signing, retries), which cost as much CPU as
 * the rest of the read. Only `host` is signed, so the Range header rides along unsigned.
 */
export class PresignedReads {
  readonly #urls = new LRUCache<string, string>({ max: 500, ttl: URL_REUSE_MS });
  readonly #agents = {
    'http:': new http.Agent({ keepAlive: true, maxSockets: 50 }),
    'https:': new https.Agent({ keepAlive: true, maxSockets: 50 }),
  };

  constructor(private readonly presign: (key: string, expiresInSeconds: number) => Promise<string>) {}

  /** rejects with ObjectMissingError when the key holds nothing */
  async open(key: string, range?: ByteRange): Promise<IncomingMessage> {
    const reused = this.#urls.get(key);
    let response = await this.#get(reused ?? (await this.#sign(key)), range);
    if (response.statusCode === 403 && reused) {
      // the credentials it was signed with may have been rotated since: once more, signed afresh
      response.resume();
      response = await this.#get(await this.#sign(key), range);
    }
    if (response.statusCode === (range ? 206 : 200)) return response;
    response.resume();
    if (response.statusCode === 404) throw new ObjectMissingError('no such object');
    // neither the URL nor the store's answer goes into the message: one holds a signature, the other host names
    throw new Error(`object store answered a GET with ${response.statusCode}`);
  }

  /** forgets the URL of a key that no longer holds what it did */
  forget(key: string): void {
    this.#urls.delete(key);
  }

  close(): void {
    this.#agents['http:'].destroy();
    this.#agents['https:'].destroy();
  }

  async #sign(key: string): Promise<string> {
    const url = await this.presign(key, URL_SECONDS);
    this.#urls.set(key, url);
    return url;
  }

  async #get(url: string, range: ByteRange | undefined, staleRetried = false): Promise<IncomingMessage> {
    const secure = url.startsWith('https:');
    const headers = range ? { range: `bytes=${range.start}-${range.end}` } : {};
    try {
      return await new Promise<IncomingMessage>((resolve, reject) => {
        const request = (secure ? https : http).get(url, { agent: this.#agents[secure ? 'https:' : 'http:'], headers }, resolve);
        request.once('error', (error: NodeJS.ErrnoException) => reject(Object.assign(error, { onReusedSocket: request.reusedSocket })));
      });
    } catch (error) {
      // a kept-alive connection the store closed as the request went out: once more on a new one
      const stale = (error as { onReusedSocket?: boolean }).onReusedSocket && (error as NodeJS.ErrnoException).code === 'ECONNRESET';
      if (stale && !staleRetried) return this.#get(url, range, true);
      throw error;
    }
  }
}
