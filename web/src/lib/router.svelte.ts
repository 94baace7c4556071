/**
 * A small history router: the path is state, links inside the studio navigate without a reload,
 * and screens are picked from a table (account and admin pages add rows to it).
 */
export const location = $state({ path: window.location.pathname, search: window.location.search });

function sync() {
  location.path = window.location.pathname;
  location.search = window.location.search;
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (to === window.location.pathname + window.location.search + window.location.hash) return;
  if (options.replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  sync();
  window.scrollTo(0, 0);
}

/** Intercepts clicks on same-origin links (not new-tab clicks, downloads or the API). */
export function startRouter(): void {
  window.addEventListener('popstate', sync);
  document.addEventListener('click', (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = (event.target as Element | null)?.closest?.('a');
    if (!link || link.target || link.hasAttribute('download') || link.origin !== window.location.origin) return;
    if (link.pathname.startsWith('/api/')) return;
    // A jump within this page (`#section`) is the browser's own work.
    if (link.hash && link.pathname === window.location.pathname && link.search === window.location.search) return;
    event.preventDefault();
    navigate(link.pathname + link.search + link.hash);
  });
}

export interface Match {
  params: Record<string, string>;
}

/** `/jobs/:id` against `/jobs/123` → { id: '123' }; null when it does not match. */
export function match(pattern: string, path: string): Match | null {
  const want = pattern.split('/');
  const have = path.replace(/\/+$/, '').split('/');
  if (path === '/') have.splice(1, 1, '');
  if (want.length !== have.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const h = have[i]!;
    if (w.startsWith(':')) {
      if (!h) return null;
      params[w.slice(1)] = decodeURIComponent(h);
    } else if (w !== h) return null;
  }
  return { params };
}
