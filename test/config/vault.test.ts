import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { openVaultSecrets, VaultError, type VaultOptions, type VaultSecrets } from '../../src/config/vault.js';
import { startVaultDouble, type VaultDouble, type VaultDoubleOptions } from '../doubles/vault.js';

const TOKEN = 'hvs.token-3f9a7c1e5b';
const ROLE_ID = 'celforge-api';
const SECRET_ID = 'secret-id-8d2b6f0a4e';
const ENTRY = {
  database_url: 'postgres://celforge:db-pass-91c3@db.internal/celforge',
  redis_url: 'redis://:redis-pass-77e1@cache.internal:6379',
  signing_key: '{"kty":"OKP","crv":"Ed25519","d":"signing-d-5a0f"}',
  encryption_key: 'ZW5jcnlwdGlvbi1rZXktYjQ0Mg==',
  url_signing_key: 'dXJsLXNpZ25pbmctYzkxMA==',
  metrics_token: 'metrics-token-e83d',
};

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function vault(options: VaultDoubleOptions): Promise<VaultDouble> {
  const double = await startVaultDouble(options);
  cleanups.push(() => double.close());
  return double;
}

async function open(options: VaultOptions): Promise<VaultSecrets> {
  const secrets = await openVaultSecrets(options);
  cleanups.push(() => secrets.close());
  return secrets;
}

/** Awaits a failure, checks it is a VaultError that leaks nothing, and returns it. */
async function failure(promise: Promise<unknown>, double?: VaultDouble): Promise<VaultError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VaultError);
  expectNoSecrets(error, double?.issuedTokens ?? []);
  return error as VaultError;
}

function expectNoSecrets(error: unknown, issuedTokens: string[]): void {
  const text = [String(error), (error as Error).stack ?? '', JSON.stringify(error)].join('\n');
  for (const secret of [TOKEN, SECRET_ID, ...issuedTokens, ...Object.values(ENTRY)]) {
    expect(text).not.toContain(secret);
  }
}

function called(double: VaultDouble, method: string, path: string): number {
  return double.calls.filter((c) => c.method === method && c.path === path).length;
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('openVaultSecrets: reading the KV v2 entry', () => {
  it('with a token: checks the token, then reads secret/data/celforge', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN] });
    const secrets = await open({ addr: double.addr, token: TOKEN });

    for (const [name, value] of Object.entries(ENTRY)) expect(secrets.get(name)).toBe(value);
    expect(secrets.keys().sort()).toEqual(Object.keys(ENTRY).sort());
    expect(secrets.get('no_such_key')).toBeUndefined();
    expect(double.calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      'GET /v1/auth/token/lookup-self',
      'GET /v1/secret/data/celforge',
    ]);
    expect(double.calls.every((c) => c.withToken)).toBe(true);
  });

  it('with AppRole: logs in, then reads with the issued token', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, roles: { [ROLE_ID]: SECRET_ID } });
    const secrets = await open({ addr: double.addr, roleId: ROLE_ID, secretId: SECRET_ID });

    expect(secrets.get('database_url')).toBe(ENTRY.database_url);
    expect(double.calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      'POST /v1/auth/approle/login',
      'GET /v1/secret/data/celforge',
    ]);
    expect(double.calls[0]?.withToken).toBe(false);
    expect(double.issuedTokens).toHaveLength(1);
  });

  it('honours mount and path, including nested paths', async () => {
    const double = await vault({ mount: 'kv', secrets: { 'apps/celforge': { metrics_token: 'm' } }, tokens: [TOKEN] });
    const secrets = await open({ addr: double.addr, token: TOKEN, mount: 'kv', path: 'apps/celforge' });
    expect(secrets.get('metrics_token')).toBe('m');
    expect(called(double, 'GET', '/v1/kv/data/apps/celforge')).toBe(1);
  });

  it('turns numbers and booleans into strings, objects into JSON, drops nulls, lower-cases keys', async () => {
    const entry = { port: 5432, enabled: true, jwk: { kty: 'OKP', crv: 'Ed25519' }, list: ['a', 'b'], nothing: null, REDIS_URL: 'redis://r' };
    const double = await vault({ secrets: { celforge: entry }, tokens: [TOKEN] });
    const secrets = await open({ addr: double.addr, token: TOKEN });

    expect(secrets.get('port')).toBe('5432');
    expect(secrets.get('enabled')).toBe('true');
    expect(JSON.parse(secrets.get('jwk')!)).toEqual(entry.jwk);
    expect(secrets.get('list')).toBe('["a","b"]');
    expect(secrets.get('nothing')).toBeUndefined();
    expect(secrets.get('redis_url')).toBe('redis://r');
    expect(secrets.keys()).not.toContain('nothing');
  });

  it('refuses an entry with the same key twice in different cases', async () => {
    const double = await vault({ secrets: { celforge: { metrics_token: 'a', METRICS_TOKEN: 'b' } }, tokens: [TOKEN] });
    const error = await failure(openVaultSecrets({ addr: double.addr, token: TOKEN }));
    expect(error.message).toBe('vault: secret/data/celforge has the key "metrics_token" twice in different cases');
  });

  it('refresh() reads the newest version; a failed refresh keeps the values it had', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN] });
    const secrets = await open({ addr: double.addr, token: TOKEN });

    expect(double.setSecret('celforge', { ...ENTRY, metrics_token: 'rotated' })).toBe(2);
    await secrets.refresh();
    expect(secrets.get('metrics_token')).toBe('rotated');

    double.forbid('celforge');
    await failure(secrets.refresh());
    expect(secrets.get('metrics_token')).toBe('rotated');
  });
});

