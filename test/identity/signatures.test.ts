import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  contentDigest,
  MemoryReplayGuard,
  signatureBase,
  signRequest,
  verifyRequestSignature,
  type IncomingSignedRequest,
  type ReplayGuard,
  type SignatureHeaders,
  type VerifyOptions,
} from '../../src/access/http-signatures.js';

const NOW = 1_700_000_000;
const SECRET = Buffer.alloc(32, 0x5a);
const OTHER_SECRET = Buffer.alloc(32, 0xa5);
const URL_ = 'https://api.celforge.example/api/anime/jobs/42/publish?dry=0';
const BODY = '{"visibility":"public"}';
const REASONS = ['missing', 'malformed', 'unknown-key', 'bad-digest', 'bad-signature', 'expired', 'future', 'replayed', 'components'];

type SignedReq = IncomingSignedRequest & { headers: SignatureHeaders & Record<string, string> };

function options(extra: Partial<VerifyOptions> = {}): VerifyOptions {
  return {
    lookupSecret: (id) => (id === 'k1' ? SECRET : id === 'k2' ? OTHER_SECRET : undefined),
    now: NOW,
    replay: new MemoryReplayGuard({ clock: () => NOW * 1000 }),
    ...extra,
  };
}

function signed(over: { method?: string; url?: string; body?: string; created?: number; nonce?: string; keyId?: string } = {}): SignedReq {
  const method = over.method ?? 'POST';
  const url = over.url ?? URL_;
  const body = over.body ?? BODY;
  const fields = signRequest({
    method,
    url,
    body,
    keyId: over.keyId ?? 'k1',
    secret: SECRET,
    created: over.created ?? NOW,
    ...(over.nonce !== undefined ? { nonce: over.nonce } : {}),
  });
  return { method, url, body: Buffer.from(body), headers: { 'content-type': 'application/json', ...fields } };
}

async function reasonOf(req: IncomingSignedRequest, opts: VerifyOptions = options()): Promise<string> {
  const result = await verifyRequestSignature(req, opts);
  return result.ok ? 'ok' : result.reason;
}

function withHeader(req: SignedReq, name: string, value: string | string[] | undefined): IncomingSignedRequest {
  return { ...req, headers: { ...req.headers, [name]: value } };
}

describe('contentDigest (RFC 9530)', () => {
  it('matches the RFC 9530 §2 example and the SHA-256 of the empty body', () => {
    expect(contentDigest('{"hello": "world"}')).toBe('sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:');
    expect(contentDigest(Buffer.from('{"hello": "world"}'))).toBe('sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:');
    expect(contentDigest('')).toBe('sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:');
  });
});

