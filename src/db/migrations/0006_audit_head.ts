import type { Kysely } from 'kysely';

/**
 * The audit trail's head: the seq and hash of the newest row, written in the same transaction as
 * every append, so deleting the newest rows is found by `audit verify` like any other deletion.
 * The anchor is the seq and hash of the last row removed by retention: the oldest remaining row
 * must follow it. Appenders lock this one row, which keeps the chain a single line.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('audit_head')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('anchor_seq', 'bigint', (c) => c.notNull())
    .addColumn('anchor_hash', 'text', (c) => c.notNull())
    .execute();
  const newest = await db.selectFrom('audit_log').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
  const oldest = await db.selectFrom('audit_log').select(['seq', 'prev_hash']).orderBy('seq', 'asc').limit(1).executeTakeFirst();
  const zero = '0'.repeat(64);
  await db
    .insertInto('audit_head')
    .values({
      id: 1,
      seq: Number(newest?.seq ?? 0),
      hash: newest?.hash ?? zero,
      anchor_seq: oldest ? Number(oldest.seq) - 1 : 0,
      anchor_hash: oldest?.prev_hash ?? zero,
    })
    .execute();
  await db.schema.createIndex('audit_log_actor').on('audit_log').columns(['actor_id', 'seq']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('audit_log_actor').ifExists().execute();
  await db.schema.dropTable('audit_head').ifExists().execute();
}
