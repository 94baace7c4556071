import { parseArgs } from 'node:util';
import { pino } from 'pino';
import type { FastifyInstance } from 'fastify';
import { checkExpected, checkpointKey, parseExpectedHead, readCheckpoints, type ExpectedRow } from './audit/anchor.js';
import { loadUrlSigningKey } from './config/local-secrets.js';
import { exportTrail, pruneTrail, verifyTrail } from './audit/service.js';
import { ConfigError, parseDuration, type Config } from './config/config.js';
import { completeSecrets, resolveConfig } from './config/secrets.js';
import { VaultError } from './config/vault.js';
import { migrate, openStore } from './db/database.js';
import { HttpProblem } from './http/problem.js';
import { HOOKS_MS, shutDown, stopOnSignal } from './http/shutdown.js';
import { rotateSigningKeys } from './identity/keys.js';

// The service itself is loaded only by the commands that run it, so `migrate`, `keys` and `audit` start fast.
type Command = (args: string[], config: Config) => Promise<number>;

const USAGE = `usage: celforge <command>

  serve [--only api|auth|worker]   run the service (default: everything in one process)
  worker                           render jobs only (BullMQ on REDIS_URL, else the store's queue)
  migrate                          bring the store's schema up to date
  keys rotate                      make a new token signing key; the old one still verifies
  user add --email E --role admin|user   add a user (password read from stdin)
  user list                        list users
  user disable --email E           disable a user; their sessions end
  user role --email E --role R     change a user's role
  token --email E [--ttl 15m]      mint an access token on a new session, for scripts
  audit verify                     check the audit trail's hash chain (exit 1 names the first bad row)
  audit export [--from T] [--to T] the audit trail as JSON lines (T: ISO-8601 time)
  audit prune [--days N]           delete audit rows older than the retention (CELFORGE_AUDIT_RETENTION_DAYS)
  assets migrate --to s3           copy the data dir's results to the CELFORGE_S3_* bucket (resumable, verified)
`;

async function serve(args: string[], config: Config): Promise<number> {
  const { values } = parseArgs({ args, options: { only: { type: 'string' } }, strict: true });
  if (values.only !== undefined && !['api', 'auth', 'worker'].includes(values.only)) {
    throw new ConfigError(`--only: "${values.only}" is not one of api, auth, worker`);
  }
  if (values.only === 'worker') return worker([], config);
  const only = values.only === 'api' || values.only === 'auth' ? values.only : undefined;
  const portSet = Boolean(process.env.CELFORGE_PORT || process.env.CELFORGE_PORT_FILE);
  if (only === 'auth' && !portSet) config = { ...config, port: 8088 };
  const { buildApp } = await import('./app.js');
  const app = await buildApp(config, { only });
  if (app.hasRoute({ method: 'POST', url: '/api/auth/login' })) {
    const admin = await app.services.identity.ensureFirstAdmin();
    // Shown once on the terminal, never written to the log.
    if (admin?.generatedPassword) {
      process.stdout.write(`celforge: first start: admin ${admin.email} created with password ${admin.generatedPassword} (shown once; change it)\n`);
    } else if (admin) {
      process.stdout.write(`celforge: first start: admin ${admin.email} created from CELFORGE_ADMIN_EMAIL/_PASSWORD\n`);
    }
  }
  const graceMs = config.shutdownGraceSeconds * 1000;
  stopOnSignal(app.log, graceMs + HOOKS_MS, async (signal) => {
    await shutDown(app, { signal, graceMs });
    closeSecrets();
  });
  const address = await app.listen({ host: config.host, port: config.port });
  if (config.logLevel === 'silent') process.stdout.write(`celforge listening on ${address}\n`);
  return -1;
}