describe('signature base (RFC 9421 §2.5)', () => {
  // Hand-derived from the RFC rules: one `"<component>": <value>` line per covered component in
  // Signature-Input order, then `"@signature-params": <inner list>;<params>`, LF between lines,
  // no LF at the end. Digest is the RFC 9530 example body's.
  const fixed = {
    method: 'POST',
    url: 'https://api.celforge.example/api/anime/jobs/42/publish?dry=0',
    body: '{"hello": "world"}',
    keyId: 'ci-key-1',
    created: 1700000000,
    nonce: 'bm9uY2UtMQ',
  };
  const expectedParams =
    '("@method" "@target-uri" "content-digest");created=1700000000;keyid="ci-key-1";alg="hmac-sha256";nonce="bm9uY2UtMQ"';
  const expectedBase =
    '"@method": POST\n' +
    '"@target-uri": https://api.celforge.example/api/anime/jobs/42/publish?dry=0\n' +
    '"content-digest": sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\n' +
    '"@signature-params": ("@method" "@target-uri" "content-digest");created=1700000000;keyid="ci-key-1";alg="hmac-sha256";nonce="bm9uY2UtMQ"';

  it('equals the hand-derived base for a fixed input', () => {
    expect(signatureBase(fixed)).toBe(expectedBase);
  });

  it('signRequest emits the matching fields and the HMAC of that exact base', () => {
    const fields = signRequest({ ...fixed, secret: SECRET });
    const mac = createHmac('sha256', SECRET).update(expectedBase).digest('base64');
    expect(fields).toEqual({
      'content-digest': 'sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:',
      'signature-input': `sig1=${expectedParams}`,
      signature: `sig1=:${mac}:`,
    });
  });

  it('uses the same line conventions as the RFC 9421 Appendix B.2.5 HMAC example', () => {
    // The published example: its base built by the same rules gives the published signature.
    const rfcKey = Buffer.from(
      'uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==',
      'base64',
    );
    const rfcBase =
      '"date": Tue, 20 Apr 2021 02:07:55 GMT\n' +
      '"@authority": example.com\n' +
      '"content-type": application/json\n' +
      '"@signature-params": ("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"';
    expect(createHmac('sha256', rfcKey).update(rfcBase).digest('base64')).toBe('pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=');
  });

  it('rejects the RFC B.2.5 request itself: it does not cover our required components', async () => {
    const rfcReq: IncomingSignedRequest = {
      method: 'POST',
      url: 'https://example.com/foo?param=Value&Pet=dog',
      body: Buffer.from('{"hello": "world"}'),
      headers: {
        date: 'Tue, 20 Apr 2021 02:07:55 GMT',
        'content-type': 'application/json',
        'content-digest': contentDigest('{"hello": "world"}'),
        'signature-input': 'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"',
        signature: 'sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:',
      },
    };
    expect(await reasonOf(rfcReq, options({ now: 1618884473 }))).toBe('components');
  });

  it('verifies a signature made by another client with its own component and parameter order', async () => {
    const digest = contentDigest(BODY);
    const params = '("content-digest" "@method" "@target-uri");nonce="other-client-1";keyid="k1";created=1700000000;alg="hmac-sha256"';
    const base = `"content-digest": ${digest}\n"@method": POST\n"@target-uri": ${URL_}\n"@signature-params": ${params}`;
    const mac = createHmac('sha256', SECRET).update(base).digest('base64');
    const req: IncomingSignedRequest = {
      method: 'POST',
      url: URL_,
      body: Buffer.from(BODY),
      // Extra optional whitespace where RFC 8941 allows it; the base uses the canonical form.
      headers: { 'content-digest': ` ${digest} `, 'signature-input': `other=${params.replace('" "@method"', '"  "@method"')}`, signature: `other=:${mac}:` },
    };
    expect(await verifyRequestSignature(req, options())).toEqual({ ok: true, keyId: 'k1' });
  });
});

