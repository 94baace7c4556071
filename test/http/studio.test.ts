import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { STUDIO_CSP } from '../../src/http/studio.js';
import { useTestApp } from '../support/app.js';
import { signIn } from '../support/users.js';

const INDEX = '<!doctype html><html><head><script type="module" src="/assets/index-Ab12Cd34.js"></script></head><body></body></html>';
const SCRIPT = 'console.log("studio");'.repeat(20);

function builtStudio(): string {
  const root = mkdtempSync(join(tmpdir(), 'celforge-studio-'));
  mkdirSync(join(root, 'assets'));
  writeFileSync(join(root, 'index.html'), INDEX);
  writeFileSync(join(root, 'assets', 'index-Ab12Cd34.js'), SCRIPT);
  writeFileSync(join(root, 'assets', 'index-Ab12Cd34.js.gz'), gzipSync(SCRIPT));
  writeFileSync(join(root, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  mkdirSync(join(root, '.vite'));
  writeFileSync(join(root, '.vite', 'manifest.json'), '{"build":"internals"}');
  return root;
}

describe('studio: the web app served at /', () => {
  const t = useTestApp('sqlite', {}, { studioRoot: builtStudio() });

  it('answers / and every page path with index.html, never cached, under the studio CSP', async () => {
    for (const url of ['/', '/gallery', '/jobs/0b5f5c4e-2c9e-4c43-9d4c-6e1f0c2a9f11', '/no/such/page?x=1']) {
      const response = await t.app.inject({ method: 'GET', url });
      expect(response.statusCode, url).toBe(200);
      expect(response.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(response.body).toBe(INDEX);
      expect(response.headers['cache-control']).toBe('no-store');
      expect(response.headers['content-security-policy']).toBe(STUDIO_CSP);
      expect(response.headers['x-frame-options']).toBe('DENY');
      expect(response.headers['x-content-type-options']).toBe('nosniff');
    }
  });

  it('has a CSP with no inline script, no eval and no other origin', () => {
    const directives = Object.fromEntries(STUDIO_CSP.split('; ').map((d) => [d.split(' ')[0], d.split(' ').slice(1).join(' ')]));
    expect(directives).toMatchObject({
      'default-src': "'none'",
      'script-src': "'self'",
      'connect-src': "'self'",
      'img-src': "'self' blob: data:",
      'media-src': "'self' blob: data:",
      'frame-ancestors': "'none'",
    });
    expect(STUDIO_CSP).not.toMatch(/unsafe|https?:|\*/);
  });

  it('serves hashed assets for a year, compressed when the browser accepts it', async () => {
    const plain = await t.app.inject({ method: 'GET', url: '/assets/index-Ab12Cd34.js' });
    expect(plain.statusCode).toBe(200);
    expect(plain.body).toBe(SCRIPT);
    expect(plain.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(plain.headers['content-type']).toContain('javascript');
    const gzipped = await t.app.inject({ method: 'GET', url: '/assets/index-Ab12Cd34.js', headers: { 'accept-encoding': 'gzip' } });
    expect(gzipped.headers['content-encoding']).toBe('gzip');
    expect(gzipped.rawPayload.length).toBeLessThan(SCRIPT.length);
    const icon = await t.app.inject({ method: 'GET', url: '/favicon.svg' });
    expect(icon.statusCode).toBe(200);
    expect(icon.headers['cache-control']).toBe('public, max-age=3600');
  });

  it('does not serve the build manifest (dot folders stay private)', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/.vite/manifest.json' });
    expect(response.body).not.toContain('internals');
  });

  it('keeps problem+json 404s for unknown API paths, unknown assets and non-GET methods', async () => {
    for (const [method, url] of [
      ['GET', '/api/anime/no-such-thing'],
      ['GET', '/api/nope'],
      ['POST', '/gallery'],
      ['DELETE', '/'],
    ] as const) {
      const response = await t.app.inject({ method, url });
      expect(response.headers['content-type'], `${method} ${url}`).toContain('application/problem+json');
      expect([404, 405]).toContain(response.statusCode);
    }
    const api = await t.app.inject({ method: 'GET', url: '/api/anime/no-such-thing' });
    expect(api.statusCode).toBe(404);
    expect(api.json()).toMatchObject({ type: 'urn:celforge:problem:not-found', status: 404 });
    expect(api.headers['content-security-policy']).toBe("default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
  });

  it('leaves the API its own stricter headers', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/api/anime/health' });
    expect(response.headers['content-security-policy']).toBe("default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
    expect(response.headers['cache-control']).toBe('no-store');
  });

  it('shows a signed-in user their own quota and the generation budget terms', async () => {
    const user = await signIn(t.app);
    const response = await t.app.inject({ method: 'GET', url: '/api/anime/quota', headers: user.authorization });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({
      limits: { active_jobs: 3, jobs_per_day: 200 },
      usage: { active_jobs: 0, jobs_today: 0 },
      generation: { quota: 30, window_seconds: 60, costs: { image: 1, video: 5 } },
    });
    const anonymous = await t.app.inject({ method: 'GET', url: '/api/anime/quota' });
    expect(anonymous.statusCode).toBe(401);
  });
});

describe('studio: not built', () => {
  const t = useTestApp('sqlite', {}, { studioRoot: join(tmpdir(), 'celforge-no-studio-here') });
  it('answers / with the 404 problem', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/' });
    expect(response.statusCode).toBe(404);
    expect(response.headers['content-type']).toContain('application/problem+json');
  });
});
