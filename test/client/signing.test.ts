import { describe, expect, it } from 'vitest';
import { createCelforgeClient, signatureHeaders, signingFetch } from '../../packages/client/src/index.js';
import { signedHeaders } from '../../src/identity/client-signing.js';
import { createKey } from '../identity/api-keys-support.js';
import { useTestApp } from '../support/app.js';
import { signIn } from '../support/users.js';

describe('packages/client: signing critical requests made with an API key', () => {
  const t = useTestApp('sqlite', {}, { worker: false });

  it('signs exactly as the server-side helper does (Web Crypto, so it runs in browsers too)', async () => {
    const apiKey = `cfk_${'ab12'.repeat(6)}_${'k'.repeat(43)}`;
    const signingSecret = 'Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg';
    for (const body of [undefined, '{"visibility":"public"}']) {
      const input = { method: 'POST', url: 'https://studio.example/api/anime/jobs/x/publish?a=1', apiKey, signingSecret, created: 1_790_000_000, nonce: 'n0nce-1' };
      const expected = signedHeaders({ ...input, body });
      const actual = await signatureHeaders({ ...input, body: body === undefined ? undefined : new TextEncoder().encode(body), now: () => input.created });
      expect(actual).toEqual(expected);
    }
    await expect(signatureHeaders({ method: 'GET', url: 'https://x.example/', apiKey: 'nope', signingSecret })).rejects.toThrow(TypeError);
  });

  it('a client with signingFetch passes the signature check; once its key is revoked it is refused', async () => {
    const owner = await signIn(t.app);
    const key = await createKey(t.app, owner, { name: 'script', scopes: ['jobs:read', 'gallery:publish'] });
    // the server checks the signature against its public URL: send through inject, addressed there
    const viaInject = async (request: Request) => {
      const url = new URL(request.url);
      const answer = await t.app.inject({
        method: request.method as 'DELETE',
        url: url.pathname + url.search,
        headers: Object.fromEntries(request.headers),
        payload: Buffer.from(await request.arrayBuffer()),
      });
      return new Response(answer.statusCode === 204 ? null : answer.body, { status: answer.statusCode, headers: { 'content-type': String(answer.headers['content-type'] ?? 'application/json') } });
    };
    const client = createCelforgeClient({ baseUrl: t.config.publicUrl, fetch: signingFetch({ apiKey: key.key, signingSecret: key.signing_secret, fetch: viaInject }) });
    const unsigned = createCelforgeClient({
      baseUrl: t.config.publicUrl,
      fetch: (request) => {
        request.headers.set('x-api-key', key.key);
        return viaInject(request);
      },
    });

    const jobs = await client.GET('/api/anime/jobs');
    expect(jobs.response.status).toBe(200);
    expect(jobs.data?.items).toEqual([]);
    const refused = await unsigned.DELETE('/api/anime/jobs/{id}/publish', { params: { path: { id: '00000000-0000-4000-8000-000000000000' } } });
    expect(refused.response.status).toBe(401);
    expect(refused.error).toMatchObject({ type: 'urn:celforge:problem:signature-required' });
    // signed, the same request passes and reaches the job lookup, which finds nothing
    const signed = await client.DELETE('/api/anime/jobs/{id}/publish', { params: { path: { id: '00000000-0000-4000-8000-000000000000' } } });
    expect(signed.response.status).toBe(404);
    expect(signed.error).toMatchObject({ status: 404 });

    const revoke = await t.app.inject({ method: 'DELETE', url: `/api/auth/api-keys/${key.id}`, headers: owner.authorization });
    expect(revoke.statusCode).toBe(204);
    const after = await client.GET('/api/anime/jobs');
    expect(after.response.status).toBe(401);
  });
});
