import type { Component } from 'svelte';
import Create from './screens/Create.svelte';
import Gallery from './screens/Gallery.svelte';
import Jobs from './screens/Jobs.svelte';
import SignIn from './screens/SignIn.svelte';
import Viewer from './screens/Viewer.svelte';

/**
 * The studio's pages. `access` decides who sees one: `public` for anyone, `user` for a signed-in
 * person (others are sent to sign in), `admin` for administrators (others see "not found").
 * Account and admin pages add rows here.
 */
export interface Route {
  pattern: string;
  title: string;
  access: 'public' | 'user' | 'admin';
  /** a screen; those with path parameters (`:id`) take them as `params` */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- screens take `params` or no props at all
  component: Component<any>;
}

export const routes: Route[] = [
  { pattern: '/', title: 'Create', access: 'user', component: Create },
  { pattern: '/signin', title: 'Sign in', access: 'public', component: SignIn },
  { pattern: '/jobs', title: 'My jobs', access: 'user', component: Jobs },
  { pattern: '/jobs/:id', title: 'Job', access: 'user', component: Viewer },
  { pattern: '/gallery', title: 'Gallery', access: 'public', component: Gallery },
];
