import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { problemType, titleFor, type Problem } from './problem.js';
import { SECURITY_HEADERS } from './security.js';

/**
 * Requests refused before Fastify routes them — by Node's HTTP parser (headers too large, a body
 * longer than its Content-Length, garbage) or by the router (a path that is not valid percent
 * encoding) — answer an RFC 9457 problem like every other error, never echo the input, and are a
 * row of the audit trail like every other request.
 */
export interface RefusedRequest {
  action: 'http.request';
  outcome: 'failure';
  target: string;
  ip: string | null;
  requestId: string | null;
  detail: { [fact: string]: unknown };
}
/** Where a refused request is recorded (the audit trail's `record`). */
type Record = (event: RefusedRequest) => void;

const PROBLEM_JSON = 'application/problem+json; charset=utf-8';

function problem(status: number, slug: string, detail: string): Problem {
  return { type: problemType(slug), title: titleFor(status), status, detail };
}

/** Fastify's `frameworkErrors`: a path with bad percent-encoding, a parameter too long. */
export function frameworkErrors(record: () => Record) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const body =
      error.code === 'FST_ERR_BAD_URL'
        ? problem(400, 'bad-url', 'The request path is not valid URL encoding.')
        : problem(400, 'bad-request', 'The request could not be processed.');
    record()({
      action: 'http.request',
      outcome: 'failure',
      target: `${request.method} (refused by the router)`,
      ip: request.ip,
      requestId: request.id,
      detail: { method: request.method, route: '(refused by the router)', status: 400, reason: error.code },
    });
    reply.code(400).headers(SECURITY_HEADERS).header('x-request-id', request.id).type(PROBLEM_JSON).send(body);
  };
}

/** Fastify's `clientErrorHandler`: what Node's HTTP parser refuses, answered on the socket. */
export function clientErrorHandler(record: () => Record) {
  return (error: NodeJS.ErrnoException, socket: Socket) => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const [status, slug, detail] =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'headers-too-large', 'The request headers are larger than this service accepts.']
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'request-timeout', 'The request did not arrive in time.']
          : [400, 'bad-request', 'The request is not valid HTTP.'];
    record()({
      action: 'http.request',
      outcome: 'failure',
      target: '(refused by the HTTP parser)',
      ip: socket.remoteAddress ?? null,
      requestId: null,
      detail: { route: '(refused by the HTTP parser)', status, reason: String(error.code ?? 'unknown').slice(0, 40) },
    });
    if (socket.writable) {
      const body = JSON.stringify(problem(status, slug, detail));
      const headers = Object.entries({ ...SECURITY_HEADERS, 'content-type': PROBLEM_JSON, 'content-length': String(Buffer.byteLength(body)), connection: 'close' })
        .map(([name, value]) => `${name}: ${value}`)
        .join('\r\n');
      socket.write(`HTTP/1.1 ${status} ${titleFor(status)}\r\n${headers}\r\n\r\n${body}`);
    }
    socket.destroy();
  };
}