/** A job worker without HTTP: for other machines in scale-out, or beside an API-only server. */
async function worker(args: string[], config: Config): Promise<number> {
  parseArgs({ args, options: {}, strict: true });
  const store = openStore(config);
  await migrate(store);
  const log = pino({ level: config.logLevel === 'silent' ? 'silent' : config.logLevel });
  const { createProduction } = await import('./production/runtime.js');
  const { housekeepingFor } = await import('./lifecycle/housekeeping.js');
  const { StorageQuota } = await import('./limits/storage-quota.js');
  const production = await createProduction(config, store, log, {
    worker: true,
    housekeeping: housekeepingFor(store, config.assets, log),
    resultQuota: new StorageQuota(store, config.assets.storageQuotaBytes),
  });
  await production.start();
  // The worker's timers do not hold the process (inside `serve` the server does): with the store's
  // queue nothing else would, so this does until a signal.
  const alive = setInterval(() => {}, 2 ** 30);
  // a renderer that does not stop when asked must not keep the process alive past the grace period
  stopOnSignal(log, config.shutdownGraceSeconds * 1000, async (signal) => {
    clearInterval(alive);
    log.info({ signal }, 'worker shutting down: no new jobs, running ones go back to the queue');
    await production.stop();
    await store.close();
  });
  process.stdout.write(`celforge worker ${production.worker!.id} ready (${config.redisUrl ? 'bullmq' : 'store queue'}, concurrency ${config.workerConcurrency})\n`);
  return -1;
}

async function migrateCommand(_args: string[], config: Config): Promise<number> {
  const store = openStore(config);
  try {
    const { results } = await migrate(store);
    for (const result of results ?? []) process.stdout.write(`${result.migrationName}: ${result.status}\n`);
    if (!results?.length) process.stdout.write('schema is up to date\n');
    return 0;
  } finally {
    await store.close();
  }
}

async function keys(args: string[], config: Config): Promise<number> {
  if (args[0] !== 'rotate') {
    process.stderr.write('usage: celforge keys rotate\n');
    return 2;
  }
  const set = rotateSigningKeys(config.dataDir);
  process.stdout.write(`new signing key ${set.current.kid}; ${set.previous ? `previous ${set.previous.kid} still verifies` : 'no previous key'}\n`);
  return 0;
}

function isoOption(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const time = new Date(value);
  if (Number.isNaN(time.getTime())) throw new ConfigError(`--${name}: "${value}" is not an ISO-8601 time`);
  return time.toISOString();
}

async function audit(args: string[], config: Config): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'verify' && sub !== 'export' && sub !== 'prune') {
    process.stderr.write('usage: celforge audit verify [--expect-head SEQ:HASH] [--checkpoints FILE] | export [--from ISO] [--to ISO] | prune [--days N]\n');
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options:
      sub === 'export'
        ? { from: { type: 'string' }, to: { type: 'string' } }
        : sub === 'prune'
          ? { days: { type: 'string' } }
          : { 'expect-head': { type: 'string', multiple: true }, checkpoints: { type: 'string' } },
    strict: true,
  });
  const store = openStore(config);
  try {
    await migrate(store);
    if (sub === 'verify') {
      const expected = anchorsOf(values as { 'expect-head'?: string[]; checkpoints?: string }, config);
      const result = await verifyTrail(store);
      const problem = result.ok ? await checkExpected(store, result.head, expected.rows) : result.problem;
      if (problem || expected.problem) {
        process.stderr.write(`audit trail broken: ${expected.problem ?? problem}\n`);
        return 1;
      }
      const anchored = expected.rows.length > 0 ? `; ${expected.rows.length} outside anchors hold` : '';
      process.stdout.write(
        `${result.rows} rows, chain intact (head row ${Number(result.head.seq)}, hash ${result.head.hash}${anchored})\n` +
          `keep this to check later: --expect-head ${Number(result.head.seq)}:${result.head.hash}\n`,
      );
      return 0;
    }
    if (sub === 'export') {
      const filter = { from: isoOption('from', values.from as string | undefined), to: isoOption('to', values.to as string | undefined) };
      let lines: string[] = [];
      const write = (text: string) => new Promise<void>((resolve, reject) => process.stdout.write(text, (error) => (error ? reject(error) : resolve())));
      for await (const row of exportTrail(store, filter)) {
        lines.push(JSON.stringify(row));
        if (lines.length >= 500) {
          await write(`${lines.join('\n')}\n`);
          lines = [];
        }
      }
      if (lines.length > 0) await write(`${lines.join('\n')}\n`);
      return 0;
    }
    const daysText = values.days as string | undefined;
    if (daysText !== undefined && !/^\d{1,5}$/.test(daysText)) throw new ConfigError(`--days: "${daysText}" is not a whole number of days`);
    const days = daysText === undefined ? config.auditRetentionDays : Number(daysText);
    if (days <= 0) {
      process.stdout.write('retention is off (0 days): nothing pruned\n');
      return 0;
    }
    const result = await pruneTrail(store, days);
    process.stdout.write(
      result.deleted > 0 ? `pruned ${result.deleted} rows older than ${days} days (through row ${result.throughSeq})\n` : `nothing older than ${days} days\n`,
    );
    return 0;
  } finally {
    await store.close();
  }
}

