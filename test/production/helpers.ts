import type { FastifyInstance } from 'fastify';
import { expect } from 'vitest';

export type Json = Record<string, any>;

/** Paths of this machine that must never appear in an answer. */
export const PATH_LEAKS = [/\/tmp\//, /\/work\//, /\/srv\//, /\/home\//, /node_modules/, /celforge-test-/, /\.tmp\b/, /[A-Z]:\\/];

export function expectNoPath(text: string): void {
  for (const leak of PATH_LEAKS) expect(text).not.toMatch(leak);
}

export function expectProblem(response: { statusCode: number; headers: Record<string, unknown>; body: string }, status: number, type?: string): Json {
  expect(response.statusCode).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = JSON.parse(response.body) as Json;
  expect(body.status).toBe(status);
  if (type) expect(body.type).toBe(`urn:celforge:problem:${type}`);
  expectNoPath(response.body);
  return body;
}

export async function generate(app: FastifyInstance, authorization: Record<string, string>, body: unknown, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url: '/api/anime/generate', headers: { ...authorization, ...headers }, payload: body as Json });
}

/** Polls the job until it reaches one of `states` (the worker runs in the same process). */
export async function waitFor(app: FastifyInstance, authorization: Record<string, string>, jobId: string, states: string[], timeoutMs = 20_000): Promise<Json> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const response = await app.inject({ url: `/api/anime/jobs/${jobId}`, headers: authorization });
    const job = response.json() as Json;
    if (states.includes(job.status)) return job;
    if (Date.now() > until) throw new Error(`job ${jobId} stayed ${job.status}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
