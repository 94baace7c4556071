import type { ColumnType } from 'kysely';
import { Type, type Static } from 'typebox';

/** Times are ISO-8601 UTC text in both dialects; flags are 0/1 integers. */
export interface Database {
  users: UsersTable;
  sessions: SessionsTable;
  refresh_tokens: RefreshTokensTable;
  recovery_codes: RecoveryCodesTable;
  api_keys: ApiKeysTable;
  jobs: JobsTable;
  assets: AssetsTable;
  audit_log: AuditLogTable;
  user_quotas: UserQuotasTable;
  fleet_shares: FleetSharesTable;
  audit_head: AuditHeadTable;
  share_links: ShareLinksTable;
  passkeys: PasskeysTable;
  webauthn_challenges: WebauthnChallengesTable;
  sso_links: SsoLinksTable;
  sso_attempts: SsoAttemptsTable;
  sso_sessions: SsoSessionsTable;
}

export interface UsersTable {
  id: string;
  email: string;
  password_hash: string;
  role: 'admin' | 'user';
  disabled: number;
  /** encrypted at rest; set during setup, used once enabled */
  totp_secret: string | null;
  totp_enabled: number;
  /** last accepted TOTP time step, so a code works once */
  totp_last_step: number | null;
  created_at: string;
  updated_at: string;
}

export interface SessionsTable {
  id: string;
  user_id: string;
  created_at: string;
  last_seen_at: string;
  /** absolute end of the session */
  expires_at: string;
  revoked_at: string | null;
  revoked_reason: string | null;
  /** when the second factor was last verified in this session (step-up) */
  mfa_at: string | null;
  /** how that second factor was verified: 'totp', or 'provider' when an OpenID provider asserted it (0012) */
  mfa_via: ColumnType<string | null, string | null | undefined, string | null>;
  user_agent: string | null;
  ip: string | null;
}

export interface RefreshTokensTable {
  /** SHA-256 of the token, hex */
  token_hash: string;
  session_id: string;
  created_at: string;
  expires_at: string;
  /** set when rotated; presenting it again is reuse */
  used_at: string | null;
}

export interface RecoveryCodesTable {
  user_id: string;
  code_hash: string;
  used_at: string | null;
}