describe('openVaultSecrets: errors an operator can act on', () => {
  it('a wrong secret_id is refused as Vault does (400 invalid role or secret ID), without echoing it', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, roles: { [ROLE_ID]: SECRET_ID } });
    const error = await failure(openVaultSecrets({ addr: double.addr, roleId: ROLE_ID, secretId: 'wrong-secret-id-0c7e' }));
    expect(error.status).toBe(400);
    expect(error.message).toBe('vault: invalid request logging in with AppRole (400): invalid role or secret ID');
    expect(error.message).not.toContain('wrong-secret-id-0c7e');
  });

  it('an unknown token: permission denied (403)', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: ['hvs.someone-else'] });
    const error = await failure(openVaultSecrets({ addr: double.addr, token: TOKEN }));
    expect(error.status).toBe(403);
    expect(error.message).toBe('vault: permission denied looking up the token (403)');
  });

  it('a token whose policy does not allow the read: permission denied naming the path', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN] });
    double.forbid('celforge');
    const error = await failure(openVaultSecrets({ addr: double.addr, token: TOKEN }));
    expect(error.message).toBe('vault: permission denied reading secret/data/celforge (403)');
  });

  it('a missing entry: 404 naming the path', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN] });
    const error = await failure(openVaultSecrets({ addr: double.addr, token: TOKEN, path: 'celforge-staging' }));
    expect(error.status).toBe(404);
    expect(error.message).toBe('vault: no secret at secret/data/celforge-staging (404): create it, or check the mount and path');
  });

  it('a deleted entry: 404 saying which version was deleted', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN] });
    double.deleteSecret('celforge');
    const error = await failure(openVaultSecrets({ addr: double.addr, token: TOKEN }));
    expect(error.message).toMatch(/^vault: no secret at secret\/data\/celforge \(404\): version 1 was deleted at \d{4}-/);
  });

  it('a sealed Vault: 503 with Vault\'s reason', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN] });
    double.failNext(503, ['Vault is sealed']);
    const error = await failure(openVaultSecrets({ addr: double.addr, token: TOKEN }));
    expect(error.message).toBe('vault: sealed or down for maintenance looking up the token (503): Vault is sealed');
  });

  it('credentials echoed in Vault\'s error text are redacted', async () => {
    const double = await vault({ roles: { [ROLE_ID]: SECRET_ID } });
    double.failNext(400, [`secret_id ${SECRET_ID} is not valid`]);
    const error = await failure(openVaultSecrets({ addr: double.addr, roleId: ROLE_ID, secretId: SECRET_ID }));
    expect(error.message).toBe('vault: invalid request logging in with AppRole (400): secret_id [redacted] is not valid');
  });

  it('an address nobody listens on fails fast, naming the address', async () => {
    const port = await closedPort();
    const started = Date.now();
    const error = await failure(openVaultSecrets({ addr: `http://127.0.0.1:${port}`, token: TOKEN, timeoutMs: 5000 }));
    expect(error.message).toBe(`vault: unreachable at http://127.0.0.1:${port}: connection refused (ECONNREFUSED)`);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('a Vault that never answers times out after timeoutMs', async () => {
    const double = await vault({ hang: true, tokens: [TOKEN] });
    const started = Date.now();
    const error = await failure(openVaultSecrets({ addr: double.addr, token: TOKEN, timeoutMs: 300 }));
    const elapsed = Date.now() - started;
    expect(error.message).toBe(`vault: unreachable at ${double.addr}: timed out after 300 ms`);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(3000);
    expect(double.calls).toHaveLength(1);
  });

  it.each<[string, Partial<VaultOptions>, string]>([
    ['a non-URL address', { addr: 'vault.internal' }, 'vault: the Vault address is not a URL (expected e.g. https://vault.example:8200)'],
    ['a non-http address', { addr: 'ftp://vault.internal' }, 'vault: the Vault address must be http or https, not ftp:'],
    ['an address with a password', { addr: 'https://ops:pw-1@vault.internal' }, 'vault: the Vault address must not contain a user name or password'],
    ['no credentials', { token: undefined }, 'vault: no credentials: give a token, or an AppRole role id and secret id'],
    ['a token and AppRole', { roleId: ROLE_ID, secretId: SECRET_ID }, 'vault: give either a token or an AppRole role id and secret id, not both'],
    ['a role id alone', { token: undefined, roleId: ROLE_ID }, 'vault: AppRole needs both a role id and a secret id'],
    ['a secret id alone', { token: undefined, secretId: SECRET_ID }, 'vault: AppRole needs both a role id and a secret id'],
    ['a path leaving the mount', { path: '../sys/raw' }, 'vault: path "../sys/raw" is not a valid Vault path'],
    ['a zero timeout', { timeoutMs: 0 }, 'vault: timeoutMs must be a positive number'],
  ])('refuses %s before any request', async (_, override, message) => {
    const error = await failure(openVaultSecrets({ addr: 'http://127.0.0.1:1', token: TOKEN, ...override }));
    expect(error.message).toBe(message);
  });
});

