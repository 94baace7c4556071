import { createHash, createHmac } from 'node:crypto';
import { beforeEach, describe, expect, it, vi } from 'vitest';

// Wrap otplib's verify in a spy so tests can prove malformed codes never reach the library.
vi.mock('otplib', async (importOriginal) => {
  const real = await importOriginal<typeof import('otplib')>();
  return { ...real, verify: vi.fn(real.verify) };
});

const otplib = await import('otplib');
const {
  checkTotp,
  hashRecoveryCode,
  isWellFormedRecoveryCode,
  newRecoveryCodes,
  newTotpSecret,
  otpauthUri,
  qrSvg,
} = await import('../../src/identity/totp.js');

// RFC 6238 Appendix B uses the ASCII seed "12345678901234567890" with SHA-1.
const RFC_SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
const RFC_SEED = Buffer.from('12345678901234567890', 'ascii');

/** Independent RFC 4226 HOTP (6 digits, SHA-1), so the tests do not trust otplib to test otplib. */
function hotp(seed: Buffer, counter: number): string {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', seed).update(msg).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 1_000_000).padStart(6, '0');
}

const T = 1_750_000_015; // 15 s into a step
const STEP = Math.floor(T / 30);
const codeAt = (step: number): string => hotp(RFC_SEED, step);

beforeEach(() => {
  vi.mocked(otplib.verify).mockClear();
});

