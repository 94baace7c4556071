/** RFC 9457 problem details: the only shape of an error answer. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  errors?: { pointer: string; detail: string }[];
  [extension: string]: unknown;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

export function problemType(slug: string): string {
  return `urn:celforge:problem:${slug}`;
}

/**
 * An error meant for the client. Throw it from a service or route; the error handler turns it into
 * problem+json. `headers` are added to the answer (WWW-Authenticate, Retry-After, Allow, …).
 */
export class HttpProblem extends Error {
  readonly status: number;
  readonly slug: string;
  readonly detail?: string;
  readonly extensions: Record<string, unknown>;
  readonly headers: Record<string, string>;
  readonly title?: string;

  constructor(
    status: number,
    slug: string,
    detail?: string,
    options: { extensions?: Record<string, unknown>; headers?: Record<string, string>; title?: string } = {},
  ) {
    super(detail ?? slug);
    this.name = 'HttpProblem';
    this.status = status;
    this.slug = slug;
    this.detail = detail;
    this.extensions = options.extensions ?? {};
    this.headers = options.headers ?? {};
    this.title = options.title;
  }

  toProblem(): Problem {
    return {
      type: problemType(this.slug),
      title: this.title ?? titleFor(this.status),
      status: this.status,
      ...(this.detail !== undefined && { detail: this.detail }),
      ...this.extensions,
    };
  }
}

export function titleFor(status: number): string {
  return TITLES[status] ?? (status >= 500 ? 'Server Error' : 'Client Error');
}

export const notFound = (detail = 'No such resource.') => new HttpProblem(404, 'not-found', detail);
export const badRequest = (detail: string, errors?: Problem['errors']) =>
  new HttpProblem(400, 'bad-request', detail, errors ? { extensions: { errors } } : {});
export const conflict = (detail: string) => new HttpProblem(409, 'conflict', detail);
export const forbidden = (slug: string, detail: string) => new HttpProblem(403, slug, detail);
