import { parseArgs } from 'node:util';
import { buildApp } from './app.js';
import { exportTrail, pruneTrail, verifyTrail } from './audit/service.js';
import { ConfigError, type Config } from './config/config.js';
import { resolveConfig } from './config/secrets.js';
import { VaultError } from './config/vault.js';
import { migrate, openStore } from './db/database.js';
import { rotateSigningKeys } from './identity/keys.js';

type Command = (args: string[], config: Config) => Promise<number>;

const USAGE = `usage: celforge <command>

  serve [--only api|auth|worker]   run the service (default: everything in one process)
  migrate                          bring the store's schema up to date
  keys rotate                      make a new token signing key; the old one still verifies
  audit verify                     check the audit trail's hash chain (exit 1 names the first bad row)
  audit export [--from T] [--to T] the audit trail as JSON lines (T: ISO-8601 time)
  audit prune [--days N]           delete audit rows older than the retention (CELFORGE_AUDIT_RETENTION_DAYS)
`;

async function serve(args: string[], config: Config): Promise<number> {
  const { values } = parseArgs({ args, options: { only: { type: 'string' } }, strict: true });
  if (values.only !== undefined && !['api', 'auth', 'worker'].includes(values.only)) {
    throw new ConfigError(`--only: "${values.only}" is not one of api, auth, worker`);
  }
  const app = await buildApp(config);
  const stop = async (signal: string) => {
    app.log.info({ signal }, 'shutting down');
    await app.close();
    closeSecrets();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  const address = await app.listen({ host: config.host, port: config.port });
  if (config.logLevel === 'silent') process.stdout.write(`celforge listening on ${address}\n`);
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
    process.stderr.write('usage: celforge audit verify | export [--from ISO] [--to ISO] | prune [--days N]\n');
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: sub === 'export' ? { from: { type: 'string' }, to: { type: 'string' } } : sub === 'prune' ? { days: { type: 'string' } } : {},
    strict: true,
  });
  const store = openStore(config);
  try {
    await migrate(store);
    if (sub === 'verify') {
      const result = await verifyTrail(store);
      if (!result.ok) {
        process.stderr.write(`audit trail broken: ${result.problem}\n`);
        return 1;
      }
      process.stdout.write(`${result.rows} rows, chain intact (head row ${Number(result.head.seq)}, hash ${result.head.hash})\n`);
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

const COMMANDS: Record<string, Command> = { serve, migrate: migrateCommand, keys, audit };

/** Commands that sign tokens, encrypt secrets or sign URLs: they need the shared secrets. */
const NEEDS_SECRETS = new Set(['serve', 'worker', 'token']);

let closeSecrets: () => void = () => {};

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