export interface ApiKeysTable {
  id: string;
  user_id: string;
  name: string;
  /** SHA-256 of the key, hex */
  key_hash: string;
  /** JSON array of scope names */
  scopes: string;
  /** encrypted HMAC secret for request signatures */
  signing_secret: string | null;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

/** Every state a job is in, in the order it moves through them: the one list (route schemas, types, metrics). */
export const JobStatusSchema = Type.Union([
  Type.Literal('queued'),
  Type.Literal('running'),
  Type.Literal('succeeded'),
  Type.Literal('failed'),
  Type.Literal('canceled'),
]);
export type JobStatus = Static<typeof JobStatusSchema>;
export const JOB_STATUSES: readonly JobStatus[] = JobStatusSchema.anyOf.map((literal) => literal.const);
/** What a job makes. */
export const JobTypeSchema = Type.Union([Type.Literal('image'), Type.Literal('video')]);
export type JobType = Static<typeof JobTypeSchema>;

export interface JobsTable {
  id: string;
  user_id: string;
  type: JobType;
  status: JobStatus;
  prompt: string;
  negative_prompt: string;
  /** JSON: width, height, seed, steps, frames, fps, style */
  params: string;
  progress: number;
  /** text meant for the job's owner */
  error: string | null;
  idempotency_key: string | null;
  /** SHA-256 of the normalised request (0004), to tell a retry from a reuse of its Idempotency-Key */
  request_hash: string | null;
  attempts: number;
  /** worker lease for the durable local queue */
  locked_by: string | null;
  locked_until: string | null;
  run_after: string | null;
  visibility: 'public' | 'members' | null;
  published_at: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export interface AssetsTable {
  id: string;
  job_id: string;
  user_id: string;
  position: number;
  content_type: string;
  byte_size: number;
  /** opaque file name inside the asset storage */
  storage_key: string;
  created_at: string;
}

export interface AuditLogTable {
  /** assigned by the appender: previous + 1, in the same transaction as the hash chain */
  seq: number;
  at: string;
  actor_id: string | null;
  action: string;
  target: string | null;
  ip: string | null;
  request_id: string | null;
  outcome: string;
  /** JSON, secrets masked */
  detail: string | null;
  prev_hash: string;
  hash: string;
}

/** Admin overrides of a user's job quotas; null keeps the configured default. */
export interface UserQuotasTable {
  user_id: string;
  active_jobs: number | null;
  jobs_per_day: number | null;
  /** stored result bytes (0010); bigint, so PostgreSQL may hand it back as text */
  storage_bytes?: number | string | null;
  updated_at: string;
  updated_by: string | null;
}

/** A user's share of the GPU fleet (migration 0009); no row: weight 1, the configured cap, no use yet. */
export interface FleetSharesTable {
  user_id: string;
  weight: number;
  max_running: number | null;
  /** GPU milliseconds, decayed to `usage_at` */
  usage_ms: number;
  usage_at: string | null;
  updated_at: string;
  updated_by: string | null;
}

/** One row (id 1): the newest audit row and the retention anchor; see migration 0006. */
export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
  /** seq and hash of the last row removed by retention (0 and 64 zeros before any) */
  anchor_seq: number;
  anchor_hash: string;
}

/** A link that opens one work without an account (0010); only the token's SHA-256 is kept. */
export interface ShareLinksTable {
  id: string;
  token_hash: string;
  job_id: string;
  user_id: string;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
  open_count: number;
  last_opened_at: string | null;
}

/** A user's WebAuthn credential (0011). Binary values are base64url text. */
export interface PasskeysTable {
  id: string;
  user_id: string;
  credential_id: string;
  /** COSE public key */
  public_key: string;
  /** the authenticator's signature counter, last seen; bigint, so PostgreSQL may hand it back as text */
  counter: number | string;
  /** JSON array of the transports the authenticator named, or null */
  transports: string | null;
  device_type: 'singleDevice' | 'multiDevice';
  /** 0/1: the credential is backed up (synced) */
  backed_up: number;
  name: string;
  created_at: string;
  last_used_at: string | null;
}

/** A WebAuthn ceremony under way (0011): single use, bound to its user or session, short-lived. */
export interface WebauthnChallengesTable {
  id: string;
  purpose: 'register' | 'signin' | 'second-factor' | 'step-up';
  challenge: string;
  user_id: string | null;
  session_id: string | null;
  created_at: string;
  expires_at: string;
}

/** An account linked to an OpenID provider's subject (0012); the link is `(issuer, subject)`, never the e-mail. */
export interface SsoLinksTable {
  id: string;
  issuer: string;
  subject: string;
  /** the configured provider id it was made through */
  provider: string;
  user_id: string;
  /** the e-mail the provider gave when linked, for display */
  email: string | null;
  created_at: string;
  last_used_at: string | null;
}

/** A single sign-on attempt in flight (0012): spent once, bound to the browser that started it. */
export interface SsoAttemptsTable {
  /** SHA-256 of the `state` sent to the provider, hex */
  state_hash: string;
  /** SHA-256 of the value in the attempt cookie, hex */
  binding_hash: string;
  provider: string;
  purpose: 'signin' | 'link';
  /** for a link: the signed-in user who started it */
  user_id: string | null;
  nonce: string;
  code_verifier: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
}

/** The provider session behind a Celforge session opened by single sign-on (0012), for back-channel logout. */
export interface SsoSessionsTable {
  session_id: string;
  provider: string;
  issuer: string;
  subject: string;
  /** the provider's `sid` claim, when it sends one */
  sid: string | null;
}
