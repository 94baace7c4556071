/** One thing worth keeping in the audit trail: who did what to what, from where, and how it ended. */
export interface AuditEvent {
  /** dotted name, e.g. auth.login, auth.refresh.reuse, job.create, admin.user.role */
  action: string;
  outcome: 'success' | 'failure' | 'denied';
  actorId?: string | null;
  target?: string | null;
  ip?: string | null;
  requestId?: string | null;
  /** extra facts; never a password, token, key, code or prompt text */
  detail?: Record<string, unknown>;
}

/** Where security events go. Recording never throws into the caller and never blocks the answer. */
export interface Auditor {
  record(event: AuditEvent): void;
  /** resolves when every recorded event is stored (shutdown, tests) */
  flush(): Promise<void>;
  /** flushes, then lets go of what the auditor holds (the app closes it last) */
  close(): Promise<void>;
}
