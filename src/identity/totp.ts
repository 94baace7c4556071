/**
 * RFC 6238 TOTP (30 s step, 6 digits, HMAC-SHA-1: what authenticator apps expect), single use,
 * and recovery codes that are stored only as hashes.
 */
import { createHash, randomInt } from 'node:crypto';
import { generateSecret, verify } from 'otplib';
import QRCode from 'qrcode';

export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;
/** Steps accepted either side of the current one (RFC 6238 §5.2 network-delay allowance). */
export const TOTP_WINDOW_STEPS = 1;
export const RECOVERY_CODE_COUNT = 10;

const SECRET_BYTES = 20; // 160 bits, the RFC 4226 §4 recommendation for HMAC-SHA-1
const BASE32_SECRET = /^[A-Z2-7]{32,}$/;
const CODE = /^[0-9]{6}$/;
const BASE32_LOWER = 'abcdefghijklmnopqrstuvwxyz234567';
const RECOVERY_GROUP = 5; // two groups of 5 base32 characters: 50 bits
// A unix time in seconds stays below this until the year 5138; anything larger is milliseconds.
const MAX_UNIX_SECONDS = 1e11;

export type TotpResult = { ok: true; step: number } | { ok: false };

export interface CheckTotpOptions {
  /** Unix time in seconds (default: now). */
  now?: number;
  /** The step of the last code accepted for this secret; that step and earlier ones are refused. */
  lastUsedStep?: number | null;
}

/** A new base32 secret of 160 random bits. */
export function newTotpSecret(): string {
  return generateSecret({ length: SECRET_BYTES });
}

/**
 * The Key URI an authenticator app scans. All parameters are written out, even the defaults,
 * because some apps guess wrongly when they are missing.
 */
export function otpauthUri(opts: { secret: string; accountName: string; issuer?: string }): string {
  const issuer = opts.issuer ?? 'Celforge';
  checkLabelPart(issuer, 'issuer');
  checkLabelPart(opts.accountName, 'accountName');
  if (!BASE32_SECRET.test(opts.secret)) throw new TypeError('secret must be unpadded upper-case base32');
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(opts.accountName)}`;
  const query = [
    `secret=${opts.secret}`,
    `issuer=${encodeURIComponent(issuer)}`,
    'algorithm=SHA1',
    `digits=${TOTP_DIGITS}`,
    `period=${TOTP_PERIOD_SECONDS}`,
  ].join('&');
  return `otpauth://totp/${label}?${query}`;
}

// The Key URI format forbids ':' in either part (it separates them); control characters are never OK.
function checkLabelPart(value: string, name: string): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > 200 || /[:\p{Cc}]/u.test(value)) {
    throw new TypeError(`${name} must be 1-200 characters without ':' or control characters`);
  }
}

/** An SVG QR code of `uri`, for the TOTP setup answer. */
export async function qrSvg(uri: string): Promise<string> {
  if (typeof uri !== 'string' || uri.length === 0 || uri.length > 2048) {
    throw new TypeError('uri must be 1-2048 characters');
  }
  return QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
}

/**
 * Checks a 6-digit code against the current step ±1. A code is accepted once: the matched step
 * must be later than `lastUsedStep`, which the caller stores (atomically) on success.
 */
export async function checkTotp(secret: string, code: unknown, options: CheckTotpOptions = {}): Promise<TotpResult> {
  if (typeof code !== 'string' || !CODE.test(code)) return { ok: false };
  const now = options.now ?? Date.now() / 1000;
  if (!Number.isFinite(now) || now < 0 || now >= MAX_UNIX_SECONDS) {
    throw new RangeError('now must be a unix time in seconds');
  }
  const epoch = Math.floor(now);
  const last = options.lastUsedStep ?? undefined;
  if (last !== undefined && (!Number.isSafeInteger(last) || last < 0)) {
    throw new RangeError('lastUsedStep must be a non-negative integer');
  }
  const newestStep = Math.floor(epoch / TOTP_PERIOD_SECONDS) + TOTP_WINDOW_STEPS;
  // Every step in the window is spent (or the clock went back): nothing can match. otplib throws here.
  if (last !== undefined && last >= newestStep) return { ok: false };

  // otplib compares in constant time and skips steps <= afterTimeStep.
  const result = await verify({
    secret,
    token: code,
    epoch,
    period: TOTP_PERIOD_SECONDS,
    digits: TOTP_DIGITS,
    algorithm: 'sha1',
    epochTolerance: TOTP_WINDOW_STEPS * TOTP_PERIOD_SECONDS,
    ...(last !== undefined ? { afterTimeStep: last } : {}),
  });
  // otplib's result type also covers HOTP; a TOTP match always carries timeStep.
  return result.valid && 'timeStep' in result ? { ok: true, step: result.timeStep } : { ok: false };
}

/** Ten distinct codes like `k3q7x-m2pfa` (50 random bits each). Show once; store only hashes. */
export function newRecoveryCodes(): string[] {
  const codes = new Set<string>();
  while (codes.size < RECOVERY_CODE_COUNT) codes.add(`${randomGroup()}-${randomGroup()}`);
  return [...codes];
}

function randomGroup(): string {
  let group = '';
  for (let i = 0; i < RECOVERY_GROUP; i++) group += BASE32_LOWER[randomInt(32)];
  return group;
}

/**
 * Canonical form of a typed recovery code: ASCII letters lower-cased, ASCII spaces/tabs and
 * dashes dropped. Only ASCII is folded so no Unicode look-alike can become a valid character.
 */
export function normaliseRecoveryCode(code: string): string {
  return code.replace(/[- \t]/g, '').replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** True when `code` has the shape of a recovery code (after normalisation). */
export function isWellFormedRecoveryCode(code: string): boolean {
  return typeof code === 'string' && code.length <= 64 && /^[a-z2-7]{10}$/.test(normaliseRecoveryCode(code));
}

/** SHA-256 hex of the normalised code: what the database keeps instead of the code. */
export function hashRecoveryCode(code: string): string {
  if (typeof code !== 'string') throw new TypeError('recovery code must be a string');
  return createHash('sha256').update(normaliseRecoveryCode(code), 'utf8').digest('hex');
}
