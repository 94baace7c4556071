import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import AxeBuilder from '@axe-core/playwright';
import { test as base, expect, type APIRequestContext, type Page } from '@playwright/test';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const PASSWORD = 'studio pass phrase 2024 long';

export interface Account {
  email: string;
  password: string;
}

/** one user per purpose (the account page's tests have one per flow) */
const USER_NAMES = [
  'maker', 'other', 'twofactor', 'revoked', 'tabs', 'busy', 'previews', 'player',
  'enrol', 'keys', 'devices', 'password', 'phone', 'shots', 'passkeys',
] as const;

export interface Server {
  url: string;
  admin: Account;
  /** a second administrator, for the admin console's tests (they turn on its 2FA) */
  steward: Account;
  /** plain users, one per purpose so tests do not share queues */
  users: Record<(typeof USER_NAMES)[number], Account>;
  /** an administrator of its own for the passkey tests (they give it a second factor) */
  passkeyAdmin: Account;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function run(script: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

function finished(child: ChildProcess): Promise<void> {
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`celforge exited ${code}: ${output}`)))));
}

/** A Celforge server of its own: `port` and extra `env` for specs that configure it (single sign-on). */
export async function startServer(options: { port?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ server: Server; stop: () => Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'celforge-e2e-'));
  const port = options.port ?? (await freePort());
  const admin = { email: 'admin@celforge.test', password: PASSWORD };
  const steward = { email: 'steward@celforge.test', password: PASSWORD };
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    CELFORGE_DATA_DIR: dataDir,
    CELFORGE_HOST: '127.0.0.1',
    CELFORGE_PORT: String(port),
    // localhost, not 127.0.0.1: a secure context whose host name can be a WebAuthn RP ID (passkeys)
    CELFORGE_PUBLIC_URL: `http://localhost:${port}`,
    CELFORGE_LOG_LEVEL: 'warn',
    // Progress slow enough to be seen; limits wide enough for one address running a whole suite.
    CELFORGE_PREVIEW_STEP_MS: '120',
    CELFORGE_RATE_LIMITS: 'signin-ip=2000/60s,signin-account=2000/60s,anonymous=5000/60s,read=5000/60s,write=2000/60s,generation=2000/60s',
    ...options.env,
  };
  const names = USER_NAMES;
  const users = Object.fromEntries(names.map((name) => [name, { email: `${name}@celforge.test`, password: PASSWORD }])) as Server['users'];
  const passkeyAdmin = { email: 'passkey-admin@celforge.test', password: PASSWORD };
  const admins = [admin, steward, passkeyAdmin].map((account) => account.email).join(',');
  await finished(run('e2e/seed.ts', [PASSWORD, admins, ...names.map((name) => users[name].email)], env));

  const child = run('src/cli.ts', ['serve'], env);
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const url = `http://localhost:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`celforge serve exited: ${output}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/api/anime/ready`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`celforge serve did not start: ${output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return {
    server: { url, admin, steward, passkeyAdmin, users },
    stop: async () => {
      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.kill('SIGTERM');
      // A clean stop waits for open event streams; the data dir goes anyway.
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** What the browser said about the Content-Security-Policy (must stay empty). */
const CSP_MESSAGE = /Content Security Policy|Refused to (load|execute|apply|connect|frame)/i;

export const test = base.extend<{ cspViolations: string[] }, { server: Server }>({
  server: [
    async ({}, use) => {
      const { server, stop } = await startServer();
      await use(server);
      await stop();
    },
    { scope: 'worker', timeout: 120_000 },
  ],
  baseURL: async ({ server }, use) => use(server.url),
  cspViolations: async ({}, use) => use([]),
  context: async ({ context, cspViolations }, use) => {
    context.on('page', (page) => watchCsp(page, cspViolations));
    await use(context);
  },
  page: async ({ page, cspViolations }, use) => {
    watchCsp(page, cspViolations);
    await use(page);
    expect(cspViolations, 'no CSP violation in the console').toEqual([]);
  },
});

export function watchCsp(page: Page, into: string[]) {
  page.on('console', (message) => {
    if (CSP_MESSAGE.test(message.text())) into.push(message.text());
  });
}

export { expect };

/** Signs in through the form (and its 2FA step when `code` is given). */
export async function signIn(page: Page, account: Account, code?: () => Promise<string>) {
  await page.getByLabel('Email').fill(account.email);
  await page.getByLabel('Password').fill(account.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  if (code) {
    await page.getByLabel('Authentication code').fill(await code());
    await page.getByRole('button', { name: 'Verify' }).click();
  }
}

/** axe: no serious or critical violation on what the page shows now. */
export async function expectAccessible(page: Page, label: string) {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(bad.map((v) => `${label}: ${v.id} (${v.impact}) ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)).toEqual([]);
}

/** An access token for API calls made by the test itself (a session of its own). */
export async function apiToken(request: APIRequestContext, server: Server, account: Account, otp?: string): Promise<string> {
  const response = await request.post(`${server.url}/api/auth/login`, { data: { ...account, ...(otp && { otp }) } });
  expect(response.status(), await response.text()).toBe(200);
  return ((await response.json()) as { access_token: string }).access_token;
}

/** The page has no horizontal scroll. */
export async function expectNoHorizontalScroll(page: Page, label: string) {
  const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  expect(widths.scroll, `${label}: page wider than the screen`).toBeLessThanOrEqual(widths.client);
}