describe('openVaultSecrets: namespaces', () => {
  it('sends X-Vault-Namespace on every request and names the namespace in errors', async () => {
    const double = await vault({ namespace: 'studio/prod', secrets: { celforge: ENTRY }, roles: { [ROLE_ID]: SECRET_ID } });
    const secrets = await open({ addr: double.addr, roleId: ROLE_ID, secretId: SECRET_ID, namespace: 'studio/prod' });
    expect(secrets.get('signing_key')).toBe(ENTRY.signing_key);
    expect(double.calls.length).toBe(2);
    expect(double.calls.every((c) => c.namespace === 'studio/prod')).toBe(true);

    double.forbid('celforge');
    const error = await failure(secrets.refresh(), double);
    expect(error.message).toBe('vault: permission denied reading studio/prod/secret/data/celforge (403)');
  });

  it('without the namespace the AppRole login route is not found', async () => {
    const double = await vault({ namespace: 'studio/prod', secrets: { celforge: ENTRY }, roles: { [ROLE_ID]: SECRET_ID } });
    const error = await failure(openVaultSecrets({ addr: double.addr, roleId: ROLE_ID, secretId: SECRET_ID }));
    expect(error.message).toMatch(/^vault: not found logging in with AppRole \(404\): no handler for route/);
  });
});

