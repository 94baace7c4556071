import type { Kysely } from 'kysely';

/**
 * Single sign-on: accounts linked to an OpenID provider's `(issuer, sub)`, the sign-in attempts
 * in flight (state, nonce and PKCE verifier kept here, each attempt spent once), the provider
 * session behind each Celforge session (for back-channel logout), and how a session's second
 * factor was verified.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('sso_links')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('email', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('last_used_at', 'text')
    .addUniqueConstraint('sso_links_issuer_subject', ['issuer', 'subject'])
    .execute();
  await db.schema.createIndex('sso_links_user').on('sso_links').column('user_id').execute();

  await db.schema
    .createTable('sso_attempts')
    .addColumn('state_hash', 'text', (c) => c.primaryKey())
    .addColumn('binding_hash', 'text', (c) => c.notNull())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('purpose', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.references('users.id').onDelete('cascade'))
    .addColumn('nonce', 'text', (c) => c.notNull())
    .addColumn('code_verifier', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('used_at', 'text')
    .execute();

  await db.schema
    .createTable('sso_sessions')
    .addColumn('session_id', 'text', (c) => c.primaryKey().references('sessions.id').onDelete('cascade'))
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('sid', 'text')
    .execute();
  await db.schema.createIndex('sso_sessions_subject').on('sso_sessions').columns(['issuer', 'subject']).execute();

  await db.schema.alterTable('sessions').addColumn('mfa_via', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('mfa_via').execute();
  await db.schema.dropTable('sso_sessions').ifExists().execute();
  await db.schema.dropTable('sso_attempts').ifExists().execute();
  await db.schema.dropTable('sso_links').ifExists().execute();
}
