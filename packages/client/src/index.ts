import createClient, { type Client } from 'openapi-fetch';
import type { paths } from './schema.js';

export type { components, paths } from './schema.js';
export type CelforgeClient = Client<paths>;

export interface ClientOptions {
  /** the service's origin, e.g. `https://studio.example`; empty = the page's own origin */
  baseUrl?: string;
  /** a fetch that adds credentials (the studio's refreshes and retries a 401 once) */
  fetch?: (request: Request) => Promise<Response>;
}

/** A client typed from Celforge's OpenAPI document: every path, body and answer is checked by TypeScript. */
export function createCelforgeClient(options: ClientOptions = {}): CelforgeClient {
  return createClient<paths>({ baseUrl: options.baseUrl ?? '', fetch: options.fetch });
}

/** The RFC 9457 problem every error answer carries. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  errors?: { in: string; pointer: string; detail: string }[];
  [extension: string]: unknown;
}

export { signingFetch, signatureHeaders, type SigningOptions } from './signing.js';
