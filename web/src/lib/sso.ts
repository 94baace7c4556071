/** The single sign-on providers this Celforge offers (ids and names only). */
export interface SsoProvider {
  id: string;
  name: string;
}

let configured: Promise<SsoProvider[]> | undefined;

/** The configured providers, asked once per page load (they change only with the server's settings). */
export function loadProviders(): Promise<SsoProvider[]> {
  configured ??= fetchProviders();
  return configured;
}

async function fetchProviders(): Promise<SsoProvider[]> {
  try {
    const response = await fetch('/api/auth/sso/providers', { credentials: 'same-origin' });
    if (!response.ok) return [];
    return ((await response.json()) as { items: SsoProvider[] }).items;
  } catch {
    return [];
  }
}

/** Where a sign-in with a provider starts: a top-level navigation, so the provider's page opens in this tab. */
export const startUrl = (id: string) => `/api/auth/sso/${encodeURIComponent(id)}/start`;
