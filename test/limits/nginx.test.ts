import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../support/cli.js';
import { createTestStorage, type TestStorage } from '../support/dialects.js';
import { startServer, type RunningServer } from '../support/server.js';
import { parseRateField } from './routes.js';

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((file) => existsSync(file));
if (!NGINX && process.env.CI) throw new Error('nginx is required in CI (apt-get install nginx)');
if (!NGINX) console.warn('\n  NOTICE: nginx is not installed; the reverse-proxy tests are SKIPPED on this machine.\n');

const PROXY_HOST = '127.0.0.5';

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The shipped deploy/nginx/celforge.conf, with only its addresses, ports and certificate paths changed. */
function renderConfig(dir: string, ports: { http: number; https: number; upstream: number }): string {
  let site = readFileSync(path.join(ROOT, 'deploy/nginx/celforge.conf'), 'utf8');
  const replace = (from: string | RegExp, to: string) => {
    const next = site.replace(from, to);
    if (next === site) throw new Error(`deploy/nginx/celforge.conf no longer contains ${from}`);
    site = next;
  };
  replace('server 127.0.0.1:8331;', `server 127.0.0.1:${ports.upstream};`);
  replace(/^\s*listen \[::\]:\d+.*$/gm, '');
  replace(/listen 80;/, `listen ${PROXY_HOST}:${ports.http};`);
  replace(/listen 443 ssl http2;/, `listen ${PROXY_HOST}:${ports.https} ssl http2;`);
  replace('/etc/ssl/celforge/fullchain.pem', path.join(dir, 'cert.pem'));
  replace('/etc/ssl/celforge/privkey.pem', path.join(dir, 'key.pem'));
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((name) => `${name}_temp_path ${path.join(dir, name)};`).join('\n  ');
  return `worker_processes 1;
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 128; }
http {
  access_log off;
  ${temp}
${site}
}
`;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(url: string, options: { localAddress: string; headers?: Record<string, string>; method?: string; body?: string }): Promise<Answer> {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(
      target,
      { method: options.method ?? 'GET', localAddress: options.localAddress, headers: options.headers, rejectUnauthorized: false, agent: false },
      (res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

async function startNginx(dir: string, upstream: number): Promise<{ https: string; http: string; process: ChildProcess }> {
  const ports = { http: await freePort(PROXY_HOST), https: await freePort(PROXY_HOST), upstream };
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, renderConfig(dir, ports));
  const args = ['-p', dir, '-c', conf, '-g', `daemon off; pid ${path.join(dir, 'nginx.pid')};`];
  execFileSync(NGINX!, ['-t', ...args], { stdio: 'pipe' });
  const child = spawn(NGINX!, args, { stdio: 'ignore' });
  const base = { https: `https://${PROXY_HOST}:${ports.https}`, http: `http://${PROXY_HOST}:${ports.http}`, process: child };
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      await request(`${base.http}/`, { localAddress: '127.0.0.1' });
      return base;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`nginx did not start: ${readFileSync(path.join(dir, 'error.log'), 'utf8')}`);
}

async function stopNginx(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGQUIT');
  await exited;
}

function makeCertificate(dir: string): void {
  chmodSync(dir, 0o755);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=studio.example',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
}

describe.skipIf(!NGINX)('nginx passes server-sent events unbuffered', () => {
  it('the first event arrives while the stream is still open', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'celforge-nginx-sse-'));
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const upstream = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.write(`event: progress\ndata: {"path":"${req.url}","progress":10}\n\n`);
      void held.then(() => res.end('event: done\ndata: {}\n\n'));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    let nginx: ChildProcess | undefined;
    try {
      makeCertificate(dir);
      const proxy = await startNginx(dir, (upstream.address() as AddressInfo).port);
      nginx = proxy.process;
      const first = await new Promise<string>((resolve, reject) => {
        const req = https.get(`${proxy.https}/api/anime/jobs/j1/events`, { localAddress: '127.0.0.2', rejectUnauthorized: false, agent: false }, (res) => {
          res.once('data', (chunk: Buffer) => {
            resolve(chunk.toString());
            req.destroy();
          });
        });
        req.on('error', reject);
      });
      // the upstream has not finished the response: the event came through unbuffered
      expect(first).toContain('event: progress');
      expect(first).toContain('/api/anime/jobs/j1/events');
    } finally {
      release();
      await stopNginx(nginx);
      await new Promise((resolve) => upstream.close(resolve));
      upstream.closeAllConnections();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!NGINX)('Celforge behind a real nginx', () => {
  let storage: TestStorage;
  let server: RunningServer;
  let nginx: ChildProcess;
  let dir: string;
  let proxied: string;
  let plain: string;

  beforeAll(async () => {
    storage = await createTestStorage('sqlite');
    server = await startServer(storage, {
      env: { CELFORGE_TRUST_PROXY: '127.0.0.1', CELFORGE_RATE_LIMITS: 'anonymous=3/60s', CELFORGE_HOST: '127.0.0.1' },
    });
    dir = mkdtempSync(path.join(tmpdir(), 'celforge-nginx-'));
    makeCertificate(dir);
    const proxy = await startNginx(dir, Number(new URL(server.url).port));
    nginx = proxy.process;
    proxied = proxy.https;
    plain = proxy.http;
  });

  afterAll(async () => {
    await stopNginx(nginx);
    await server?.stop();
    await storage?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const health = (base: string, localAddress: string, headers: Record<string, string> = {}) =>
    request(`${base}/api/anime/health`, { localAddress, headers });

  it('counts the real client address through nginx, whatever X-Forwarded-For the client sends', async () => {
    for (let i = 0; i < 3; i++) {
      const answer = await health(proxied, '127.0.0.2', { 'x-forwarded-for': `203.0.113.${i}` });
      expect(answer.status).toBe(200);
      expect(parseRateField(answer.headers.ratelimit).anonymous!.r).toBe(2 - i);
    }
    const limited = await health(proxied, '127.0.0.2', { 'x-forwarded-for': '203.0.113.99' });
    expect(limited.status).toBe(429);
    expect(JSON.parse(limited.body)).toMatchObject({ type: 'urn:celforge:problem:rate-limited', policy: 'anonymous' });
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);

    // another client address has its own budget, even when it claims to be the first one
    const other = await health(proxied, '127.0.0.3', { 'x-forwarded-for': '127.0.0.2' });
    expect(other.status).toBe(200);
    expect(parseRateField(other.headers.ratelimit).anonymous!.r).toBe(2);
  });

  it('a direct client sending X-Forwarded-For changes nothing', async () => {
    for (let i = 0; i < 3; i++) {
      const answer = await health(server.url, '127.0.0.4', { 'x-forwarded-for': `198.51.100.${i}, 127.0.0.7` });
      expect(answer.status).toBe(200);
    }
    expect((await health(server.url, '127.0.0.4', { 'x-forwarded-for': '198.51.100.50' })).status).toBe(429);
    // the address it claimed was not charged
    const claimed = await health(proxied, '127.0.0.7');
    expect(claimed.status).toBe(200);
    expect(parseRateField(claimed.headers.ratelimit).anonymous!.r).toBe(2);
  });

  it('hides its version, refuses oversized bodies, and redirects plain HTTP to HTTPS', async () => {
    const answer = await health(proxied, '127.0.0.8');
    expect(answer.headers.server).toBe('nginx');
    const big = await request(`${proxied}/api/auth/login`, {
      localAddress: '127.0.0.8',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'a@example.test', password: 'x'.repeat(200_000) }),
    });
    expect(big.status).toBe(413);
    expect(big.headers.server).toBe('nginx');
    expect(big.body).not.toMatch(/nginx\/\d/);
    const redirect = await request(`${plain}/api/anime/health`, { localAddress: '127.0.0.8' });
    expect(redirect.status).toBe(301);
    expect(redirect.headers.location).toMatch(/^https:\/\//);
  });
});
