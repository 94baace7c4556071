import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { Store } from '../../src/db/database.js';
import { loadSigningKeys } from '../../src/identity/keys.js';
import { insertSession, insertUser } from '../../src/identity/store.js';
import { issueAccessToken } from '../../src/identity/tokens.js';
import { ROOT, cliEnv, testSharedSecrets } from '../support/cli.js';

/**
 * A user, a live session and a token, written straight into a server's store. The token is signed
 * with the key the processes on this storage use: on PostgreSQL the shared scale-out key that
 * `cliEnv` hands them, on SQLite the key in the data dir.
 */
export async function mintToken(store: Store, storage: { dataDir: string; databaseUrl?: string }): Promise<string> {
  const now = new Date();
  const userId = randomUUID();
  const sessionId = randomUUID();
  const email = `proc-${userId.slice(0, 8)}@example.test`;
  await insertUser(store.db, {
    id: userId,
    email,
    password_hash: 'not-a-password-hash',
    role: 'user',
    disabled: 0,
    totp_secret: null,
    totp_enabled: 0,
    totp_last_step: null,
    created_at: now.toISOString(),
    updated_at: now.toISOString(),
  });
  await insertSession(store.db, {
    id: sessionId,
    user_id: userId,
    created_at: now.toISOString(),
    last_seen_at: now.toISOString(),
    expires_at: new Date(now.getTime() + 3_600_000).toISOString(),
    revoked_at: null,
    revoked_reason: null,
    mfa_at: null,
    user_agent: null,
    ip: null,
  });
  const signingKey = storage.databaseUrl ? testSharedSecrets().CELFORGE_SIGNING_KEY : undefined;
  const keys = loadSigningKeys({ dataDir: storage.dataDir, signingKey });
  const { token } = await issueAccessToken(keys, { userId, email, role: 'user', sessionId }, 3600);
  return token;
}

export interface WorkerProcess {
  id: string;
  process: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `celforge worker` as a real process and waits for its ready line. */
export function startWorker(storage: { dataDir: string; databaseUrl?: string }, env: Record<string, string>): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'worker'], {
    cwd: ROOT,
    env: cliEnv(storage, env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`worker did not start:\n${output}`));
    }, 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /celforge worker (\S+) ready/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ id: match[1]!, process: child, output: () => output, stop });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code}:\n${output}`));
    });
  });
}

/** Job ids a worker's log says it rendered. */
export function renderedBy(output: string): string[] {
  const ids: string[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: string; job?: string };
      if (entry.msg === 'job rendered' && entry.job) ids.push(entry.job);
    } catch {
      // not a log line
    }
  }
  return ids;
}