/** The rows `audit verify` must find as they were recorded outside the database. */
function anchorsOf(values: { 'expect-head'?: string[]; checkpoints?: string }, config: Config): { rows: ExpectedRow[]; problem?: string } {
  const rows: ExpectedRow[] = [];
  for (const text of values['expect-head'] ?? []) {
    const row = parseExpectedHead(text);
    if (!row) throw new ConfigError('--expect-head: give SEQ:HASH as printed by `audit verify`');
    rows.push(row);
  }
  if (values.checkpoints === undefined) return { rows };
  // the key `serve` uses: given, or (embedded) the one it made in the data dir
  const urlSigningKey = config.secrets.urlSigningKey ?? (config.databaseUrl ? undefined : completeSecrets(config).secrets.urlSigningKey);
  if (!urlSigningKey) throw new ConfigError('--checkpoints: needs CELFORGE_URL_SIGNING_KEY, the key the servers sign with');
  const key = checkpointKey(loadUrlSigningKey({ dataDir: config.dataDir, urlSigningKey }));
  let read;
  try {
    read = readCheckpoints(values.checkpoints, key);
  } catch {
    throw new ConfigError(`--checkpoints: cannot read ${values.checkpoints}`);
  }
  return { rows: [...rows, ...read.checkpoints], problem: read.problem };
}

/** Commands that sign tokens, encrypt secrets or sign URLs: they need the shared secrets. */
const NEEDS_SECRETS = new Set(['serve', 'worker', 'token']);

let closeSecrets: () => void = () => {};
/** Runs `work` with the app's services (no listener), and closes everything after. */
async function withServices(config: Config, work: (app: FastifyInstance) => Promise<number>): Promise<number> {
  const { buildApp } = await import('./app.js');
  const app = await buildApp(config);
  try {
    return await work(app);
  } catch (error) {
    if (error instanceof HttpProblem) {
      process.stderr.write(`celforge: ${error.detail ?? error.slug}\n`);
      return 1;
    }
    throw error;
  } finally {
    await app.close();
  }
}

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk) => (text += chunk));
    process.stdin.on('end', () => resolve(text));
    process.stdin.on('error', reject);
  });
}

function parseRole(text: string | undefined): 'admin' | 'user' {
  if (text !== 'admin' && text !== 'user') throw new ConfigError('--role: must be admin or user');
  return text;
}

async function user(args: string[], config: Config): Promise<number> {
  const [action, ...rest] = args;
  const { values } = parseArgs({ args: rest, options: { email: { type: 'string' }, role: { type: 'string' } }, strict: true });
  const needEmail = () => {
    if (!values.email) throw new ConfigError(`user ${action}: --email is required`);
    return values.email;
  };
  switch (action) {
    case 'add': {
      const email = needEmail();
      const role = parseRole(values.role ?? 'user');
      const password = (await readStdin()).split(/\r?\n/)[0] ?? '';
      return withServices(config, async (app) => {
        const created = await app.services.identity.createUser({ email, password, role });
        process.stdout.write(`added ${created.email} (${created.role}) ${created.id}\n`);
        return 0;
      });
    }
    case 'list':
      return withServices(config, async (app) => {
        let after: string | undefined;
        for (;;) {
          const page = await app.services.identity.listUsers({ after, limit: 200 });
          for (const u of page) {
            process.stdout.write(`${u.email}\t${u.role}\t${u.disabled ? 'disabled' : 'active'}\t${u.totp_enabled ? '2fa' : 'no-2fa'}\t${u.id}\n`);
          }
          if (page.length < 200) return 0;
          after = page[page.length - 1]!.email;
        }
      });
    case 'disable':
    case 'role': {
      const email = needEmail();
      const change = action === 'disable' ? { disabled: true } : { role: parseRole(values.role) };
      return withServices(config, async (app) => {
        const found = await app.services.identity.findUserByEmail(email);
        if (!found) throw new HttpProblem(404, 'not-found', 'no such user');
        const updated = await app.services.identity.updateUser(found.id, change, { id: 'cli' });
        process.stdout.write(`${updated.email}: ${updated.role}, ${updated.disabled ? 'disabled' : 'active'}\n`);
        return 0;
      });
    }
    default:
      process.stderr.write('usage: celforge user add|list|disable|role …\n');
      return 2;
  }
}

