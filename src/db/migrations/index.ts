import type { Migration } from 'kysely';
import * as initial from './0001_initial.js';
import * as userQuotas from './0005_user_quotas.js';
import * as auditHead from './0006_audit_head.js';
import * as identity from './0002_identity.js';
import * as jobRequestHash from './0004_job_request_hash.js';
import * as assetsAtScale from './0010_assets_at_scale.js';
import * as fleetShares from './0009_fleet_shares.js';
import * as passkeys from './0011_passkeys.js';
import * as adminDashboard from './0015_admin_dashboard.js';
import * as sso from './0012_sso.js';

/** Every migration, by name; names sort in the order they run. */
export const migrations: Record<string, Migration> = {
  '0001_initial': initial,
  '0005_user_quotas': userQuotas,
  '0006_audit_head': auditHead,
  '0002_identity': identity,
  '0004_job_request_hash': jobRequestHash,
  '0010_assets_at_scale': assetsAtScale,
  '0009_fleet_shares': fleetShares,
  '0011_passkeys': passkeys,
  '0015_admin_dashboard': adminDashboard,
  '0012_sso': sso,
};
