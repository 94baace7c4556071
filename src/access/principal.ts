/** What a user may do beyond their own work: the policy vocabulary every capability shares. */
export type Role = 'admin' | 'user';

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

/** Every scope an API key may carry. */
export const API_KEY_SCOPES = ['jobs:read', 'jobs:write', 'gallery:publish', 'admin'] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

export interface RouteAccess {
  auth?: AuthMode;
  role?: Role;
  /**
   * The API-key scope this route needs. The one declaration: the authentication hook enforces it
   * and the OpenAPI document shows it. A route without one is refused to API keys (deny by
   * default): account management (password, second factor, sessions, keys) never names one.
   */
  scope?: ApiKeyScope;
}
