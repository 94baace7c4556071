import { createHmac, timingSafeEqual } from 'node:crypto';

/** A signed URL lives 15 minutes, give or take the 5-minute step that keeps URLs stable for caches. */
const LIFETIME_SECONDS = 15 * 60;
const STEP_SECONDS = 5 * 60;

const CANONICAL_SIGNATURE = /^[A-Za-z0-9_-]{43}$/;

/** HMAC-SHA256 over asset id and expiry: a URL that opens one asset for a short while. */
export class UrlSigner {
  constructor(private readonly key: Buffer) {}

  #mac(assetId: string, expires: number): Buffer {
    return createHmac('sha256', this.key).update(`asset:${assetId}:${expires}`).digest();
  }

  /** The query string (`expires=…&signature=…`) for the asset. */
  sign(assetId: string, nowSeconds = Math.floor(Date.now() / 1000)): { expires: number; signature: string } {
    const expires = Math.ceil((nowSeconds + LIFETIME_SECONDS) / STEP_SECONDS) * STEP_SECONDS;
    return { expires, signature: this.#mac(assetId, expires).toString('base64url') };
  }

  url(assetId: string): string {
    const { expires, signature } = this.sign(assetId);
    return `/api/anime/assets/${assetId}?expires=${expires}&signature=${signature}`;
  }

  verify(assetId: string, expires: number, signature: string, nowSeconds = Math.floor(Date.now() / 1000)): boolean {
    if (!Number.isSafeInteger(expires) || expires < nowSeconds) return false;
    if (expires > nowSeconds + LIFETIME_SECONDS + STEP_SECONDS) return false;
    // Node's decoder takes padding, the standard alphabet and trailing junk: accept the one canonical spelling only.
    if (!CANONICAL_SIGNATURE.test(signature)) return false;
    const given = Buffer.from(signature, 'base64url');
    if (given.toString('base64url') !== signature) return false;
    const expected = this.#mac(assetId, expires);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
