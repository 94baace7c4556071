import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * A database of its own for the benchmark's PostgreSQL figures: the one named by `given`, else a
 * fresh one on the local test server (dropped afterwards); undefined when none can be reached.
 */
export async function temporaryPostgres(given: string | undefined): Promise<{ url: string; drop: () => Promise<void> } | undefined> {
  if (given) return { url: given, drop: async () => {} };
  const server = process.env.CELFORGE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: server, connectionTimeoutMillis: 2000 });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  const name = `celforge_bench_${randomBytes(6).toString('hex')}`;
  try {
    await admin(`create database ${name}`);
  } catch {
    return undefined;
  }
  const url = new URL(server);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`drop database if exists ${name} with (force)`) };
}