describe('verifyRequestSignature', () => {
  it('accepts a signed request and names the key', async () => {
    expect(await verifyRequestSignature(signed(), options())).toEqual({ ok: true, keyId: 'k1' });
  });

  it('accepts an async secret lookup and an empty body (which has a digest too)', async () => {
    const req = signed({ body: '' });
    expect(req.headers['content-digest']).toBe('sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:');
    const opts = options({ lookupSecret: async (id) => (id === 'k1' ? SECRET : undefined) });
    expect(await reasonOf(req, opts)).toBe('ok');
    expect(await reasonOf({ ...signed({ body: '' }), body: undefined })).toBe('ok');
    expect(await reasonOf({ ...signed({ body: '' }), body: Buffer.from(' ') })).toBe('bad-digest');
  });

  it('signs and verifies a key id and nonce that need string escaping', async () => {
    const keyId = 'we"ird\\id';
    const req = signed({ keyId, nonce: 'n "1" \\' });
    expect(req.headers['signature-input']).toContain('keyid="we\\"ird\\\\id"');
    const opts = options({ lookupSecret: (id) => (id === keyId ? SECRET : undefined) });
    expect(await verifyRequestSignature(req, opts)).toEqual({ ok: true, keyId });
  });

  it('fails when the method changes', async () => {
    expect(await reasonOf({ ...signed(), method: 'PUT' })).toBe('bad-signature');
    expect(await reasonOf({ ...signed(), method: 'post' })).toBe('bad-signature');
    expect(await reasonOf({ ...signed({ method: 'DELETE' }), method: 'GET' })).toBe('bad-signature');
  });

  it('fails when any part of the target URI changes', async () => {
    const variants = [
      'https://api.celforge.example/api/anime/jobs/43/publish?dry=0', // path
      'https://api.celforge.example/api/anime/jobs/42/publish/?dry=0',
      'https://api.celforge.example/api/anime/jobs/42/publish?dry=1', // query
      'https://api.celforge.example/api/anime/jobs/42/publish',
      'https://api.celforge.example/api/anime/jobs/42/publish?dry=0&x=1',
      'https://evil.example/api/anime/jobs/42/publish?dry=0', // host
      'https://API.celforge.example/api/anime/jobs/42/publish?dry=0',
      'https://api.celforge.example:8443/api/anime/jobs/42/publish?dry=0', // port
      'http://api.celforge.example/api/anime/jobs/42/publish?dry=0', // scheme
    ];
    for (const url of variants) expect(await reasonOf({ ...signed(), url }), url).toBe('bad-signature');
  });

  it('fails with bad-digest when the body changes, and bad-signature when the digest is recomputed to match', async () => {
    const req = signed();
    expect(await reasonOf({ ...req, body: Buffer.from('{"visibility":"members"}') })).toBe('bad-digest');
    expect(await reasonOf({ ...req, body: Buffer.from(`${BODY} `) })).toBe('bad-digest');
    const newBody = '{"visibility":"members"}';
    const forged = withHeader(req, 'content-digest', contentDigest(newBody));
    expect(await reasonOf({ ...forged, body: Buffer.from(newBody) })).toBe('bad-signature');
  });

  it('fails with bad-digest when the content-digest header is altered or uses another algorithm', async () => {
    const req = signed();
    const digest = req.headers['content-digest'];
    const bytes = Buffer.from(digest.slice(9, -1), 'base64');
    bytes[0]! ^= 1;
    for (const value of [
      `sha-256=:${bytes.toString('base64')}:`,
      `sha-512=:${Buffer.alloc(64).toString('base64')}:`,
      `${digest}, sha-512=:${Buffer.alloc(64).toString('base64')}:`,
      digest.replace('sha-256', 'SHA-256'),
      digest.slice(0, -1),
    ]) {
      expect(await reasonOf(withHeader(req, 'content-digest', value)), value).toBe('bad-digest');
    }
  });

  it('fails when created, keyid or nonce in Signature-Input is altered', async () => {
    const req = signed();
    const input = req.headers['signature-input'];
    expect(await reasonOf(withHeader(req, 'signature-input', input.replace(`created=${NOW}`, `created=${NOW - 1}`)))).toBe('bad-signature');
    expect(await reasonOf(withHeader(req, 'signature-input', input.replace('keyid="k1"', 'keyid="k2"')))).toBe('bad-signature');
    expect(await reasonOf(withHeader(req, 'signature-input', input.replace('keyid="k1"', 'keyid="nope"')))).toBe('unknown-key');
    expect(await reasonOf(withHeader(req, 'signature-input', input.replace(/nonce="[^"]*"/, 'nonce="fresh"')))).toBe('bad-signature');
  });

  it('rejects a keyid whose secret is the same but which is a different key id', async () => {
    // Proves keyid is inside the signed base, not just used to pick the secret.
    const opts = options({ lookupSecret: () => SECRET });
    const req = signed();
    const swapped = withHeader(req, 'signature-input', req.headers['signature-input'].replace('keyid="k1"', 'keyid="k9"'));
    expect(await reasonOf(swapped, opts)).toBe('bad-signature');
  });

  it('fails when the signature is altered, truncated or made with another secret', async () => {
    const req = signed();
    const sig = Buffer.from(req.headers.signature.slice(6, -1), 'base64');
    for (let i = 0; i < sig.length; i += 7) {
      const bad = Buffer.from(sig);
      bad[i]! ^= 0x40;
      expect(await reasonOf(withHeader(req, 'signature', `sig1=:${bad.toString('base64')}:`))).toBe('bad-signature');
    }
    expect(await reasonOf(withHeader(req, 'signature', `sig1=:${sig.subarray(0, 31).toString('base64')}:`))).toBe('bad-signature');
    expect(await reasonOf(withHeader(req, 'signature', `sig1=:${Buffer.concat([sig, sig]).toString('base64')}:`))).toBe('bad-signature');
    expect(await reasonOf(withHeader(req, 'signature', 'sig1=::'))).toBe('bad-signature');
    const other = signRequest({ method: 'POST', url: URL_, body: BODY, keyId: 'k1', secret: OTHER_SECRET, created: NOW });
    expect(await reasonOf({ ...req, headers: { ...req.headers, ...other } })).toBe('bad-signature');
  });

  it('rejects a replay of the identical request, and a reused nonce, but not after a failed attempt', async () => {
    const opts = options();
    const req = signed({ nonce: 'nonce-1' });
    expect(await reasonOf(withHeader(req, 'signature', 'sig1=:AAAA:'), opts)).toBe('bad-signature');
    expect(await reasonOf(req, opts)).toBe('ok'); // a failed attempt did not burn the nonce
    expect(await reasonOf(req, opts)).toBe('replayed');
    expect(await reasonOf(req, opts)).toBe('replayed');
    expect(await reasonOf(signed({ nonce: 'nonce-1', created: NOW - 1 }), opts)).toBe('replayed');
    expect(await reasonOf(signed({ nonce: 'nonce-2' }), opts)).toBe('ok');
    expect(await reasonOf(signed(), opts)).toBe('ok'); // default random nonce
    expect(await reasonOf(signed(), opts)).toBe('ok');
  });

  it('scopes nonces per key', async () => {
    const opts = options({ lookupSecret: () => SECRET });
    expect(await reasonOf(signed({ keyId: 'a', nonce: 'same' }), opts)).toBe('ok');
    expect(await reasonOf(signed({ keyId: 'b', nonce: 'same' }), opts)).toBe('ok');
    expect(await reasonOf(signed({ keyId: 'a', nonce: 'same' }), opts)).toBe('replayed');
  });

  it('remembers a nonce at least as long as its signature is acceptable', async () => {
    const ttls: number[] = [];
    const guard: ReplayGuard = { firstUse: async (_key, ttl) => (ttls.push(ttl), true) };
    expect(await reasonOf(signed(), options({ replay: guard }))).toBe('ok');
    expect(ttls[0]).toBeGreaterThanOrEqual(300 + 5);
    // created at the far edge of skew stays acceptable for maxAge + skew seconds from now.
    const edge = signed({ created: NOW + 5 });
    expect(await reasonOf(edge, options({ replay: guard, now: NOW + 5 + 300 }))).toBe('ok');
  });

  it('enforces maxAge: 300 s old passes, 301 s fails expired; more than 5 s ahead fails future', async () => {
    expect(await reasonOf(signed({ created: NOW - 300 }))).toBe('ok');
    expect(await reasonOf(signed({ created: NOW - 301 }))).toBe('expired');
    expect(await reasonOf(signed({ created: 0 }))).toBe('expired');
    expect(await reasonOf(signed({ created: NOW + 5 }))).toBe('ok');
    expect(await reasonOf(signed({ created: NOW + 6 }))).toBe('future');
    expect(await reasonOf(signed({ created: NOW - 61 }), options({ maxAgeSeconds: 60 }))).toBe('expired');
    // A captured request replayed later is refused as expired once the replay window closes.
    const opts = options();
    const req = signed();
    expect(await reasonOf(req, opts)).toBe('ok');
    expect(await reasonOf(req, { ...opts, now: NOW + 301 })).toBe('expired');
  });

  it('rejects any alg but hmac-sha256, and a missing alg', async () => {
    const req = signed();
    const input = req.headers['signature-input'];
    for (const alg of ['none', 'rsa-v1_5-sha256', 'rsa-pss-sha512', 'ed25519', 'HMAC-SHA256', 'hmac-sha512', '']) {
      expect(await reasonOf(withHeader(req, 'signature-input', input.replace('alg="hmac-sha256"', `alg="${alg}"`))), alg).toBe('malformed');
    }
    expect(await reasonOf(withHeader(req, 'signature-input', input.replace('alg="hmac-sha256"', 'alg=none')))).toBe('malformed');
    expect(await reasonOf(withHeader(req, 'signature-input', input.replace(';alg="hmac-sha256"', '')))).toBe('components');
  });

  it('fails with missing when a signature header is absent or empty', async () => {
    const req = signed();
    for (const name of ['signature-input', 'signature', 'content-digest']) {
      const { [name]: _dropped, ...rest } = req.headers;
      expect(await reasonOf({ ...req, headers: rest }), name).toBe('missing');
      expect(await reasonOf(withHeader(req, name, undefined)), name).toBe('missing');
      expect(await reasonOf(withHeader(req, name, '')), name).toBe('missing');
      expect(await reasonOf(withHeader(req, name, '  \t ')), name).toBe('missing');
    }
    expect(await reasonOf({ ...req, headers: {} })).toBe('missing');
  });

  it('requires exactly the three components and the four parameters', async () => {
    const req = signed();
    const input = req.headers['signature-input'];
    const cases: Array<[string, string]> = [
      [input.replace(' "content-digest"', ''), 'components'],
      [input.replace('"@method" ', ''), 'components'],
      [input.replace('"content-digest")', '"content-digest" "date")'), 'components'],
      [input.replace('"@target-uri"', '"@path"'), 'components'],
      [input.replace('"@method"', '"@method";req'), 'components'],
      [input.replace(/;nonce="[^"]*"/, ''), 'components'],
      [input.replace(`;created=${NOW}`, ''), 'components'],
      [input.replace(';keyid="k1"', ''), 'components'],
      [input.replace('"content-digest")', '"content-digest" "@method")'), 'malformed'], // listed twice
      [`${input};expires=${NOW + 60}`, 'malformed'],
      [`${input};tag="x"`, 'malformed'],
      [`${input};nonce="again"`, 'malformed'], // duplicate parameter
      [input.replace(`created=${NOW}`, `created="${NOW}"`), 'malformed'],
      [input.replace(`created=${NOW}`, `created=${NOW}.5`), 'malformed'],
      [input.replace(`created=${NOW}`, 'created=-1'), 'malformed'],
      [input.replace('keyid="k1"', 'keyid=k1'), 'malformed'],
      [input.replace('keyid="k1"', 'keyid=""'), 'malformed'],
      [input.replace('"@method"', '@method'), 'malformed'],
    ];
    for (const [value, reason] of cases) expect(await reasonOf(withHeader(req, 'signature-input', value)), value).toBe(reason);
  });

  it('rejects duplicate, extra and non-matching labels', async () => {
    const req = signed();
    const input = req.headers['signature-input'];
    const sig = req.headers.signature;
    const cases: IncomingSignedRequest[] = [
      withHeader(req, 'signature-input', `${input}, ${input}`),
      withHeader(req, 'signature-input', [input, input]),
      withHeader(req, 'signature', `${sig}, ${sig}`),
      withHeader(req, 'signature', [sig, sig]),
      withHeader(req, 'signature-input', `${input}, ${input.replace('sig1=', 'sig2=')}`),
      withHeader(req, 'signature', `${sig}, ${sig.replace('sig1=', 'sig2=')}`),
      withHeader(req, 'signature', sig.replace('sig1=', 'sig2=')),
      withHeader(req, 'signature-input', input.replace('sig1=', 'sig2=')),
      withHeader(req, 'signature', sig.replace('sig1=', 'SIG1=')),
      withHeader(req, 'signature', sig.replace(/:$/, ':;x=1')),
      withHeader(req, 'signature', `sig1=${input.slice(5)}`),
      withHeader(req, 'signature-input', `sig1=${sig.slice(5)}`),
    ];
    for (const bad of cases) expect(await reasonOf(bad), JSON.stringify(bad.headers)).toBe('malformed');
  });

  it('returns malformed, without throwing, for garbage Signature-Input and Signature fields', async () => {
    const req = signed();
    const input = req.headers['signature-input'];
    const garbage = [
      `sig1=(${'"@method" '.repeat(5000)})`, // huge
      'x'.repeat(100_000),
      `sig1=("@m\u00e9thod" "@target-uri" "content-digest");created=${NOW};keyid="k1";alg="hmac-sha256";nonce="n"`,
      input.replace('keyid="k1"', 'keyid="k\u00e91"'),
      input.replace('keyid="k1"', 'keyid="k\u{1F511}"'),
      input.replace('keyid="k1"', 'keyid="k\u00001"'),
      input.replace('keyid="k1"', 'keyid="k\\n1"'),
      input.replace('keyid="k1"', 'keyid="k1'),
      input.replace('(', ''),
      input.replace(')', ''),
      input.replace('(', '(('),
      input.replace(')', '))'),
      `${input})`,
      '('.repeat(10_000),
      ')',
      'sig1=(',
      'sig1=',
      '=',
      ',',
      'sig1=("@method",)',
      `${input},`,
      `,${input}`,
      `${input};`,
      input.replace('sig1', 'Sig1'),
      input.replace('sig1', '1sig'),
      Array.from({ length: 1000 }, (_, i) => `s${i}=("@method")`).join(', '), // many labels
      Array.from({ length: 50 }, (_, i) => input.replace('sig1', `s${i}`)).join(', '),
      input.replace(/;/g, ',').replace(',', ';'),
      input.replace(`created=${NOW}`, 'created=9999999999999999'),
      input.replace('"@method" "@target-uri"', '"@method""@target-uri"'),
      `\u0000${input}`,
    ];
    for (const value of garbage) {
      const result = await verifyRequestSignature(withHeader(req, 'signature-input', value), options());
      expect(result, value.slice(0, 80)).toEqual({ ok: false, reason: 'malformed' });
    }
    const sigGarbage = ['sig1=:not base64!!:', 'sig1=:AAAA', 'sig1=AAAA', 'sig1=:AAB=:', 'sig1=:AAA:', 'sig1=:AA==A:', 'sig1="abc"', 'sig1=1', 'sig1', 'sig1=:\u00e9:', `sig1=:${'A'.repeat(10_000)}:`];
    for (const value of sigGarbage) {
      expect(await reasonOf(withHeader(req, 'signature', value)), value.slice(0, 80)).toBe('malformed');
    }
  });

  it('never throws and never accepts when a field is mutated one character at a time', async () => {
    const req = signed();
    const alphabet = ' !"(),:;=*-_.\\/+0123456789abcdefghijklmnopqrstuvwxyzABCXYZ\t\u00e9\u0000';
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (const name of ['signature-input', 'signature']) {
      const original = req.headers[name]!;
      for (let i = 0; i < 300; i++) {
        const at = rand(original.length);
        const c = alphabet[rand(alphabet.length)]!;
        if (original[at] === c) continue;
        const mutated = original.slice(0, at) + c + original.slice(at + 1);
        const result = await verifyRequestSignature(withHeader(req, name, mutated), options());
        expect(result.ok, mutated).toBe(false);
        if (!result.ok) expect(REASONS).toContain(result.reason);
      }
    }
  });

  it('refuses a target URI or method the server could not have received cleanly', async () => {
    const req = signed();
    expect(await reasonOf({ ...req, url: `${URL_}\n"@method": GET` })).toBe('malformed');
    expect(await reasonOf({ ...req, url: '/api/anime/jobs/42/publish' })).toBe('malformed');
    expect(await reasonOf({ ...req, url: 'https://api.celforge.example/caf\u00e9' })).toBe('malformed');
    expect(await reasonOf({ ...req, method: 'POST\n' })).toBe('malformed');
    expect(await reasonOf({ ...req, method: '' })).toBe('malformed');
  });

  it('treats a missing or too-short secret as an unknown key', async () => {
    expect(await reasonOf(signed({ keyId: 'nobody' }))).toBe('unknown-key');
    expect(await reasonOf(signed(), options({ lookupSecret: () => Buffer.alloc(8, 1) }))).toBe('unknown-key');
    expect(await reasonOf(signed(), options({ lookupSecret: async () => undefined }))).toBe('unknown-key');
  });
});

describe('signRequest input checks', () => {
  const base = { method: 'POST', url: URL_, keyId: 'k1', secret: SECRET };
  it('refuses what would produce an unverifiable or injectable signature', () => {
    expect(() => signRequest({ ...base, url: `${URL_}\r\nx` })).toThrow(TypeError);
    expect(() => signRequest({ ...base, url: '/relative' })).toThrow(TypeError);
    expect(() => signRequest({ ...base, url: 'ftp://x.example/' })).toThrow(TypeError);
    expect(() => signRequest({ ...base, method: 'PO ST' })).toThrow(TypeError);
    expect(() => signRequest({ ...base, keyId: '' })).toThrow(TypeError);
    expect(() => signRequest({ ...base, keyId: 'k\u00e9' })).toThrow(TypeError);
    expect(() => signRequest({ ...base, nonce: 'a\nb' })).toThrow(TypeError);
    expect(() => signRequest({ ...base, secret: 'short' })).toThrow(TypeError);
    expect(() => signRequest({ ...base, created: 1.5 })).toThrow(TypeError);
  });

  it('defaults created to now and nonce to a fresh random value', () => {
    const before = Math.floor(Date.now() / 1000);
    const a = signRequest(base)['signature-input'];
    const b = signRequest(base)['signature-input'];
    const created = Number(/;created=(\d+)/.exec(a)?.[1]);
    expect(created).toBeGreaterThanOrEqual(before);
    expect(created).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    const nonceA = /;nonce="([^"]+)"/.exec(a)?.[1];
    expect(nonceA).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(nonceA).not.toBe(/;nonce="([^"]+)"/.exec(b)?.[1]);
  });
});

describe('MemoryReplayGuard', () => {
  it('reports first use once per key until the ttl passes', async () => {
    let now = 1_000_000;
    const guard = new MemoryReplayGuard({ clock: () => now });
    expect(await guard.firstUse('a', 10)).toBe(true);
    expect(await guard.firstUse('a', 10)).toBe(false);
    expect(await guard.firstUse('b', 10)).toBe(true);
    now += 9_999;
    expect(await guard.firstUse('a', 10)).toBe(false);
    now += 1;
    expect(await guard.firstUse('a', 10)).toBe(true);
  });

  it('prunes expired entries lazily so memory stays bounded', async () => {
    let now = 0;
    const guard = new MemoryReplayGuard({ clock: () => now });
    for (let i = 0; i < 1000; i++) await guard.firstUse(`k${i}`, 1);
    expect(guard.size).toBe(1000);
    now += 1000;
    await guard.firstUse('fresh', 1);
    expect(guard.size).toBe(1);
  });

  it('fails closed at the cap rather than forgetting a live entry, and recovers once entries expire', async () => {
    let now = 0;
    const guard = new MemoryReplayGuard({ maxEntries: 3, clock: () => now });
    for (const k of ['a', 'b', 'c']) expect(await guard.firstUse(k, 60)).toBe(true);
    expect(await guard.firstUse('d', 60)).toBe(false);
    expect(guard.size).toBe(3);
    expect(await guard.firstUse('a', 60)).toBe(false); // still remembered
    now += 60_000;
    expect(await guard.firstUse('d', 60)).toBe(true);
    expect(guard.size).toBe(1);
  });

  it('uses a full prune at the cap when ttls differ (insertion order is not expiry order)', async () => {
    let now = 0;
    const guard = new MemoryReplayGuard({ maxEntries: 2, clock: () => now });
    await guard.firstUse('long', 100);
    await guard.firstUse('short', 1);
    now += 2_000;
    expect(await guard.firstUse('new', 100)).toBe(true);
    expect(await guard.firstUse('long', 100)).toBe(false);
  });

  it('refuses bad arguments', async () => {
    const guard = new MemoryReplayGuard();
    await expect(guard.firstUse('', 10)).rejects.toThrow(TypeError);
    await expect(guard.firstUse('a', 0)).rejects.toThrow(RangeError);
    await expect(guard.firstUse('a', Number.NaN)).rejects.toThrow(RangeError);
    expect(() => new MemoryReplayGuard({ maxEntries: 0 })).toThrow(RangeError);
  });
});
