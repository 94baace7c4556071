import { expect } from 'vitest';

/** What must never appear in an answer: paths of this machine, stack frames, SQL, internal hosts. */
export const LEAKS = [
  /\/tmp\//,
  /\/work\//,
  /\/srv\//,
  /\/home\//,
  /node_modules/,
  /celforge-test-/,
  /\.tmp\b/,
  /[A-Z]:\\/,
  /\bat .*\.(ts|js):\d+/,
  /select \*/i,
  /ECONNREFUSED/,
  /10\.1\.2\.3/,
  /stack/i,
];

/** Paths of this machine that must never appear in an answer (the path part of LEAKS). */
export const PATH_LEAKS = LEAKS.slice(0, 8);

export function expectNoPath(text: string): void {
  for (const leak of PATH_LEAKS) expect(text).not.toMatch(leak);
}

/**
 * An RFC 9457 answer: the status, problem+json, a title, the given problem type (when named) and
 * nothing of LEAKS. Returns the parsed body for further checks.
 */
export function expectProblem(
  response: { statusCode: number; headers: Record<string, unknown>; body: string },
  status: number,
  type?: string,
): Record<string, any> {
  expect(response.statusCode).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = JSON.parse(response.body) as Record<string, any>;
  expect(body.status).toBe(status);
  expect(typeof body.title).toBe('string');
  if (type) expect(body.type).toBe(`urn:celforge:problem:${type}`);
  for (const leak of LEAKS) expect(response.body).not.toMatch(leak);
  return body;
}
