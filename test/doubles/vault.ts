/**
 * An HTTP double of HashiCorp Vault, enough of it for Celforge's Vault secret source. Written
 * from Vault's API documentation (HTTP API overview, KV v2, AppRole, token auth method):
 *
 * - `GET  /v1/{mount}/data/{path}[?version=n]` KV v2 read: `{ data: { data, metadata } }`;
 *   404 `{ errors: [] }` when missing, 404 with `data.data: null` and the metadata when the
 *   version is deleted.
 * - `POST /v1/auth/approle/login {role_id, secret_id}` → `{ auth: { client_token, lease_duration,
 *   renewable, policies, ... } }`; 400 `invalid role or secret ID` when they do not match.
 * - `POST /v1/auth/token/renew-self [{increment}]` → `{ auth }`, extends the TTL by the token's TTL
 *   (the docs allow ignoring `increment`, and this double does).
 * - `GET  /v1/auth/token/lookup-self` → `{ data: { ttl, renewable, policies, ... } }`.
 * - `POST /v1/auth/token/revoke-self` → 204.
 * - Token in `X-Vault-Token` (or `Authorization: Bearer`); missing, unknown, revoked or expired →
 *   403 `{ errors: ["permission denied"] }`. PUT is treated as POST, as Vault does.
 * - With `namespace` set, requests must carry a matching `X-Vault-Namespace`; otherwise token
 *   requests get 403 and the login route does not exist (404), as in another namespace.
 *
 * Not modelled: ACL policies (use `forbid`), max TTLs, KV writes over HTTP (use `setSecret`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface VaultDoubleOptions {
  /** KV v2 entries by path under the mount, e.g. `{ celforge: { database_url: '...' } }` */
  secrets?: Record<string, Record<string, unknown>>;
  /** AppRole credentials: role_id → secret_id */
  roles?: Record<string, string>;
  /** tokens accepted from the start */
  tokens?: string[];
  /**
   * TTL of every token, seconds. Unset: the given tokens never expire (like a root token) and
   * AppRole tokens live 3600 s. Tokens with a TTL are renewable.
   */
  tokenTtlSeconds?: number;
  /** Enterprise namespace all requests must name, e.g. 'studio/prod' */
  namespace?: string;
  /** KV v2 mount, default 'secret' */
  mount?: string;
  /** accept connections and never answer */
  hang?: boolean;
}

export interface VaultCall {
  method: string;
  /** URL path without the query, e.g. /v1/secret/data/celforge */
  path: string;
  query: string;
  namespace?: string;
  withToken: boolean;
}

export interface VaultDouble {
  addr: string;
  calls: VaultCall[];
  /** client tokens issued by AppRole logins, oldest first */
  issuedTokens: string[];
  /** writes a new version of a KV entry and returns its version number */
  setSecret(path: string, data: Record<string, unknown>): number;
  /** soft-deletes the latest version of a KV entry, like `DELETE /v1/{mount}/data/{path}` */
  deleteSecret(path: string): void;
  revokeToken(token: string): void;
  /** reads of this KV path answer 403, as if the token's policy did not allow them */
  forbid(path: string): void;
  /** the next request gets this answer instead, e.g. `failNext(503, ['Vault is sealed'])` */
  failNext(status: number, errors: string[]): void;
  /** stop (or resume) answering new requests */
  hang(on?: boolean): void;
  close(): Promise<void>;
}

interface TokenRecord {
  accessor: string;
  /** seconds; 0 = never expires */
  ttl: number;
  expiresAt?: number;
  renewable: boolean;
  policies: string[];
  issuedAt: number;
  path: string;
}

interface SecretVersion {
  data: Record<string, unknown>;
  createdTime: string;
  deletionTime: string;
  destroyed: boolean;
}

interface Answer {
  status: number;
  body?: unknown;
}

const DEFAULT_APPROLE_TTL = 3600;

