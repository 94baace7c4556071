import { LogController, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';

/** pino options: JSON lines, no credentials, no query strings (signed URLs carry tokens there). */
export function loggerOptions(level: string): FastifyServerOptions['logger'] {
  if (level === 'silent') return false;
  return {
    level,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["x-api-key"]',
        'req.headers.cookie',
        '*.password',
        '*.new_password',
        '*.refresh_token',
        '*.access_token',
        '*.otp',
        '*.code',
        '*.secret',
        '*.signing_secret',
        '*.prompt',
        '*.negative_prompt',
      ],
      censor: '[redacted]',
    },
    serializers: {
      req: (request: { method: string; url: string; ip?: string }) => ({
        method: request.method,
        path: request.url.split('?')[0],
        ip: request.ip,
      }),
    },
  };
}

/**
 * Fastify's two info lines per request ("incoming request", "request completed") only at debug
 * and trace: every request is already an audit row (who, route, status, duration, address,
 * request id), and at info the two lines cost more per request than all of its security. Its
 * error lines (a request errored, a stream broke, a header could not be written) stay.
 */
export class RequestLogController extends LogController {
  private readonly everyRequest: boolean;

  constructor(level: string) {
    super();
    this.everyRequest = level === 'debug' || level === 'trace';
  }

  override incomingRequest(request: FastifyRequest, reply: FastifyReply): void {
    if (this.everyRequest) super.incomingRequest(request, reply);
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.everyRequest || error) super.requestCompleted(error, request, reply);
  }
}
