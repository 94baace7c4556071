import type { paths, Problem } from '@celforge/client';
import { slug } from './problems.ts';

type Json<T> = T extends { content: { 'application/json': infer B } } ? B : never;

export type Stats = Json<paths['/api/anime/admin/stats']['get']['responses'][200]>;
export type AdminUser = Json<paths['/api/auth/users']['get']['responses'][200]>['items'][number];
export type UserSession = Json<paths['/api/auth/users/{id}/sessions']['get']['responses'][200]>['items'][number];
export type Quota = Json<paths['/api/anime/admin/users/{id}/quota']['get']['responses'][200]>;
export type AuditRow = Json<paths['/api/anime/admin/audit']['get']['responses'][200]>['items'][number];
export type Chain = Json<paths['/api/anime/admin/audit/chain']['get']['responses'][200]>;
export type AdminJob = Json<paths['/api/anime/admin/jobs']['get']['responses'][200]>['items'][number];

/** A refusal the person chose (dismissing step-up) is not worth an error banner of its own. */
export const declined = (problem: Problem | null | undefined) => slug(problem) === 'step-up-required';

const time = new Intl.DateTimeFormat('en', { dateStyle: 'medium', timeStyle: 'medium' });
const clock = new Intl.DateTimeFormat('en', { timeStyle: 'medium' });
const date = new Intl.DateTimeFormat('en', { dateStyle: 'medium' });
const short = new Intl.DateTimeFormat('en', { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });

export const formatTime = (iso: string) => time.format(new Date(iso));
export const formatClock = (at: Date) => clock.format(at);
export const formatDate = (iso: string) => date.format(new Date(iso));
/** "Nov 30, 11:12:30 AM": for dense tables */
export const formatShort = (iso: string) => short.format(new Date(iso));

/** "Firefox on Linux" from a user agent, or the raw text when it says nothing familiar. */
export function device(agent: string | null): string {
  if (!agent) return '—';
  const browser = /Edg\//.test(agent) ? 'Edge' : /Chrom(e|ium)\//.test(agent) ? 'Chromium' : /Firefox\//.test(agent) ? 'Firefox' : /Safari\//.test(agent) ? 'Safari' : null;
  const system = /Android/.test(agent) ? 'Android' : /iPhone|iPad/.test(agent) ? 'iOS' : /Windows/.test(agent) ? 'Windows' : /Mac OS X/.test(agent) ? 'macOS' : /Linux/.test(agent) ? 'Linux' : null;
  if (browser && system) return `${browser} on ${system}`;
  return browser ?? system ?? agent.slice(0, 60);
}
