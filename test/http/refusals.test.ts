import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { beforeAll, expect, it } from 'vitest';
import { useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { signIn } from '../support/users.js';
import { createKey } from '../identity/api-keys-support.js';

/** Sends raw bytes and returns everything the server wrote before closing (or within 3 s). */
function raw(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text));
    let out = '';
    const timer = setTimeout(() => socket.destroy(), 3000);
    socket.on('data', (chunk) => (out += chunk.toString('latin1')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on('error', () => {});
  });
}

/** The answers in a raw response stream: status, headers, JSON body. */
function answers(text: string) {
  return text
    .split(/(?=HTTP\/1\.1 \d{3} )/)
    .filter(Boolean)
    .map((part) => {
      const [head, ...rest] = part.split('\r\n\r\n');
      const lines = head!.split('\r\n');
      const headers = Object.fromEntries(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      return { status: Number(lines[0]!.split(' ')[1]), headers, body: rest.join('\r\n\r\n') };
    });
}

describeEachDialect('refusals before routing, aborted requests and API-key actions in the audit trail', (dialect) => {
  const t = useTestApp(dialect, {}, { worker: false });
  let port: number;
  beforeAll(async () => {
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as AddressInfo).port;
  });

  const requestRows = async (route: string) => {
    await t.app.services.audit.flush();
    const rows = await t.app.services.store.db.selectFrom('audit_log').selectAll().where('action', '=', 'http.request').orderBy('seq').execute();
    return rows.map((r) => ({ ...r, detail: JSON.parse(r.detail!) as Record<string, unknown> })).filter((r) => r.detail.route === route);
  };

  it('a path that is not valid percent-encoding is a 400 problem that does not echo it, and a row', async () => {
    const [answer] = answers(await raw(port, 'GET /api/anime/jobs/%ff%fe%3Cscript%3E HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    expect(answer!.status).toBe(400);
    expect(answer!.headers['content-type']).toContain('application/problem+json');
    expect(answer!.headers['x-content-type-options']).toBe('nosniff');
    expect(JSON.parse(answer!.body)).toMatchObject({ type: 'urn:celforge:problem:bad-url', status: 400 });
    expect(answer!.body).not.toMatch(/%ff|%fe|script|jobs/i);
    expect(await requestRows('(refused by the router)')).toHaveLength(1);
  });

  it('headers too large: a 431 problem, nothing echoed, and a row', async () => {
    const [answer] = answers(await raw(port, `GET /api/anime/health HTTP/1.1\r\nHost: x\r\nX-Echo-Me: ${'q'.repeat(20_000)}\r\n\r\n`));
    expect(answer!.status).toBe(431);
    expect(answer!.headers['content-type']).toContain('application/problem+json');
    expect(JSON.parse(answer!.body)).toMatchObject({ type: 'urn:celforge:problem:headers-too-large', status: 431 });
    expect(answer!.body).not.toContain('qqq');
    const rows = await requestRows('(refused by the HTTP parser)');
    expect(rows.at(-1)!.detail).toMatchObject({ status: 431, reason: 'HPE_HEADER_OVERFLOW' });
    expect(rows.at(-1)!.ip).toBe('127.0.0.1');
  });

  it('a body longer than its Content-Length: every answer is a problem, none echoes the input', async () => {
    const body = '{"email":"echo-me@example.test","password":"x"}';
    const text = await raw(port, `POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n${body}`);
    const all = answers(text);
    expect(all.length).toBeGreaterThanOrEqual(1);
    for (const answer of all) {
      expect(answer.status).toBeGreaterThanOrEqual(400);
      expect(answer.headers['content-type']).toContain('application/problem+json');
      expect(answer.body).not.toContain('echo-me');
    }
  });

  it('an event stream the client closes is a row (status 499, aborted), naming the API key that opened it', async () => {
    const user = await signIn(t.app);
    const key = await createKey(t.app, user, { name: 'watcher', scopes: ['jobs:read', 'jobs:write'] });
    const created = await t.app.inject({ method: 'POST', url: '/api/anime/generate', headers: { 'x-api-key': key.key }, payload: { prompt: 'a fox', type: 'image' } });
    expect(created.statusCode).toBe(202);
    const id = created.json().job_id as string;
    await new Promise<void>((resolve, reject) => {
      const request = http.get({ host: '127.0.0.1', port, path: `/api/anime/jobs/${id}/events`, headers: { 'x-api-key': key.key } }, (response) => {
        expect(response.statusCode).toBe(200);
        response.once('data', () => {
          request.destroy();
          setTimeout(resolve, 300);
        });
      });
      request.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(error)));
    });
    const rows = await requestRows('/api/anime/jobs/:id/events');
    expect(rows).toHaveLength(1);
    expect(rows[0]!.detail).toMatchObject({ status: 499, aborted: true, via: 'api-key', credential: `api-key:${key.id}` });
    expect(rows[0]!.actor_id).toBe(user.userId);
    const generate = await requestRows('/api/anime/generate');
    expect(generate.at(-1)!.detail).toMatchObject({ status: 202, credential: `api-key:${key.id}` });
  });
});
