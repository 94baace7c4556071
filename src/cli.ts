import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config/config.js';
import { migrate, openStore } from './db/database.js';
import { rotateSigningKeys } from './identity/keys.js';
import { createProduction } from './production/runtime.js';

type Command = (args: string[], config: Config) => Promise<number>;

const USAGE = `usage: celforge <command>

  serve [--only api|auth|worker]   run the service (default: everything in one process)
  worker                           render jobs only (BullMQ on REDIS_URL, else the store's queue)
  migrate                          bring the store's schema up to date
  keys rotate                      make a new token signing key; the old one still verifies
`;

async function serve(args: string[], config: Config): Promise<number> {
  const { values } = parseArgs({ args, options: { only: { type: 'string' } }, strict: true });
  if (values.only !== undefined && !['api', 'auth', 'worker'].includes(values.only)) {
    throw new ConfigError(`--only: "${values.only}" is not one of api, auth, worker`);
  }
  if (values.only === 'worker') return worker([], config);
  // The embedded job worker runs beside the API unless this process serves only the API or auth.
  const app = await buildApp(config, { worker: values.only !== 'api' && values.only !== 'auth' });
  const stop = async (signal: string) => {
    app.log.info({ signal }, 'shutting down');
    await app.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
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
  const production = await createProduction(config, store, log, { worker: true });
  await production.start();
  const stop = async (signal: string) => {
    log.info({ signal }, 'worker shutting down');
    await production.stop();
    await store.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
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

const COMMANDS: Record<string, Command> = { serve, worker, migrate: migrateCommand, keys };

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  const command = name ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(USAGE);
    return name === undefined || name === 'help' || name === '--help' ? 0 : 2;
  }
  return command(args, loadConfig());
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error: unknown) => {
    const known = error instanceof ConfigError || (error instanceof Error && error.name === 'TypeError' && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS'));
    process.stderr.write(`celforge: ${known ? (error as Error).message : `could not start: ${describe(error)}`}\n`);
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
