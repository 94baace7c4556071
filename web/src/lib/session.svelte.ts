import { createCelforgeClient, type Problem } from '@celforge/client';
import type { Me } from './types.ts';

/** The header the cookie-authenticated routes require (see src/identity/browser-session.ts). */
const STUDIO_HEADER = { 'x-celforge-studio': '1' };
const REFRESH_LOCK = 'celforge-refresh';
/** A refresh that hangs gives up, so the lock it holds does not keep the other tabs waiting. */
const REFRESH_TIMEOUT_MS = 20_000;

/**
 * Who is signed in. The access token lives only in this module's memory: never in storage, never
 * in a URL. The refresh token is an httpOnly cookie this code cannot read.
 */
export const session = $state({
  user: null as Me | null,
  /** false until the silent sign-in on load has answered */
  ready: false,
  /** shown on the sign-in page: why the person is there */
  notice: '' as string,
});

let accessToken: string | null = null;
let refreshTimer: ReturnType<typeof setTimeout> | undefined;
let inFlight: Promise<boolean> | null = null;
const listeners = new Set<(reason: 'ended' | 'signed-out') => void>();

export function onSignedOut(listener: (reason: 'ended' | 'signed-out') => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function setToken(token: string | null, expiresIn = 0) {
  accessToken = token;
  clearTimeout(refreshTimer);
  // Renew a minute early, so a request rarely meets an expired token.
  if (token && expiresIn > 90) refreshTimer = setTimeout(() => void refresh(), (expiresIn - 60) * 1000);
}

export function hasToken(): boolean {
  return accessToken !== null;
}

/**
 * One refresh at a time, across tabs too (Web Locks): two tabs spending the same refresh cookie
 * at once would look like a stolen token and end the session. The second tab waits and then
 * spends the cookie the first one received; the access token the first tab got stays in that tab's
 * memory, so the second refreshes with the new cookie for one of its own. (A refresh whose answer
 * is lost, the tab closed mid-request, is forgiven by the server once, shortly after.)
 */
export function refresh(): Promise<boolean> {
  inFlight ??= (async () => {
    const run = async () => {
      const response = await fetch('/api/auth/browser/refresh', {
        method: 'POST',
        headers: STUDIO_HEADER,
        credentials: 'same-origin',
        signal: AbortSignal.timeout(REFRESH_TIMEOUT_MS),
      });
      if (response.status !== 200) return false;
      const body = (await response.json()) as { access_token: string; expires_in: number };
      setToken(body.access_token, body.expires_in);
      return true;
    };
    try {
      return navigator.locks ? await navigator.locks.request(REFRESH_LOCK, run) : await run();
    } catch {
      return false;
    } finally {
      inFlight = null;
    }
  })();
  return inFlight;
}

function withToken(request: Request): Request {
  if (accessToken) request.headers.set('authorization', `Bearer ${accessToken}`);
  return request;
}

/** The session is over (revoked elsewhere, expired, user disabled): back to the sign-in page, saying so. */
function ended() {
  setToken(null);
  if (session.user) {
    session.user = null;
    session.notice = 'ended';
    for (const listener of listeners) listener('ended');
  }
}

/**
 * fetch with the access token; a 401 refreshes once and retries once. When the refresh is refused
 * too, the session has ended.
 */
export async function authFetch(request: Request): Promise<Response> {
  const retry = request.clone();
  const sentWith = accessToken;
  const response = await fetch(withToken(request));
  if (response.status !== 401 || sentWith === null) return response;
  // Another request may already have renewed the token while this one was out.
  const renewed = accessToken !== sentWith && accessToken !== null ? true : await refresh();
  if (!renewed) {
    ended();
    return response;
  }
  const second = await fetch(withToken(retry));
  if (second.status === 401) ended();
  return second;
}

export const api = createCelforgeClient({ fetch: authFetch });

async function loadMe(): Promise<boolean> {
  const { data } = await api.GET('/api/auth/me');
  session.user = (data as Me | undefined) ?? null;
  return session.user !== null;
}

/** On load: a session cookie signs the person in without a word. */
export async function resume(): Promise<void> {
  try {
    if (await refresh()) await loadMe();
  } finally {
    session.ready = true;
  }
}

export type SignInResult = { ok: true } | { ok: false; problem: Problem | null; retryAfter?: number };

export function signIn(email: string, password: string, otp?: string): Promise<SignInResult> {
  return browserSignIn('/api/auth/browser/login', otp ? { email, password, otp } : { email, password });
}

/** Finishes a passkey sign-in (passwordless, or the second factor after the password): see lib/passkeys.ts. */
export function signInWithPasskeyAssertion(attemptId: string, response: unknown): Promise<SignInResult> {
  return browserSignIn('/api/auth/browser/passkeys/signin', { attempt_id: attemptId, response });
}

async function browserSignIn(url: string, payload: object): Promise<SignInResult> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { ...STUDIO_HEADER, 'content-type': 'application/json' },
      credentials: 'same-origin',
      body: JSON.stringify(payload),
    });
  } catch {
    return { ok: false, problem: null };
  }
  if (!response.ok) {
    const problem = (await response.json().catch(() => null)) as Problem | null;
    const retryAfter = Number(response.headers.get('retry-after') ?? problem?.retry_after ?? 0) || undefined;
    return { ok: false, problem, retryAfter };
  }
  const body = (await response.json()) as { access_token: string; expires_in: number };
  setToken(body.access_token, body.expires_in);
  session.notice = '';
  await loadMe();
  return { ok: true };
}

/** Ends the session on the server, forgets the token and the cookie. */
export async function signOut(): Promise<void> {
  let providerLogout: string | null = null;
  try {
    // Like /browser/logout; a single sign-on session also gets the provider's logout address.
    const response = await fetch('/api/auth/sso/logout', { method: 'POST', headers: STUDIO_HEADER, credentials: 'same-origin' });
    if (response.ok) providerLogout = ((await response.json()) as { logout_url: string | null }).logout_url;
  } finally {
    setToken(null);
    session.user = null;
    session.notice = 'signed-out';
    for (const listener of listeners) listener('signed-out');
  }
  if (providerLogout) window.location.assign(providerLogout);
}

/** The access token for a request made outside the client (event streams). */
export function bearer(): Record<string, string> {
  return accessToken ? { authorization: `Bearer ${accessToken}` } : {};
}
