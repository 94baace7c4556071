import { expect, it } from 'vitest';
import { createTestStorage } from '../support/dialects.js';
import { startServer } from '../support/server.js';

const SECRET_QUERY = 'sig=url-token-6c1f';
const SECRET_BEARER = 'eyJhbGciOiJFZERTQSJ9.bogus-payload-7d2e.bogus-signature-0123456789';

/** One request with a credential and a signed-URL-like query; the server's log lines for it, as JSON. */
async function logOfOneRequest(level: string): Promise<Record<string, unknown>[]> {
  const storage = await createTestStorage('sqlite');
  try {
    const server = await startServer(storage, { env: { CELFORGE_LOG_LEVEL: level } });
    try {
      const answer = await fetch(`${server.url}/api/anime/jobs?${SECRET_QUERY}`, {
        headers: { authorization: `Bearer ${SECRET_BEARER}`, 'x-request-id': 'req-logging-0001' },
      });
      expect(answer.status).toBe(401);
    } finally {
      await server.stop();
    }
    // its last line, so every line about the request is in before it
    await expect.poll(() => server.output().includes('"msg":"shutting down"')).toBe(true);
    const output = server.output();
    expect(output).not.toContain(SECRET_QUERY);
    expect(output).not.toContain(SECRET_BEARER);
    return output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.reqId === 'req-logging-0001');
  } finally {
    await storage.drop();
  }
}

it('at info no line is written per request (the audit trail has every request); at debug both are, without credentials or query', async () => {
  expect(await logOfOneRequest('info')).toEqual([]);

  const lines = await logOfOneRequest('debug');
  expect(lines.map((line) => line.msg)).toEqual(['incoming request', 'request completed']);
  expect(lines[0]!.req).toEqual({ method: 'GET', path: '/api/anime/jobs', ip: '127.0.0.1' });
  expect(lines[1]!.res).toMatchObject({ statusCode: 401 });
}, 120_000);
