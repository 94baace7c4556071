/**
 * The studio's budget: the first screen's JavaScript and CSS (gzip, as served) from web/dist, and
 * with `--lighthouse` Lighthouse scores for Create (signed in) and Gallery against a local server.
 *
 *   npm run build && npx tsx bench/studio.ts [--lighthouse [--desktop]]
 *
 * Lighthouse runs Debian's Chromium (CHROME_PATH, default /usr/bin/chromium).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { createServer, type AddressInfo } from 'node:net';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { STUDIO_DIST } from '../src/http/studio.js';

const BUDGET = { jsGzipKb: 80, cssGzipKb: 20 };
const run = promisify(execFile);

interface ManifestChunk {
  file: string;
  css?: string[];
  imports?: string[];
  isEntry?: boolean;
}

/**
 * What the landing screen (Create) needs before it is drawn: the entry, its static imports, the
 * Create screen's chunk and its imports, and their CSS — from Vite's manifest, gzip as served.
 */
function firstScreen(): { js: number; css: number; files: string[] } {
  const manifest = JSON.parse(readFileSync(join(STUDIO_DIST, '.vite/manifest.json'), 'utf8')) as Record<string, ManifestChunk>;
  const files = new Set<string>();
  const visit = (key: string) => {
    const chunk = manifest[key];
    if (!chunk || files.has(chunk.file)) return;
    files.add(chunk.file);
    for (const css of chunk.css ?? []) files.add(css);
    for (const imported of chunk.imports ?? []) visit(imported);
  };
  for (const [key, chunk] of Object.entries(manifest)) if (chunk.isEntry) visit(key);
  visit('src/screens/Create.svelte');
  let js = 0;
  let css = 0;
  for (const file of files) {
    const path = join(STUDIO_DIST, file);
    const size = existsSync(`${path}.gz`) ? readFileSync(`${path}.gz`).length : gzipSync(readFileSync(path)).length;
    if (file.endsWith('.js')) js += size;
    else if (file.endsWith('.css')) css += size;
  }
  return { js, css, files: [...files] };
}

async function lighthouse(url: string, headers?: Record<string, string>) {
  const out = join(tmpdir(), `celforge-lh-${process.pid}-${Date.now()}.json`);
  const args = [
    url,
    '--quiet',
    '--only-categories=performance,accessibility,best-practices',
    '--output=json',
    `--output-path=${out}`,
    '--chrome-flags=--headless=new --no-sandbox --disable-gpu',
    ...(headers ? [`--extra-headers=${JSON.stringify(headers)}`] : []),
    ...(process.argv.includes('--desktop') ? ['--preset=desktop'] : []),
  ];
  await run(join(import.meta.dirname, '../node_modules/.bin/lighthouse'), args, {
    env: { ...process.env, CHROME_PATH: process.env.CHROME_PATH ?? '/usr/bin/chromium' },
    maxBuffer: 64 * 1024 * 1024,
  });
  const report = JSON.parse(readFileSync(out, 'utf8')) as {
    categories: Record<string, { score: number }>;
    audits: Record<string, { numericValue?: number }>;
    environment?: { benchmarkIndex?: number };
  };
  rmSync(out, { force: true });
  const score = (name: string) => Math.round((report.categories[name]?.score ?? 0) * 100);
  return {
    performance: score('performance'),
    accessibility: score('accessibility'),
    bestPractices: score('best-practices'),
    lcpMs: Math.round(report.audits['largest-contentful-paint']?.numericValue ?? 0),
    tbtMs: Math.round(report.audits['total-blocking-time']?.numericValue ?? 0),
    // Lighthouse's measure of this machine's speed (a quiet desktop scores ~1000+); low values inflate TBT
    benchmarkIndex: Math.round(report.environment?.benchmarkIndex ?? 0),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function lighthouseRuns() {
  const dataDir = mkdtempSync(join(tmpdir(), 'celforge-bench-studio-'));
  // The port is known before the config: the studio's cookie routes accept only the public URL as Origin.
  const port = await freePort();
  const app = await buildApp(loadConfig({ CELFORGE_DATA_DIR: dataDir, CELFORGE_LOG_LEVEL: 'warn', CELFORGE_PREVIEW_STEP_MS: '0', CELFORGE_PORT: String(port) }));
  try {
    await app.listen({ host: '127.0.0.1', port });
    const url = `http://127.0.0.1:${port}`;
    const email = 'bench@celforge.test';
    const password = 'studio bench pass phrase 9';
    await app.services.identity.createUser({ email, password, role: 'user' });
    const login = async () => (await app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password } })).json() as { access_token: string; refresh_token: string };
    const { access_token } = await login();
    const authorization = `Bearer ${access_token}`;
    const ids: string[] = [];
    for (let i = 0; i < 9; i++) {
      const job = await app.inject({ method: 'POST', url: '/api/anime/generate', headers: { authorization }, payload: { prompt: `gallery piece ${i}`, type: 'image', seed: i } });
      ids.push(job.json().job_id);
      for (;;) {
        const state = (await app.inject({ method: 'GET', url: `/api/anime/jobs/${ids[i]}`, headers: { authorization } })).json().status;
        if (state === 'succeeded' || state === 'failed') break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await app.inject({ method: 'POST', url: `/api/anime/jobs/${ids[i]}/publish`, headers: { authorization }, payload: { visibility: 'public' } });
    }
    const gallery = await lighthouse(`${url}/gallery`);
    // Create needs a session: Lighthouse brings the refresh cookie of a fresh one.
    const { refresh_token } = await login();
    const create = await lighthouse(`${url}/`, { cookie: `celforge_refresh=${refresh_token}` });
    return { create, gallery };
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const sizes = firstScreen();
const result: Record<string, unknown> = {
  at: new Date().toISOString(),
  firstScreen: { jsGzipKb: +(sizes.js / 1024).toFixed(1), cssGzipKb: +(sizes.css / 1024).toFixed(1), files: sizes.files, budget: BUDGET },
};
console.log(`first screen: JS ${result.firstScreen && (sizes.js / 1024).toFixed(1)} KB gzip (budget ${BUDGET.jsGzipKb}), CSS ${(sizes.css / 1024).toFixed(1)} KB gzip (budget ${BUDGET.cssGzipKb})`);
if (process.argv.includes('--lighthouse')) {
  result.lighthouse = await lighthouseRuns();
  console.log('lighthouse', JSON.stringify(result.lighthouse));
}
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(join(import.meta.dirname, 'results', `studio-${Date.now()}.json`), `${JSON.stringify(result, null, 2)}\n`);
