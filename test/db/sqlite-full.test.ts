import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/db/database.js';
import { isStoreUnavailable } from '../../src/db/faults.js';

// SQLite rolls a transaction back by itself when the disk fills (as on an I/O error); the store
// must then report the full disk, not fail again on its own rollback.
let dataDir: string;
let store: Store;

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-test-'));
  store = openStore({ dataDir });
  await sql`create table filler (data blob)`.execute(store.db);
});
afterAll(async () => {
  await store.close();
  rmSync(dataDir, { recursive: true, force: true });
});

it('a transaction that meets a full store fails with SQLITE_FULL (a store outage), and the store works again once there is room', async () => {
  // a file that cannot grow: the disk is full for this store
  const pages = store.sqlite!.pragma('page_count', { simple: true }) as number;
  store.sqlite!.pragma(`max_page_count = ${pages + 2}`);
  const failure = await store.db
    .transaction()
    .execute(async (trx) => {
      for (let i = 0; i < 20; i++) await sql`insert into filler (data) values (${Buffer.alloc(64 * 1024)})`.execute(trx);
    })
    .catch((error: unknown) => error);
  expect((failure as { code?: string }).code).toBe('SQLITE_FULL');
  expect(isStoreUnavailable(failure)).toBe(true);

  store.sqlite!.pragma('max_page_count = 1073741823');
  await store.db.transaction().execute((trx) => sql`insert into filler (data) values (${Buffer.alloc(10)})`.execute(trx));
  const { rows } = await sql<{ n: number }>`select count(*) as n from filler`.execute(store.db);
  expect(rows[0]!.n).toBe(1);
});
