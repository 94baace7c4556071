import type { Job } from './types.ts';

/** Settings handed from the viewer's "Use these settings" to the Create form (one use). */
let pending: Job | null = null;

export function useSettingsOf(job: Job): void {
  pending = job;
}

export function takeSettings(): Job | null {
  const job = pending;
  pending = null;
  return job;
}
