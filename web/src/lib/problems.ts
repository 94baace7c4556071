import type { Problem } from '@celforge/client';
import { strings } from './strings.ts';

/** The problem's own words when it has them, else a generic sentence. */
export function describe(problem: Problem | null | undefined): string {
  if (!problem) return strings.common.offline;
  if (slug(problem) === 'enrol-2fa') return strings.problems.enrol2fa;
  if (problem.status >= 500) return strings.common.unexpected(typeof problem.request_id === 'string' ? problem.request_id : undefined);
  return problem.detail ?? problem.title;
}

export const slug = (problem: Problem | null | undefined) => problem?.type?.replace('urn:celforge:problem:', '') ?? '';
