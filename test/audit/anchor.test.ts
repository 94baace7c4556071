import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { checkpointKey, parseExpectedHead, readCheckpoints, type Checkpoint } from '../../src/audit/anchor.js';
import { verifyTrail } from '../../src/audit/service.js';
import { buildApp } from '../../src/app.js';
import { testConfig } from '../../src/config/config.js';
import { openStore, type Store } from '../../src/db/database.js';
import { runCli, testSharedSecrets } from '../support/cli.js';
import { createTestStorage, describeEachDialect, type TestStorage } from '../support/dialects.js';

describeEachDialect('audit anchoring outside the database', (dialect) => {
  const urlSigningKey = randomBytes(32).toString('base64');
  let storage: TestStorage;
  let file: string;
  let store: Store;

  beforeAll(async () => {
    storage = await createTestStorage(dialect);
    file = path.join(storage.dataDir, 'checkpoints.jsonl');
    const shared = storage.databaseUrl ? testSharedSecrets() : undefined;
    const config = testConfig({
      dataDir: storage.dataDir,
      databaseUrl: storage.databaseUrl,
      auditCheckpointFile: file,
      secrets: { signingKey: shared?.CELFORGE_SIGNING_KEY, encryptionKey: shared?.CELFORGE_ENCRYPTION_KEY, urlSigningKey },
    });
    const app = await buildApp(config, { worker: false });
    for (let i = 0; i < 8; i++) await app.inject({ method: 'GET', url: '/api/anime/health' });
    await app.close(); // the audit flushes, then the last checkpoint is written
    store = openStore({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
  });
  afterAll(async () => {
    await store?.close();
    await storage?.drop();
  });

  const cli = (...args: string[]) => runCli(['audit', 'verify', ...args], storage, { env: { CELFORGE_URL_SIGNING_KEY: urlSigningKey } });

  it('the server signs the head outside the database; rewinding the newest rows is caught by checkpoints and --expect-head', async () => {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    const last = JSON.parse(lines.at(-1)!) as Checkpoint;
    const head = await store.db.selectFrom('audit_head').selectAll().executeTakeFirstOrThrow();
    expect({ seq: last.seq, hash: last.hash }).toEqual({ seq: Number(head.seq), hash: head.hash });
    expect(last.mac).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const intact = await cli('--checkpoints', file);
    expect(intact.stderr).toBe('');
    expect(intact.code).toBe(0);
    expect(intact.stdout).toContain('outside anchors hold');
    const expectHead = /--expect-head (\d+:[0-9a-f]{64})/.exec(intact.stdout)![1]!;
    expect(expectHead).toBe(`${Number(head.seq)}:${head.hash}`);

    // The attack: delete the newest rows and rewind the head to the last row kept — two statements, no hashing.
    const n = Number(head.seq);
    const kept = await store.db.selectFrom('audit_log').select(['seq', 'hash']).where('seq', '=', n - 3).executeTakeFirstOrThrow();
    await store.db.deleteFrom('audit_log').where('seq', '>', n - 3).execute();
    await store.db.updateTable('audit_head').set({ seq: kept.seq, hash: kept.hash }).where('id', '=', 1).execute();

    // the chain alone cannot see it
    expect((await verifyTrail(store)).ok).toBe(true);
    expect((await cli()).code).toBe(0);

    const byCheckpoint = await cli('--checkpoints', file);
    expect(byCheckpoint.code).toBe(1);
    expect(byCheckpoint.stderr).toContain(`audit trail broken: row ${n} (hash ${head.hash}) was recorded outside the database but the chain ends at row ${n - 3}`);
    const byHead = await cli('--expect-head', expectHead);
    expect(byHead.code).toBe(1);
    expect(byHead.stderr).toContain('newest rows removed');

    // nor can the checkpoint file be rewritten to match without the key (the same reader as the command)
    const forged = { ...last, seq: Number(kept.seq), hash: kept.hash };
    writeFileSync(file, `${lines.slice(0, -1).join('\n')}${lines.length > 1 ? '\n' : ''}${JSON.stringify(forged)}\n`);
    const key = checkpointKey(Buffer.from(urlSigningKey, 'base64'));
    expect(readCheckpoints(file, key).problem).toBe(`checkpoint line ${lines.length}: its MAC does not hold`);
    expect(readCheckpoints(file, checkpointKey(randomBytes(32))).problem).toBe('checkpoint line 1: its MAC does not hold');
    expect(parseExpectedHead('abc')).toBeNull();
    expect(parseExpectedHead(`${n}:${'A'.repeat(64)}`)).toBeNull();
  }, 120_000);
});
