import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { migrate, openStore, type Store } from '../../src/db/database.js';
import { insertUser, newUserRow, type UserRow } from '../../src/identity/store.js';

/** A migrated SQLite store in a temporary directory, for service tests without a server. */
export async function sqliteStore(): Promise<Store & { drop(): Promise<void> }> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'celforge-unit-'));
  const store = openStore({ databaseUrl: undefined, dataDir });
  await migrate(store);
  return {
    ...store,
    async drop() {
      await store.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function addUser(store: Store, id: string, values: Partial<UserRow> = {}): Promise<UserRow> {
  const user: UserRow = { ...newUserRow({ email: `${id}@celforge.example`, password_hash: 'x', role: 'admin' }, new Date(0).toISOString()), id, ...values };
  await insertUser(store.db, user);
  return user;
}