describe('checkTotp', () => {
  it('matches the RFC 6238 Appendix B SHA-1 vectors (last six digits)', async () => {
    const vectors: Array<[number, string, number]> = [
      [59, '287082', 1],
      [1111111109, '081804', 37037036],
      [1111111111, '050471', 37037037],
      [1234567890, '005924', 41152263],
      [2000000000, '279037', 66666666],
      [20000000000, '353130', 666666666],
    ];
    for (const [now, code, step] of vectors) {
      expect(await checkTotp(RFC_SECRET, code, { now })).toEqual({ ok: true, step });
    }
  });

  it('accepts the current, previous and next step and reports the matched step', async () => {
    for (const delta of [-1, 0, 1]) {
      expect(await checkTotp(RFC_SECRET, codeAt(STEP + delta), { now: T })).toEqual({ ok: true, step: STEP + delta });
    }
    // Window edges: first and last second of the current step.
    expect(await checkTotp(RFC_SECRET, codeAt(STEP - 1), { now: STEP * 30 })).toEqual({ ok: true, step: STEP - 1 });
    expect(await checkTotp(RFC_SECRET, codeAt(STEP + 1), { now: STEP * 30 + 29 })).toEqual({ ok: true, step: STEP + 1 });
  });

  it('rejects codes two or more steps away', async () => {
    for (const delta of [-3, -2, 2, 3]) {
      const code = codeAt(STEP + delta);
      if ([-1, 0, 1].some((d) => codeAt(STEP + d) === code)) continue; // astronomically unlikely collision
      expect(await checkTotp(RFC_SECRET, code, { now: T })).toEqual({ ok: false });
    }
  });

  it('accepts a code once: the same code again is a replay', async () => {
    const code = codeAt(STEP);
    const first = await checkTotp(RFC_SECRET, code, { now: T });
    expect(first).toEqual({ ok: true, step: STEP });
    expect(await checkTotp(RFC_SECRET, code, { now: T, lastUsedStep: STEP })).toEqual({ ok: false });
    expect(await checkTotp(RFC_SECRET, code, { now: T + 20, lastUsedStep: STEP })).toEqual({ ok: false });
  });

  it('rejects an earlier step once a later one was used, but accepts a later one', async () => {
    expect(await checkTotp(RFC_SECRET, codeAt(STEP - 1), { now: T, lastUsedStep: STEP })).toEqual({ ok: false });
    expect(await checkTotp(RFC_SECRET, codeAt(STEP), { now: T, lastUsedStep: STEP + 1 })).toEqual({ ok: false });
    expect(await checkTotp(RFC_SECRET, codeAt(STEP + 1), { now: T, lastUsedStep: STEP })).toEqual({ ok: true, step: STEP + 1 });
    expect(await checkTotp(RFC_SECRET, codeAt(STEP), { now: T, lastUsedStep: STEP - 1 })).toEqual({ ok: true, step: STEP });
  });

  it('returns ok:false (no throw) when every step in the window is spent or lastUsedStep is ahead of the clock', async () => {
    expect(await checkTotp(RFC_SECRET, codeAt(STEP + 1), { now: T, lastUsedStep: STEP + 1 })).toEqual({ ok: false });
    expect(await checkTotp(RFC_SECRET, codeAt(STEP), { now: T, lastUsedStep: STEP + 1000 })).toEqual({ ok: false });
    expect(await checkTotp(RFC_SECRET, codeAt(STEP), { now: T, lastUsedStep: null })).toEqual({ ok: true, step: STEP });
  });

  it('rejects anything but exactly six ASCII digits without calling the library', async () => {
    const good = codeAt(STEP);
    const fullwidth = [...good].map((d) => String.fromCharCode(0xff10 + Number(d))).join('');
    const arabicIndic = [...good].map((d) => String.fromCharCode(0x0660 + Number(d))).join('');
    const bad: unknown[] = [
      '',
      good.slice(0, 5),
      `${good}0`,
      `0${good}`,
      ` ${good}`,
      `${good} `,
      `${good}\n`,
      `${good.slice(0, 3)} ${good.slice(3)}`,
      `${good.slice(0, 3)}-${good.slice(3)}`,
      '12345a',
      '+12345',
      '-12345',
      '1e5000',
      '0x1234',
      fullwidth,
      arabicIndic,
      `${good.slice(0, 5)}\u0661`,
      `${good}\u0000`,
      '9'.repeat(10_000),
      Number(good),
      null,
      undefined,
      [good],
      { toString: () => good },
    ];
    for (const code of bad) {
      expect(await checkTotp(RFC_SECRET, code, { now: T }), JSON.stringify(code)).toEqual({ ok: false });
    }
    expect(otplib.verify).not.toHaveBeenCalled();
    await checkTotp(RFC_SECRET, good, { now: T });
    expect(otplib.verify).toHaveBeenCalledTimes(1);
  });

  it('refuses a caller mistake instead of guessing: milliseconds for now, a bad lastUsedStep', async () => {
    await expect(checkTotp(RFC_SECRET, codeAt(STEP), { now: T * 1000 })).rejects.toThrow(RangeError);
    await expect(checkTotp(RFC_SECRET, codeAt(STEP), { now: Number.NaN })).rejects.toThrow(RangeError);
    await expect(checkTotp(RFC_SECRET, codeAt(STEP), { now: T, lastUsedStep: -1 })).rejects.toThrow(RangeError);
    await expect(checkTotp(RFC_SECRET, codeAt(STEP), { now: T, lastUsedStep: 1.5 })).rejects.toThrow(RangeError);
  });

  it('defaults now to the real clock', async () => {
    const step = Math.floor(Date.now() / 1000 / 30);
    const result = await checkTotp(RFC_SECRET, codeAt(step));
    expect(result.ok).toBe(true);
  });
});

describe('newTotpSecret', () => {
  it('is unpadded upper-case base32 of at least 160 bits, and distinct each time', async () => {
    const secrets = new Set(Array.from({ length: 20 }, () => newTotpSecret()));
    expect(secrets.size).toBe(20);
    for (const secret of secrets) {
      expect(secret).toMatch(/^[A-Z2-7]+$/);
      expect(secret.length * 5).toBeGreaterThanOrEqual(160);
    }
    const secret = [...secrets][0]!;
    const code = await otplib.generate({ secret, epoch: T });
    expect(await checkTotp(secret, code, { now: T })).toEqual({ ok: true, step: STEP });
  });
});