async function token(args: string[], config: Config): Promise<number> {
  const { values } = parseArgs({ args, options: { email: { type: 'string' }, ttl: { type: 'string' } }, strict: true });
  if (!values.email) throw new ConfigError('token: --email is required');
  const ttl = values.ttl ? parseDuration('--ttl', values.ttl) : config.accessTokenTtlSeconds;
  // Revocations are remembered for the configured token lifetime; a longer token could outlive them.
  if (ttl > config.accessTokenTtlSeconds) throw new ConfigError(`--ttl: at most CELFORGE_ACCESS_TOKEN_TTL (${config.accessTokenTtlSeconds}s)`);
  const email = values.email;
  return withServices(config, async (app) => {
    const pair = await app.services.identity.mintToken(email, ttl);
    process.stdout.write(`${pair.access_token}\n`);
    return 0;
  });
}

async function assets(args: string[], config: Config): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({ args: rest, options: { to: { type: 'string' } }, strict: true });
  if (sub !== 'migrate' || values.to !== 's3') {
    process.stderr.write('usage: celforge assets migrate --to s3\n');
    return 2;
  }
  if (!config.assets.s3) throw new ConfigError('assets migrate --to s3: set CELFORGE_S3_BUCKET (and CELFORGE_S3_ENDPOINT, credentials) first');
  const { DiskObjectStore } = await import('./assets/backends/disk.js');
  const { S3ObjectStore } = await import('./assets/backends/s3.js');
  const { migrateObjects } = await import('./assets/migrate.js');
  const source = new DiskObjectStore(config.dataDir, ['assets', 'thumbnails']);
  const target = new S3ObjectStore(config.assets.s3);
  try {
    const report = await migrateObjects(source, target);
    for (const failure of report.failed) process.stderr.write(`${failure.key}: ${failure.reason}\n`);
    process.stdout.write(`copied ${report.copied} (${report.bytes} bytes), already there and verified ${report.verified}, failed ${report.failed.length}\n`);
    return report.failed.length > 0 ? 1 : 0;
  } finally {
    await target.close();
  }
}

const COMMANDS: Record<string, Command> = { serve, worker, migrate: migrateCommand, keys, audit, user, token, assets };

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  const command = name ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(USAGE);
    return name === undefined || name === 'help' || name === '--help' ? 0 : 2;
  }
  const resolved = await resolveConfig(process.env, {
    requireSecrets: NEEDS_SECRETS.has(name!),
    onVaultError: (error) => process.stderr.write(`celforge: ${error.message}\n`),
  });
  closeSecrets = resolved.close;
  const code = await command(args, resolved.config);
  if (code >= 0) resolved.close();
  return code;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error: unknown) => {
    const known = error instanceof ConfigError || (error instanceof Error && error.name === 'TypeError' && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS'));
    // A Vault error is written for the operator and never carries a token or a secret.
    const message = known || error instanceof VaultError ? (error as Error).message : `could not start: ${describe(error)}`;
    process.stderr.write(`celforge: ${message}\n`);
    process.exit(known ? 2 : 1);
  },
);

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = 'code' in error ? ` (${String(error.code)})` : '';
    return `${error.message}${code}`;
  }
  return String(error);
}
