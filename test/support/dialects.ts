import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe } from 'vitest';
import { postgresAnswers } from './postgres-probe.js';

export type DialectName = 'sqlite' | 'postgres';

/** The server every PostgreSQL test uses; each test suite gets a database of its own on it. */
export const POSTGRES_BASE_URL = process.env.CELFORGE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const postgresReachable = await postgresAnswers(POSTGRES_BASE_URL, 2000);
if (!postgresReachable) {
  if (process.env.CI) throw new Error(`PostgreSQL is required in CI and is not reachable at ${POSTGRES_BASE_URL}`);
  console.warn(`\n  NOTICE: PostgreSQL is not reachable at ${POSTGRES_BASE_URL}; its tests are SKIPPED on this machine.\n`);
}

/** Whether the PostgreSQL tests run here (always in CI). */
export const postgresAvailable = postgresReachable;

/** Runs the same suite once per dialect: SQLite always, PostgreSQL when reachable (required in CI). */
export function describeEachDialect(name: string, suite: (dialect: DialectName) => void): void {
  describe(`${name} [sqlite]`, () => suite('sqlite'));
  describe.skipIf(!postgresReachable)(`${name} [postgres]`, () => suite('postgres'));
}

/** A suite about PostgreSQL itself (connection drops, outages): skipped like the dialect suites without it. */
export function describePostgres(name: string, suite: () => void): void {
  describe.skipIf(!postgresReachable)(`${name} [postgres]`, suite);
}

export interface TestStorage {
  dataDir: string;
  databaseUrl?: string;
  drop(): Promise<void>;
}

async function admin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_BASE_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** A fresh data dir, and for PostgreSQL a fresh database, dropped afterwards. */
export async function createTestStorage(dialect: DialectName): Promise<TestStorage> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-test-'));
  const removeDir = () => rmSync(dataDir, { recursive: true, force: true });
  if (dialect === 'sqlite') return { dataDir, drop: async () => removeDir() };

  const name = `celforge_t_${randomBytes(6).toString('hex')}`;
  await admin((client) => client.query(`create database ${name}`));
  const url = new URL(POSTGRES_BASE_URL);
  url.pathname = `/${name}`;
  return {
    dataDir,
    databaseUrl: url.toString(),
    drop: async () => {
      removeDir();
      await admin((client) => client.query(`drop database if exists ${name} with (force)`));
    },
  };
}