describe('otpauthUri', () => {
  const secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

  it('writes the Key URI with issuer, label, secret, algorithm, digits and period', () => {
    const uri = otpauthUri({ secret, accountName: 'alice@example.com', issuer: 'Celforge' });
    expect(uri).toBe(
      'otpauth://totp/Celforge:alice%40example.com' +
        '?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Celforge&algorithm=SHA1&digits=6&period=30',
    );
    const parsed = new URL(uri);
    expect(parsed.protocol).toBe('otpauth:');
    expect(parsed.host).toBe('totp');
    expect(decodeURIComponent(parsed.pathname)).toBe('/Celforge:alice@example.com');
    expect(Object.fromEntries(parsed.searchParams)).toEqual({
      secret,
      issuer: 'Celforge',
      algorithm: 'SHA1',
      digits: '6',
      period: '30',
    });
    expect(otpauthUri({ secret, accountName: 'alice@example.com' })).toBe(uri);
  });

  it('percent-encodes the label parts and refuses unusable ones', () => {
    expect(otpauthUri({ secret, accountName: 'a b&c=d?e/f#g', issuer: 'Celforge' })).toContain(
      '/Celforge:a%20b%26c%3Dd%3Fe%2Ff%23g?',
    );
    for (const accountName of ['', 'a:b', 'a\nb', 'a\u0000b', 'x'.repeat(201)]) {
      expect(() => otpauthUri({ secret, accountName, issuer: 'Celforge' })).toThrow(TypeError);
    }
    expect(() => otpauthUri({ secret, accountName: 'a', issuer: 'Cel:forge' })).toThrow(TypeError);
    for (const bad of [secret.toLowerCase(), `${secret}====`, 'SHORT234', `${secret}&issuer=Evil`]) {
      expect(() => otpauthUri({ secret: bad, accountName: 'a', issuer: 'Celforge' })).toThrow(TypeError);
    }
  });
});

describe('qrSvg', () => {
  it('renders an SVG document', async () => {
    const uri = otpauthUri({ secret: newTotpSecret(), accountName: 'alice@example.com' });
    const svg = await qrSvg(uri);
    expect(svg.trimStart().startsWith('<svg')).toBe(true);
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).not.toMatch(/<script/i);
    expect(await qrSvg(`${uri}x`)).not.toBe(svg);
  });

  it('refuses empty or oversized input', async () => {
    await expect(qrSvg('')).rejects.toThrow(TypeError);
    await expect(qrSvg('x'.repeat(3000))).rejects.toThrow(TypeError);
  });
});

describe('recovery codes', () => {
  it('are ten distinct codes of 50 bits in xxxxx-xxxxx lower-case base32', () => {
    const codes = newRecoveryCodes();
    expect(codes).toHaveLength(10);
    expect(new Set(codes).size).toBe(10);
    for (const code of codes) {
      expect(code).toMatch(/^[a-z2-7]{5}-[a-z2-7]{5}$/);
      expect(isWellFormedRecoveryCode(code)).toBe(true);
    }
  });

  it('use the whole alphabet and do not repeat across sets', () => {
    const all = Array.from({ length: 100 }, () => newRecoveryCodes()).flat();
    expect(new Set(all).size).toBe(1000);
    const chars = new Set(all.join('').replace(/-/g, ''));
    expect([...chars].sort().join('')).toBe('234567abcdefghijklmnopqrstuvwxyz');
  });

  it('hash as SHA-256 hex of the normalised code', () => {
    const expected = createHash('sha256').update('abcdefgh23').digest('hex');
    for (const typed of ['abcde-fgh23', 'ABCDE-FGH23', 'AbCdE fGh23', ' abcde - fgh23 ', 'abcdefgh23', 'abc-de\tfgh-23']) {
      expect(hashRecoveryCode(typed)).toBe(expected);
    }
    expect(hashRecoveryCode('abcde-fgh24')).not.toBe(expected);
    expect(expected).toMatch(/^[0-9a-f]{64}$/);
  });

  it('do not fold Unicode look-alikes into valid characters', () => {
    // U+212A KELVIN SIGN lower-cases to "k" with toLowerCase(); it must not match a "k" code.
    expect(hashRecoveryCode('\u212Aabcd-efgh2')).not.toBe(hashRecoveryCode('kabcd-efgh2'));
    expect(isWellFormedRecoveryCode('\u212Aabcd-efgh2')).toBe(false);
    expect(hashRecoveryCode('abcde\u00a0fgh23')).not.toBe(hashRecoveryCode('abcdefgh23'));
    for (const bad of ['', 'abcde-fgh2', 'abcde-fgh231', 'abcde-fgh01', 'x'.repeat(100)]) {
      expect(isWellFormedRecoveryCode(bad)).toBe(false);
    }
  });
});
