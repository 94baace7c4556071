/** The single sign-on providers this Celforge offers (ids and names only). */
export interface SsoProvider {
  id: string;
  name: string;
}

export async function loadProviders(): Promise<SsoProvider[]> {
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
