import type { Role } from '../identity/tokens.js';

/** Who is calling, once authenticated. */
export interface Principal {
  userId: string;
  email: string;
  role: Role;
  /** the session behind an access token; null for API keys */
  sessionId: string | null;
  via: 'token' | 'api-key';
  /** API-key scopes; null for a session token (the role decides) */
  scopes: readonly string[] | null;
  /** API key id, for signature checks and audit */
  apiKeyId?: string;
}

/** How a route is guarded: public, optional (anonymous allowed, a bad credential is still 401) or required. */
export type AuthMode = 'public' | 'optional' | 'required';

export interface RouteAccess {
  auth?: AuthMode;
  role?: Role;
  /** API-key scope needed when the caller uses an API key */
  scope?: string;
}
