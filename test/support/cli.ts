import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

let sharedSecrets: Record<string, string> | undefined;

/**
 * Scale-out mode refuses to start without the secrets all instances share; test processes on
 * PostgreSQL get fresh ones (made once per test file, so restarts keep them). Pass '' to unset one.
 */
export function testSharedSecrets(): Record<string, string> {
  sharedSecrets ??= {
    CELFORGE_SIGNING_KEY: generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    CELFORGE_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    CELFORGE_URL_SIGNING_KEY: randomBytes(32).toString('base64'),
  };
  return sharedSecrets;
}

/** Environment for a child process on the given storage, without the caller's Celforge settings. */
export function cliEnv(storage: { dataDir: string; databaseUrl?: string }, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('CELFORGE_') && name !== 'DATABASE_URL' && name !== 'REDIS_URL') env[name] = value;
  }
  return {
    ...env,
    CELFORGE_DATA_DIR: storage.dataDir,
    ...(storage.databaseUrl && { DATABASE_URL: storage.databaseUrl, ...testSharedSecrets() }),
    CELFORGE_LOG_LEVEL: 'silent',
    ...extra,
  };
}

/** Runs `celforge <args>` from the sources, as a separate process. */
export function runCli(
  args: string[],
  storage: { dataDir: string; databaseUrl?: string },
  options: { env?: Record<string, string>; stdin?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
      cwd: ROOT,
      env: cliEnv(storage, options.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 90_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.stdin ?? '');
  });
}
