import type { Component } from 'svelte';

/**
 * The studio's pages. `access` decides who sees one: `public` for anyone, `user` for a signed-in
 * person (others are sent to sign in), `admin` for administrators (others see "not found").
 * Account and admin pages add rows here.
 */
export interface Route {
  pattern: string;
  title: string;
  access: 'public' | 'user' | 'admin';
  /**
   * Loads the screen (its own chunk, fetched on first visit); screens with path parameters
   * (`:id`) take them as `params`.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- screens take `params` or no props at all
  load: () => Promise<{ default: Component<any> }>;
}

export const routes: Route[] = [
  { pattern: '/', title: 'Create', access: 'user', load: () => import('./screens/Create.svelte') },
  { pattern: '/signin', title: 'Sign in', access: 'public', load: () => import('./screens/SignIn.svelte') },
  { pattern: '/jobs', title: 'My jobs', access: 'user', load: () => import('./screens/Jobs.svelte') },
  { pattern: '/jobs/:id', title: 'Job', access: 'user', load: () => import('./screens/Viewer.svelte') },
  { pattern: '/account', title: 'Account', access: 'user', load: () => import('./screens/Account.svelte') },
  { pattern: '/gallery', title: 'Gallery', access: 'public', load: () => import('./screens/Gallery.svelte') },
  { pattern: '/account', title: 'Account', access: 'user', load: () => import('./screens/Account.svelte') },
  // admin console
  { pattern: '/admin', title: 'Dashboard', access: 'admin', load: () => import('./screens/admin/Dashboard.svelte') },
  { pattern: '/admin/users', title: 'Users', access: 'admin', load: () => import('./screens/admin/Users.svelte') },
  { pattern: '/admin/audit', title: 'Audit log', access: 'admin', load: () => import('./screens/admin/Audit.svelte') },
  { pattern: '/admin/jobs', title: 'All jobs', access: 'admin', load: () => import('./screens/admin/Jobs.svelte') },
];
