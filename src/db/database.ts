import { mkdirSync } from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import {
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  sql,
  type MigrationResultSet,
  type SqliteDatabase,
} from 'kysely';
import pg from 'pg';
import type { Config } from '../config/config.js';
import { migrations } from './migrations/index.js';
import type { Database } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Store {
  db: Kysely<Database>;
  dialect: Dialect;
  /** SQLite only: the file's connection (its path and state; the audit writer opens its own) */
  sqlite: SQLite.Database | null;
  close(): Promise<void>;
}

// int8 (bigint) columns hold counters and steps far below 2^53: read them as numbers.
pg.types.setTypeParser(20, (value) => Number(value));

const STATEMENT_CACHE_LIMIT = 500;
const NOTHING = 'select 1 where 0';

/**
 * Kysely's SQLite driver prepares every query anew; preparing costs more than running a small
 * query. This keeps the prepared statements by SQL text (the text is parameterised, so the set is
 * small) and hands out a fresh one only while the cached one is mid-iteration (a streamed query).
 *
 * Its transactions begin IMMEDIATE: other connections write the same file (the audit writer
 * thread, other processes), and a deferred transaction that reads, then writes after another
 * connection committed fails at once with SQLITE_BUSY_SNAPSHOT instead of waiting its turn.
 *
 * SQLite rolls a transaction back by itself on some errors (SQLITE_FULL when the disk fills,
 * SQLITE_IOERR, SQLITE_NOMEM); Kysely's rollback after that would fail with "no transaction is
 * active" and replace the error that says what happened, so it becomes a statement that does nothing.
 */
function withStatementCache(database: SQLite.Database): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => database.close(),
    prepare: (text: string) => {
      const sql = text === 'begin' ? 'begin immediate' : text === 'rollback' && !database.inTransaction ? NOTHING : text;
      const cached = cache.get(sql);
      if (cached && !cached.busy) return cached;
      const statement = database.prepare(sql);
      if (!cached) {
        if (cache.size >= STATEMENT_CACHE_LIMIT) cache.delete(cache.keys().next().value!);
        cache.set(sql, statement);
      }
      return statement;
    },
  };
}

export function openStore(config: Pick<Config, 'databaseUrl' | 'dataDir'>): Store {
  if (config.databaseUrl) {
    // A connection attempt to a dead server fails within seconds instead of waiting for the OS.
    const pool = new pg.Pool({ connectionString: config.databaseUrl, max: 10, connectionTimeoutMillis: 5000, keepAlive: true });
    // A client that loses its server emits 'error' besides failing its query; without a listener that
    // event kills the process. The pool listens only while a client is idle, so every client gets a
    // listener of its own for the time it is checked out (inside a transaction, say): the statement
    // fails, the pool drops the broken client on release, the caller retries.
    pool.on('error', () => {});
    pool.on('connect', (client) => client.on('error', () => {}));
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    return { db, dialect: 'postgres', sqlite: null, close: () => db.destroy() };
  }
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const file = new SQLite(path.join(config.dataDir, 'celforge.db'));
  file.pragma('journal_mode = WAL');
  file.pragma('synchronous = NORMAL');
  file.pragma('foreign_keys = ON');
  file.pragma('busy_timeout = 5000');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(file) }) });
  return { db, dialect: 'sqlite', sqlite: file, close: () => db.destroy() };
}

function migrator(db: Kysely<Database>): Migrator {
  return new Migrator({ db, provider: { getMigrations: async () => migrations } });
}

/**
 * Kysely runs SQLite migrations without a transaction and its lock guards one connection only, so
 * two processes starting on a fresh file both applied the first step. Here the whole run is one
 * `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock first (a second process waits, then
 * finds nothing to do) and a failed step leaves no half-made schema.
 */
async function migrateSqlite(store: Store): Promise<MigrationResultSet> {
  return store.db.connection().execute(async (connection) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await sql`begin immediate`.execute(connection);
        break;
      } catch (error) {
        // busy_timeout already waited 5 s; a long first migration elsewhere may need longer
        if (attempt >= 5 || !String((error as { code?: string }).code).startsWith('SQLITE_BUSY')) throw error;
      }
    }
    try {
      const result = await migrator(connection).migrateToLatest();
      await sql`${sql.raw(result.error ? 'rollback' : 'commit')}`.execute(connection);
      return result;
    } catch (error) {
      await sql`rollback`.execute(connection).catch(() => {});
      throw error;
    }
  });
}

/** Brings the schema to the newest version; safe to call from several processes at once. */
export async function migrate(store: Store): Promise<MigrationResultSet> {
  const result = store.dialect === 'sqlite' ? await migrateSqlite(store) : await migrator(store.db).migrateToLatest();
  if (result.error) throw result.error;
  return result;
}

export async function isStoreReady(store: Store): Promise<boolean> {
  try {
    await sql`select 1`.execute(store.db);
    return true;
  } catch {
    return false;
  }
}