describe('openVaultSecrets: keeping the token alive', () => {
  it('renews a short renewable token before it expires, so reads keep working past the first TTL', async () => {
    const control = 'hvs.control-never-renewed';
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN, control], tokenTtlSeconds: 2 });
    const secrets = await open({ addr: double.addr, token: TOKEN });

    // renewal is due at 2/3 of the 2 s lease; by 2.6 s the original lease is over
    await sleep(2600);
    expect(called(double, 'POST', '/v1/auth/token/renew-self')).toBeGreaterThanOrEqual(1);
    await secrets.refresh();
    expect(secrets.get('database_url')).toBe(ENTRY.database_url);

    // The double really expires tokens: the one nobody renewed is gone.
    const lookup = await fetch(`${double.addr}/v1/auth/token/lookup-self`, { headers: { 'x-vault-token': control } });
    expect(lookup.status).toBe(403);
  });

  it('with AppRole, a renewal refused because the token was revoked leads to a new login', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, roles: { [ROLE_ID]: SECRET_ID }, tokenTtlSeconds: 1 });
    const secrets = await open({ addr: double.addr, roleId: ROLE_ID, secretId: SECRET_ID });
    double.revokeToken(double.issuedTokens[0]!);

    await sleep(1200);
    expect(called(double, 'POST', '/v1/auth/token/renew-self')).toBeGreaterThanOrEqual(1);
    expect(double.issuedTokens.length).toBeGreaterThanOrEqual(2);
    await secrets.refresh();
    expect(secrets.get('redis_url')).toBe(ENTRY.redis_url);
  });

  it('with AppRole, a read refused because the token was revoked logs in again and reads once more', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, roles: { [ROLE_ID]: SECRET_ID } });
    const secrets = await open({ addr: double.addr, roleId: ROLE_ID, secretId: SECRET_ID });
    double.revokeToken(double.issuedTokens[0]!);
    double.setSecret('celforge', { ...ENTRY, metrics_token: 'after-relogin' });

    await secrets.refresh();
    expect(secrets.get('metrics_token')).toBe('after-relogin');
    expect(called(double, 'POST', '/v1/auth/approle/login')).toBe(2);
  });

  it('with a plain token, a revoked token cannot be replaced: refresh fails with 403', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN] });
    const secrets = await open({ addr: double.addr, token: TOKEN });
    double.revokeToken(TOKEN);
    const error = await failure(secrets.refresh());
    expect(error.message).toBe('vault: permission denied reading secret/data/celforge (403)');
    expect(secrets.get('database_url')).toBe(ENTRY.database_url);
  });

  it('reports a failed background renewal to onError, without secrets', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN], tokenTtlSeconds: 1 });
    const reported: VaultError[] = [];
    await open({ addr: double.addr, token: TOKEN, onError: (e) => reported.push(e) });
    double.revokeToken(TOKEN);

    await sleep(1200);
    expect(reported.map((e) => e.message)).toEqual(['vault: permission denied renewing the token (403)']);
    for (const error of reported) expectNoSecrets(error, []);
  });

  it('does not schedule renewal for a token that never expires', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN] });
    await open({ addr: double.addr, token: TOKEN });
    await sleep(300);
    expect(called(double, 'POST', '/v1/auth/token/renew-self')).toBe(0);
  });

  it('a lease longer than a timer can hold does not renew in a loop', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN], tokenTtlSeconds: 60 * 24 * 3600 });
    await open({ addr: double.addr, token: TOKEN });
    await sleep(300);
    expect(called(double, 'POST', '/v1/auth/token/renew-self')).toBe(0);
  });

  it('close() stops renewal', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN], tokenTtlSeconds: 1 });
    const secrets = await openVaultSecrets({ addr: double.addr, token: TOKEN });
    secrets.close();
    await sleep(1000);
    expect(called(double, 'POST', '/v1/auth/token/renew-self')).toBe(0);
  });

  it('the renewal timer does not keep a process alive, with or without close()', async () => {
    const double = await vault({ secrets: { celforge: ENTRY }, tokens: [TOKEN], tokenTtlSeconds: 3600 });
    const moduleUrl = pathToFileURL(fileURLToPath(new URL('../../src/config/vault.ts', import.meta.url))).href;
    for (const closeIt of [false, true]) {
      const script = [
        `const { openVaultSecrets } = await import(${JSON.stringify(moduleUrl)});`,
        `const secrets = await openVaultSecrets({ addr: process.env.VAULT_ADDR, token: process.env.VAULT_TOKEN });`,
        closeIt ? 'secrets.close();' : '',
        `process.stdout.write(secrets.get('metrics_token') ?? 'missing');`,
      ].join('\n');
      const result = await runNode(['--import', 'tsx', '--input-type=module', '-e', script], {
        VAULT_ADDR: double.addr,
        VAULT_TOKEN: TOKEN,
      });
      expect(result).toEqual({ code: 0, stdout: ENTRY.metrics_token, timedOut: false });
    }
  });
});

/** Runs node in the project directory; gives up (and kills it) after 10 s. */
function runNode(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill();
    }, 10_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, timedOut });
    });
  });
}
