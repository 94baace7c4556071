import type { FastifyRequest } from 'fastify';

/** Where a request came from, for the audit trail and session records. */
export interface RequestContext {
  ip: string;
  requestId: string;
  userAgent?: string;
}

export function contextOf(request: FastifyRequest): RequestContext {
  const agent = request.headers['user-agent'];
  return { ip: request.ip, requestId: String(request.id), userAgent: typeof agent === 'string' ? agent : undefined };
}
