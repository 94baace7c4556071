import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { contentDigest, signRequest, type SignatureHeaders } from '../../src/access/http-signatures.js';
import { apiKeyId, signedHeaders } from '../../src/identity/client-signing.js';
import { describeEachDialect } from '../support/dialects.js';
import { signIn, useTestApp } from '../support/app.js';
import { apiKeyHeader, createKey, testRoutes, type CreatedKey } from './api-keys-support.js';

type Method = 'POST' | 'PUT' | 'DELETE';

describeEachDialect('Signed critical operations by API key', (dialect) => {
  const t = useTestApp(dialect, {}, { extraRoutes: testRoutes });
  const url = (path: string) => `${t.config.publicUrl}${path}`;

  let counter = 0;
  async function setup() {
    const user = await signIn(t.app);
    const key = await createKey(t.app, user, { name: `k${counter++}`, scopes: ['jobs:read', 'jobs:write'] });
    const other = await createKey(t.app, user, { name: `k${counter++}`, scopes: ['jobs:read'] });
    return { user, key, other };
  }

  function send(key: CreatedKey, method: Method, path: string, body: string | undefined, headers: Record<string, string> | SignatureHeaders) {
    return t.app.inject({
      method,
      url: path,
      headers: { ...apiKeyHeader(key.key), ...(body !== undefined && { 'content-type': 'application/json' }), ...headers },
      ...(body !== undefined && { payload: body }),
    });
  }

  function expectRefused(res: Awaited<ReturnType<typeof send>>, reason: string) {
    expect(res.statusCode, res.body).toBe(401);
    expect(res.json()).toMatchObject({ type: 'urn:celforge:problem:signature-invalid', status: 401, reason });
  }

  it('without a signature: 401 signature-required, with Accept-Signature, and audited', async () => {
    const { key } = await setup();
    const record = vi.spyOn(t.app.services.audit, 'record');
    const res = await send(key, 'POST', '/test/critical/a', '{"x":1}', {});
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ type: 'urn:celforge:problem:signature-required', reason: 'missing' });
    expect(res.headers['accept-signature']).toContain('("@method" "@target-uri" "content-digest")');
    expect(res.headers['accept-signature']).toContain(`keyid="${key.id}"`);
    expect(record).toHaveBeenCalledWith(expect.objectContaining({ action: 'auth.signature', outcome: 'denied', target: `api-key:${key.id}` }));
    record.mockRestore();
  });

  it('with a valid signature: 200, once; the replay is refused', async () => {
    const { key } = await setup();
    const body = '{"visibility":"public"}';
    const headers = signedHeaders({ method: 'POST', url: url('/test/critical/a?dry=0'), body, apiKey: key.key, signingSecret: key.signing_secret });
    const ok = await send(key, 'POST', '/test/critical/a?dry=0', body, headers);
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toEqual({ ok: true, method: 'POST', name: 'a', body: { visibility: 'public' } });
    expectRefused(await send(key, 'POST', '/test/critical/a?dry=0', body, headers), 'replayed');
  });

  it('a body-less request signs the empty body', async () => {
    const { key } = await setup();
    const headers = signedHeaders({ method: 'DELETE', url: url('/test/critical/b'), apiKey: key.key, signingSecret: key.signing_secret });
    const ok = await send(key, 'DELETE', '/test/critical/b', undefined, headers);
    expect(ok.statusCode, ok.body).toBe(200);
  });

  it('refuses a signed request altered in any covered part', async () => {
    const { key, other } = await setup();
    const body = '{"visibility":"public"}';
    const path = '/test/critical/a?dry=0';
    const sign = (over: { method?: Method; path?: string; body?: string; created?: number; url?: string } = {}) =>
      signedHeaders({ method: over.method ?? 'POST', url: over.url ?? url(over.path ?? path), body: over.body ?? body, apiKey: key.key, signingSecret: key.signing_secret, created: over.created });

    // method
    expectRefused(await send(key, 'PUT', path, body, sign()), 'bad-signature');
    // path
    expectRefused(await send(key, 'POST', '/test/critical/b?dry=0', body, sign()), 'bad-signature');
    // query
    expectRefused(await send(key, 'POST', '/test/critical/a?dry=1', body, sign()), 'bad-signature');
    expectRefused(await send(key, 'POST', '/test/critical/a', body, sign()), 'bad-signature');
    // body, digest left as signed
    expectRefused(await send(key, 'POST', path, '{"visibility":"members"}', sign()), 'bad-digest');
    // body and digest changed together
    const forged = { ...sign(), 'content-digest': contentDigest('{"visibility":"members"}') };
    expectRefused(await send(key, 'POST', path, '{"visibility":"members"}', forged), 'bad-signature');
    // created rewritten
    const fresh = sign();
    const created = Number(/;created=(\d+)/.exec(fresh['signature-input'])![1]);
    const moved = { ...fresh, 'signature-input': fresh['signature-input'].replace(`;created=${created}`, `;created=${created - 1}`) };
    expectRefused(await send(key, 'POST', path, body, moved), 'bad-signature');
    // keyid rewritten to the caller's other key: not the key that authenticated the request
    const rekeyed = { ...fresh, 'signature-input': fresh['signature-input'].replace(`keyid="${key.id}"`, `keyid="${other.id}"`) };
    expectRefused(await send(key, 'POST', path, body, rekeyed), 'unknown-key');
    // signed for another origin (a Host header does not change the target URI)
    expectRefused(await send(key, 'POST', path, body, sign({ url: `https://evil.example${path}` })), 'bad-signature');
    const hosted = await send(key, 'POST', path, body, { ...sign({ url: `http://evil.example${path}` }), host: 'evil.example' });
    expectRefused(hosted, 'bad-signature');
    // older than 5 minutes, or from the future
    const now = Math.floor(Date.now() / 1000);
    expectRefused(await send(key, 'POST', path, body, sign({ created: now - 301 })), 'expired');
    expectRefused(await send(key, 'POST', path, body, sign({ created: now + 60 })), 'future');
    // a signature field that does not parse
    expectRefused(await send(key, 'POST', path, body, { ...sign(), signature: 'sig1=:not base64:' }), 'malformed');

    // and the untouched one still passes
    expect((await send(key, 'POST', path, body, sign())).statusCode).toBe(200);
  });

  it('refuses a signature made with another key’s secret, or by another key for this request', async () => {
    const { key, other } = await setup();
    const body = '{}';
    const path = '/test/critical/a';
    const wrongSecret = signRequest({ method: 'POST', url: url(path), body, keyId: key.id, secret: Buffer.from(other.signing_secret, 'base64url') });
    expectRefused(await send(key, 'POST', path, body, wrongSecret), 'bad-signature');
    // a valid signature by the other key, presented with this key's credential
    const byOther = signedHeaders({ method: 'POST', url: url(path), body, apiKey: other.key, signingSecret: other.signing_secret });
    expectRefused(await send(key, 'POST', path, body, byOther), 'unknown-key');
    expect(apiKeyId(key.key)).toBe(key.id);
  });

  describe('a leaked key header alone cannot sign', () => {
    // What an attacker can compute from nothing but the key text seen in one request.
    const fromKeyAlone = (apiKey: string): Array<[string, Buffer | string]> => [
      ['the secret derived from the key (HMAC(key, label), the former scheme)', createHmac('sha256', apiKey).update('celforge request signing v1', 'utf8').digest()],
      ['the key text itself', apiKey],
      ['the key’s random part', Buffer.from(apiKey.slice(-43), 'base64url')],
      ['the key’s SHA-256 (what the store keeps)', createHash('sha256').update(apiKey, 'utf8').digest()],
    ];

    it('on a critical route: 401 signature-invalid for every secret computable from the key', async () => {
      const { key } = await setup();
      const body = '{"visibility":"public"}';
      const path = '/test/critical/a';
      for (const [what, secret] of fromKeyAlone(key.key)) {
        const forged = signRequest({ method: 'POST', url: url(path), body, keyId: key.id, secret });
        const res = await send(key, 'POST', path, body, forged);
        expect(res.statusCode, what).toBe(401);
        expect(res.json(), what).toMatchObject({ type: 'urn:celforge:problem:signature-invalid', reason: 'bad-signature' });
      }
      // the holder of the signing secret still passes
      const genuine = signedHeaders({ method: 'POST', url: url(path), body, apiKey: key.key, signingSecret: key.signing_secret });
      expect((await send(key, 'POST', path, body, genuine)).statusCode).toBe(200);
    });

    it('cannot do a critical operation with a forged signature: 401', async () => {
      const { key } = await setup();
      const path = '/test/critical/gone';
      for (const [what, secret] of fromKeyAlone(key.key)) {
        const forged = signRequest({ method: 'DELETE', url: url(path), keyId: key.id, secret });
        const res = await t.app.inject({ method: 'DELETE', url: path, headers: { 'x-api-key': key.key, ...forged } });
        expect(res.statusCode, what).toBe(401);
        expect(res.json().type, what).toBe('urn:celforge:problem:signature-invalid');
      }
    });

    it('the client helper takes only a signing secret, never the key in its place', () => {
      const apiKey = `cfk_${'a'.repeat(24)}_${'B'.repeat(43)}`;
      const base = { method: 'POST', url: url('/test/critical/a'), apiKey };
      for (const signingSecret of [apiKey, '', 'short', `${'A'.repeat(43)}=`, 'A'.repeat(44), '+'.repeat(43)]) {
        expect(() => signedHeaders({ ...base, signingSecret }), signingSecret).toThrow(TypeError);
      }
      expect(signedHeaders({ ...base, signingSecret: 'A'.repeat(43) })['signature-input']).toContain(`keyid="${'a'.repeat(24)}"`);
    });
  });

  it('an admin route that changes something is critical by API key even when it does not say so', async () => {
    const admin = await signIn(t.app, { role: 'admin' });
    const key = await createKey(t.app, admin, { name: 'ops', scopes: ['admin'] });
    const unsigned = await t.app.inject({ method: 'POST', url: '/test/admin-action', headers: apiKeyHeader(key.key) });
    expect(unsigned.statusCode).toBe(401);
    expect(unsigned.json().type).toBe('urn:celforge:problem:signature-required');
    const signed = await t.app.inject({
      method: 'POST',
      url: '/test/admin-action',
      headers: { ...apiKeyHeader(key.key), ...signedHeaders({ method: 'POST', url: url('/test/admin-action'), apiKey: key.key, signingSecret: key.signing_secret }) },
    });
    expect(signed.statusCode, signed.body).toBe(200);
    // reads stay unsigned; the session token needs no signature
    expect((await t.app.inject({ method: 'GET', url: '/test/admin', headers: apiKeyHeader(key.key) })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'POST', url: '/test/admin-action', headers: admin.authorization })).statusCode).toBe(200);
  });

  it('a session token needs no signature on the same critical route', async () => {
    const { user } = await setup();
    const res = await t.app.inject({ method: 'POST', url: '/test/critical/a', headers: user.authorization, payload: { x: 1 } });
    expect(res.statusCode).toBe(200);
    expect(res.json().body).toEqual({ x: 1 });
  });

  it('keeps prototype-pollution protection in the JSON parser', async () => {
    const { user, key } = await setup();
    for (const body of ['{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{"admin":true}}}']) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/test/critical/a',
        headers: { ...user.authorization, 'content-type': 'application/json' },
        payload: body,
      });
      expect(res.statusCode, body).toBe(400);
      expect(res.json().type).toBe('urn:celforge:problem:malformed-json');
      const signed = await send(key, 'POST', '/test/critical/a', body, signedHeaders({ method: 'POST', url: url('/test/critical/a'), body, apiKey: key.key, signingSecret: key.signing_secret }));
      expect(signed.statusCode, body).toBe(400);
    }
  });

  it('the raw-body JSON parser keeps the body limit and refuses malformed JSON', async () => {
    const { user } = await setup();
    const big = JSON.stringify({ pad: 'x'.repeat(t.config.bodyLimit) });
    const post = (payload: string) =>
      t.app.inject({ method: 'POST', url: '/test/critical/a', headers: { ...user.authorization, 'content-type': 'application/json' }, payload });
    const tooLarge = await post(big);
    expect(tooLarge.statusCode).toBe(413);
    expect(tooLarge.json().type).toBe('urn:celforge:problem:body-too-large');
    const broken = await post('{"a":');
    expect(broken.statusCode).toBe(400);
    expect(broken.json().type).toBe('urn:celforge:problem:malformed-json');
  });

  it('a body read by another parser cannot be digested and is refused', async () => {
    const { key } = await setup();
    const body = 'plain words';
    const headers = signedHeaders({ method: 'POST', url: url('/test/critical/a'), body, apiKey: key.key, signingSecret: key.signing_secret });
    const res = await t.app.inject({
      method: 'POST',
      url: '/test/critical/a',
      headers: { ...apiKeyHeader(key.key), 'content-type': 'text/plain', ...headers },
      payload: body,
    });
    expectRefused(res, 'unsupported-body');
  });

  describe('DELETE /api/auth/api-keys/{id} is for sessions only', () => {
    it('by API key, signed or not: 401 api-key-not-accepted, and the key lives on', async () => {
      const { key, other } = await setup();
      const path = `/api/auth/api-keys/${other.id}`;
      const unsigned = await t.app.inject({ method: 'DELETE', url: path, headers: apiKeyHeader(key.key) });
      expect(unsigned.json()).toMatchObject({ status: 401, type: 'urn:celforge:problem:api-key-not-accepted' });
      const headers = signedHeaders({ method: 'DELETE', url: url(path), apiKey: key.key, signingSecret: key.signing_secret });
      const signed = await t.app.inject({ method: 'DELETE', url: path, headers: { ...apiKeyHeader(key.key), ...headers } });
      expect(signed.json()).toMatchObject({ status: 401, type: 'urn:celforge:problem:api-key-not-accepted' });
      expect((await t.app.inject({ method: 'GET', url: '/test/whoami', headers: apiKeyHeader(other.key) })).statusCode).toBe(200);
      const row = await t.app.services.store.db.selectFrom('api_keys').select('revoked_at').where('id', '=', other.id).executeTakeFirstOrThrow();
      expect(row.revoked_at).toBeNull();
    });
  });
});
