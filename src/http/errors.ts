import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import FindMyWay from 'find-my-way';
import type { StoreOutage } from '../db/outage.js';
import { HttpProblem, problemType, titleFor, type Problem } from './problem.js';

const PROBLEM_JSON = 'application/problem+json; charset=utf-8';

/** What the client is told for Fastify's own 4xx errors; their messages are never passed through. */
const FRAMEWORK_ERRORS: Record<string, { slug: string; detail: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { slug: 'body-too-large', detail: 'The request body is larger than this service accepts.' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { slug: 'unsupported-media-type', detail: 'Send the body as application/json.' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { slug: 'bad-request', detail: 'Content-Length does not match the body.' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { slug: 'malformed-json', detail: 'The body is empty but Content-Type says JSON.' },
  FST_ERR_CTP_INVALID_JSON_BODY: { slug: 'malformed-json', detail: 'The body is not valid JSON.' },
};

export function sendProblem(reply: FastifyReply, problem: Problem, headers: Record<string, string> = {}): FastifyReply {
  reply.code(problem.status).headers(headers).type(PROBLEM_JSON);
  return reply.send(problem);
}

interface SchemaIssue {
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

function validationProblem(error: FastifyError): Problem {
  const where = error.validationContext ?? 'body';
  const issues = (error.validation ?? []) as SchemaIssue[];
  const errors = issues.slice(0, 20).map((issue) => {
    const extra = issue.params?.additionalProperties ?? issue.params?.requiredProperties;
    const named = Array.isArray(extra) ? extra.map(String) : typeof extra === 'string' ? [extra] : [];
    const pointer = named.length === 1 ? `${issue.instancePath ?? ''}/${named[0]}` : (issue.instancePath ?? '');
    return { in: where, pointer: pointer || '/', detail: issue.message ?? 'is not valid' };
  });
  return {
    type: problemType('validation'),
    title: 'Your request is not valid.',
    status: 400,
    detail: `The ${where} does not match the schema.`,
    errors,
  };
}

/** How long a client is asked to wait while the store is out: the outage probe looks every second. */
const STORE_RETRY_AFTER_SECONDS = '5';

function toProblem(error: FastifyError | HttpProblem, request: FastifyRequest, outage?: StoreOutage): { problem: Problem; headers?: Record<string, string> } {
  if (error instanceof HttpProblem) return { problem: error.toProblem(), headers: error.headers };
  if (error.validation) return { problem: validationProblem(error) };
  const known = error.code ? FRAMEWORK_ERRORS[error.code] : undefined;
  const status = error.statusCode ?? 500;
  if (known) return { problem: { type: problemType(known.slug), title: titleFor(status), status, detail: known.detail } };
  if (status === 429) {
    return { problem: { type: problemType('rate-limited'), title: titleFor(429), status, detail: 'Too many requests; retry later.' } };
  }
  if (status >= 400 && status < 500) {
    return { problem: { type: problemType('bad-request'), title: titleFor(status), status, detail: 'The request could not be processed.' } };
  }
  // A store outage is the service's state, not a fault of this request: logged once (by the outage), a 503.
  if (outage?.report(error)) {
    return {
      problem: { type: problemType('store-unavailable'), title: titleFor(503), status: 503, detail: 'The store is not available right now; retry later.' },
      headers: { 'retry-after': STORE_RETRY_AFTER_SECONDS },
    };
  }
  request.log.error({ err: error }, 'unhandled error');
  return {
    problem: {
      type: problemType('internal'),
      title: titleFor(500),
      status: 500,
      detail: `Something went wrong on our side. Quote request id ${request.id} when you report it.`,
    },
  };
}

// OPTIONS is left out: the CORS plugin answers it for every path (with no CORS origin configured, it is a 405).
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/** Problem+json for every error, 404 for unknown routes and 405 (with Allow) for a known path. */
export const errorHandling = fp(async (app: FastifyInstance, options: { outage?: StoreOutage; fallback?: (request: FastifyRequest, reply: FastifyReply) => boolean }) => {
  const known = FindMyWay({ ignoreTrailingSlash: false });
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (METHODS.includes(method as (typeof METHODS)[number]) && !known.find(method as 'GET', route.url)) {
        known.on(method as 'GET', route.url, () => {});
      }
    }
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const { problem, headers } = toProblem(error, request, options.outage);
    return sendProblem(reply, problem, headers);
  });

  app.setNotFoundHandler((request, reply) => {
    // The studio's page paths (/gallery, /jobs/…) are answered by its index.html.
    if (options.fallback?.(request, reply)) return reply;
    const path = request.url.split('?')[0] ?? '/';
    const allowed = METHODS.filter((method) => known.find(method, path));
    if (allowed.length > 0) {
      return sendProblem(
        reply,
        { type: problemType('method-not-allowed'), title: titleFor(405), status: 405, detail: `Use ${allowed.join(', ')}.` },
        { allow: allowed.join(', ') },
      );
    }
    return sendProblem(reply, { type: problemType('not-found'), title: titleFor(404), status: 404, detail: 'No such resource.' });
  });
});
