import { randomUUID } from 'node:crypto';
import type { Store } from '../../src/db/database.js';
import { loadSigningKeys } from '../../src/identity/keys.js';
import { insertSession, insertUser } from '../../src/identity/store.js';
import { issueAccessToken } from '../../src/identity/tokens.js';
import { testSharedSecrets } from '../support/cli.js';
import { startCelforge, type Entry, type RunningProcess } from '../support/server.js';

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
  const { token } = await issueAccessToken(keys, { userId, email, role: 'user', sessionId }, 900); // within CELFORGE_ACCESS_TOKEN_TTL (15m): longer tokens are refused
  return token;
}

export interface WorkerProcess extends RunningProcess {
  id: string;
}

/** Starts `celforge worker` as a real process and waits for its ready line. */
export async function startWorker(storage: { dataDir: string; databaseUrl?: string }, env: Record<string, string>, entry?: Entry): Promise<WorkerProcess> {
  const { match, ...running } = await startCelforge(storage, { args: ['worker'], env, entry, ready: /celforge worker (\S+) ready/ });
  return { id: match[1]!, ...running };
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