export async function startVaultDouble(options: VaultDoubleOptions = {}): Promise<VaultDouble> {
  const state = new VaultState(options);
  const server = createServer((req, res) => {
    void handle(state, req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    addr: `http://127.0.0.1:${port}`,
    calls: state.calls,
    issuedTokens: state.issuedTokens,
    setSecret: (path, data) => state.setSecret(path, data),
    deleteSecret: (path) => state.deleteSecret(path),
    revokeToken: (token) => void state.tokens.delete(token),
    forbid: (path) => void state.forbidden.add(trimSlashes(path)),
    failNext: (status, errors) => void state.failures.push({ status, body: { errors } }),
    hang: (on = true) => {
      state.hanging = on;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

class VaultState {
  readonly calls: VaultCall[] = [];
  readonly issuedTokens: string[] = [];
  readonly tokens = new Map<string, TokenRecord>();
  readonly secrets = new Map<string, SecretVersion[]>();
  readonly forbidden = new Set<string>();
  readonly failures: Answer[] = [];
  readonly roles: Record<string, string>;
  readonly mount: string;
  readonly namespace?: string;
  readonly ttl?: number;
  hanging: boolean;

  constructor(options: VaultDoubleOptions) {
    this.roles = options.roles ?? {};
    this.mount = trimSlashes(options.mount ?? 'secret');
    this.namespace = options.namespace === undefined ? undefined : trimSlashes(options.namespace);
    this.ttl = options.tokenTtlSeconds;
    this.hanging = options.hang ?? false;
    for (const token of options.tokens ?? []) this.addToken(token, this.ttl ?? 0, 'auth/token/create');
    for (const [path, data] of Object.entries(options.secrets ?? {})) this.setSecret(path, data);
  }

  addToken(token: string, ttl: number, path: string): TokenRecord {
    const now = Date.now();
    const record: TokenRecord = {
      accessor: randomBytes(12).toString('base64url'),
      ttl,
      expiresAt: ttl > 0 ? now + ttl * 1000 : undefined,
      renewable: ttl > 0,
      policies: ['default', 'celforge'],
      issuedAt: now,
      path,
    };
    this.tokens.set(token, record);
    return record;
  }

  /** The token's record if it is known and not expired; expired tokens are revoked, as Vault does. */
  validToken(token: string | undefined): TokenRecord | undefined {
    if (!token) return undefined;
    const record = this.tokens.get(token);
    if (record?.expiresAt !== undefined && record.expiresAt <= Date.now()) {
      this.tokens.delete(token);
      return undefined;
    }
    return record;
  }

  setSecret(path: string, data: Record<string, unknown>): number {
    const key = trimSlashes(path);
    const versions = this.secrets.get(key) ?? [];
    versions.push({ data: structuredClone(data), createdTime: new Date().toISOString(), deletionTime: '', destroyed: false });
    this.secrets.set(key, versions);
    return versions.length;
  }

  deleteSecret(path: string): void {
    const latest = this.secrets.get(trimSlashes(path))?.at(-1);
    if (latest) latest.deletionTime = new Date().toISOString();
  }
}

async function handle(state: VaultState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://vault.invalid');
  const token = tokenOf(req);
  const namespace = header(req, 'x-vault-namespace');
  state.calls.push({ method: req.method ?? '', path: url.pathname, query: url.search, namespace, withToken: Boolean(token) });
  if (state.hanging) return; // never answered; close() ends the connection

  let answer: Answer;
  try {
    const body = await readJson(req);
    answer = state.failures.shift() ?? route(state, { method: normaliseMethod(req.method), url, token, namespace, body });
  } catch (error) {
    answer = { status: 400, body: { errors: [`failed to parse JSON input: ${(error as Error).message}`] } };
  }
  send(res, answer);
}

interface Request {
  method: string;
  url: URL;
  token?: string;
  namespace?: string;
  body: Record<string, unknown>;
}

function route(state: VaultState, request: Request): Answer {
  if (!request.url.pathname.startsWith('/v1/')) return { status: 404, body: { errors: [] } };
  const path = request.url.pathname.slice('/v1/'.length);
  const inNamespace = state.namespace === undefined || trimSlashes(request.namespace ?? '') === state.namespace;

  if (path === 'auth/approle/login') {
    if (!inNamespace) return noHandler(path);
    return request.method === 'POST' ? appRoleLogin(state, request.body) : unsupported();
  }

  const record = inNamespace ? state.validToken(request.token) : undefined;
  if (!record || !request.token) return permissionDenied();

  switch (path) {
    case 'auth/token/lookup-self':
      return request.method === 'GET' ? lookupSelf(request.token, record) : unsupported();
    case 'auth/token/renew-self':
      return request.method === 'POST' ? renewSelf(request.token, record) : unsupported();
    case 'auth/token/revoke-self':
      if (request.method !== 'POST') return unsupported();
      state.tokens.delete(request.token);
      return { status: 204 };
  }

  const kvPrefix = `${state.mount}/data/`;
  if (path.startsWith(kvPrefix)) {
    if (request.method !== 'GET') return unsupported();
    const secretPath = path.slice(kvPrefix.length).split('/').map(decodeURIComponent).join('/');
    return readSecret(state, secretPath, request.url.searchParams.get('version'));
  }
  return noHandler(path);
}

function appRoleLogin(state: VaultState, body: Record<string, unknown>): Answer {
  const roleId = body.role_id;
  const secretId = body.secret_id;
  if (typeof roleId !== 'string' || roleId === '') return { status: 400, body: { errors: ['missing role_id'] } };
  if (typeof secretId !== 'string' || !Object.hasOwn(state.roles, roleId) || state.roles[roleId] !== secretId) {
    return { status: 400, body: { errors: ['invalid role or secret ID'] } };
  }
  const token = `hvs.${randomBytes(24).toString('base64url')}`;
  const record = state.addToken(token, state.ttl ?? DEFAULT_APPROLE_TTL, 'auth/approle/login');
  state.issuedTokens.push(token);
  return { status: 200, body: envelope({ auth: authBlock(token, record) }) };
}

function renewSelf(token: string, record: TokenRecord): Answer {
  if (!record.renewable) return { status: 400, body: { errors: ['lease is not renewable'] } };
  record.expiresAt = Date.now() + record.ttl * 1000;
  return { status: 200, body: envelope({ auth: authBlock(token, record) }) };
}

function lookupSelf(token: string, record: TokenRecord): Answer {
  const remaining = record.expiresAt === undefined ? 0 : Math.max(0, Math.ceil((record.expiresAt - Date.now()) / 1000));
  return {
    status: 200,
    body: envelope({
      data: {
        accessor: record.accessor,
        creation_time: Math.floor(record.issuedAt / 1000),
        creation_ttl: record.ttl,
        display_name: record.path === 'auth/approle/login' ? 'approle' : 'token',
        entity_id: '',
        expire_time: record.expiresAt === undefined ? null : new Date(record.expiresAt).toISOString(),
        explicit_max_ttl: 0,
        id: token,
        issue_time: new Date(record.issuedAt).toISOString(),
        meta: null,
        num_uses: 0,
        orphan: true,
        path: record.path,
        policies: record.policies,
        renewable: record.renewable,
        ttl: remaining,
        type: 'service',
      },
    }),
  };
}

function readSecret(state: VaultState, path: string, versionParam: string | null): Answer {
  if (state.forbidden.has(path)) return permissionDenied();
  const versions = state.secrets.get(path);
  const wanted = versionParam === null || versionParam === '' ? 0 : Number(versionParam);
  if (!Number.isInteger(wanted) || wanted < 0) return { status: 400, body: { errors: ['invalid version'] } };
  const number = wanted === 0 ? versions?.length ?? 0 : wanted;
  const version = versions?.[number - 1];
  if (!version) return { status: 404, body: { errors: [] } };

  const metadata = {
    created_time: version.createdTime,
    custom_metadata: null,
    deletion_time: version.deletionTime,
    destroyed: version.destroyed,
    version: number,
  };
  const gone = version.deletionTime !== '' || version.destroyed;
  return { status: gone ? 404 : 200, body: envelope({ data: { data: gone ? null : version.data, metadata } }) };
}

function authBlock(token: string, record: TokenRecord): Record<string, unknown> {
  return {
    client_token: token,
    accessor: record.accessor,
    policies: record.policies,
    token_policies: record.policies,
    metadata: null,
    lease_duration: record.ttl,
    renewable: record.renewable,
    entity_id: '',
    token_type: 'service',
    orphan: true,
  };
}

/** The fields every successful Vault answer carries. */
function envelope(fields: { data?: unknown; auth?: unknown }): Record<string, unknown> {
  return {
    request_id: randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data: fields.data ?? null,
    wrap_info: null,
    warnings: null,
    auth: fields.auth ?? null,
  };
}

function permissionDenied(): Answer {
  return { status: 403, body: { errors: ['permission denied'] } };
}

function unsupported(): Answer {
  return { status: 405, body: { errors: [] } };
}

function noHandler(path: string): Answer {
  return { status: 404, body: { errors: [`no handler for route "${path}". route entry not found.`] } };
}

function send(res: ServerResponse, answer: Answer): void {
  if (answer.body === undefined) {
    res.writeHead(answer.status).end();
    return;
  }
  const text = JSON.stringify(answer.body);
  res.writeHead(answer.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  const value: unknown = JSON.parse(text);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('expected a JSON object');
  return value as Record<string, unknown>;
}

function tokenOf(req: IncomingMessage): string | undefined {
  const direct = header(req, 'x-vault-token');
  if (direct) return direct;
  const authorization = header(req, 'authorization');
  return authorization?.startsWith('Bearer ') ? authorization.slice('Bearer '.length) : undefined;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function normaliseMethod(method: string | undefined): string {
  return method === 'PUT' ? 'POST' : method ?? 'GET';
}

function trimSlashes(path: string): string {
  return path.replace(/^\/+|\/+$/g, '');
}
