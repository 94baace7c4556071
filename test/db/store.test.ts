import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { migrate, openStore, type Store } from '../../src/db/database.js';
import { migrations } from '../../src/db/migrations/index.js';
import { runCli } from '../support/cli.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';

const TABLES = ['users', 'sessions', 'refresh_tokens', 'recovery_codes', 'api_keys', 'jobs', 'assets', 'audit_log'];

describeEachDialect('store and migrations', (dialect) => {
  let storage: TestStorage;
  let store: Store;
  beforeAll(async () => {
    storage = await createTestStorage(dialect);
    store = openStore(storage);
  });
  afterAll(async () => {
    await store.close();
    await storage.drop();
  });

  it('two processes migrating at once both end on the newest version, each step applied once', async () => {
    const runs = await Promise.all([runCli(['migrate'], storage), runCli(['migrate'], storage), runCli(['migrate'], storage)]);
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    const applied = runs.flatMap((run) => [...run.stdout.matchAll(/^(\S+): Success$/gm)].map((m) => m[1]));
    expect(applied.sort()).toEqual(Object.keys(migrations).sort());
    const again = await migrate(store);
    expect(again.results).toEqual([]);
  });

  it('creates every table', async () => {
    const tables = await store.db.introspection.getTables();
    const names = tables.map((table) => table.name);
    for (const table of TABLES) expect(names).toContain(table);
  });

  it('stores hostile text as text, parameterised', async () => {
    const now = new Date().toISOString();
    const hostile = ["'); DROP TABLE users; --", "' UNION SELECT * FROM users --", 'rain drops -- it\'s', '\u{1F338} 桜 \\x00'];
    for (const [index, text] of hostile.entries()) {
      await store.db
        .insertInto('users')
        .values({
          id: `u${index}`,
          email: text,
          password_hash: 'h',
          role: 'user',
          disabled: 0,
          totp_secret: null,
          totp_enabled: 0,
          totp_last_step: null,
          created_at: now,
          updated_at: now,
        })
        .execute();
    }
    const rows = await store.db.selectFrom('users').select(['id', 'email']).orderBy('id').execute();
    expect(rows.map((row) => row.email)).toEqual(hostile);
  });

  it('enforces the schema rules in the store too', async () => {
    const now = new Date().toISOString();
    const user = { id: 'r1', email: 'r1@example.test', password_hash: 'h', role: 'root' as 'admin', disabled: 0, totp_secret: null, totp_enabled: 0, totp_last_step: null, created_at: now, updated_at: now };
    await expect(store.db.insertInto('users').values(user).execute()).rejects.toThrow();
    await store.db.insertInto('users').values({ ...user, role: 'user' }).execute();
    await expect(store.db.insertInto('users').values({ ...user, id: 'r2', role: 'user' }).execute()).rejects.toThrow();
  });

  it('reads bigint columns as numbers', async () => {
    await store.db.updateTable('users').set({ totp_last_step: 59_000_000 }).where('id', '=', 'r1').execute();
    const row = await store.db.selectFrom('users').select('totp_last_step').where('id', '=', 'r1').executeTakeFirstOrThrow();
    expect(row.totp_last_step).toBe(59_000_000);
    const count = await sql<{ n: number }>`select count(*) as n from users`.execute(store.db);
    expect(Number(count.rows[0]!.n)).toBeGreaterThan(0);
  });
});
