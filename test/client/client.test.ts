import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createCelforgeClient } from '../../packages/client/src/index.js';
import { generateSchema, SCHEMA_FILE } from '../../packages/client/scripts/generate.js';
import { useTestApp } from '../support/app.js';
import { registerAndLogin } from '../support/users.js';

describe('packages/client: the typed API client', () => {
  const t = useTestApp('sqlite', {}, { worker: false });

  it('is generated from the current OpenAPI document (run `npm run client:generate` when this fails)', async () => {
    expect(await generateSchema()).toBe(readFileSync(SCHEMA_FILE, 'utf8'));
  });

  it('talks to a running service with typed paths, bodies and answers', async () => {
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = t.app.server.address() as AddressInfo;
    const user = await registerAndLogin(t.app);
    const client = createCelforgeClient({
      baseUrl: `http://127.0.0.1:${port}`,
      fetch: (request) => {
        request.headers.set('authorization', `Bearer ${user.token}`);
        return fetch(request);
      },
    });
    const me = await client.GET('/api/auth/me');
    expect(me.response.status).toBe(200);
    expect(me.data).toMatchObject({ id: user.userId, email: user.email, role: 'user' });
    const refused = await client.POST('/api/anime/generate', { body: { prompt: '', type: 'image' } });
    expect(refused.response.status).toBe(400);
    expect(refused.error).toMatchObject({ type: 'urn:celforge:problem:validation' });
  });
});
