/**
 * HashiCorp Vault as a secret source: one KV version 2 entry (default `secret/celforge`) whose
 * keys are Celforge's secret names (`database_url`, `signing_key`, ...).
 *
 * API used (Vault HTTP API v1): `GET /v1/{mount}/data/{path}`, `POST /v1/auth/approle/login`,
 * `GET /v1/auth/token/lookup-self`, `POST /v1/auth/token/renew-self`; token in `X-Vault-Token`,
 * Enterprise namespace in `X-Vault-Namespace`; errors as `{ errors: string[] }`.
 *
 * Error messages are written for the operator's start-up log: they may name the Vault address and
 * the KV path, never a token, a secret_id or a secret value.
 */

export interface VaultOptions {
  /** http(s) URL of the Vault server, e.g. https://vault.internal:8200 */
  addr: string;
  token?: string;
  roleId?: string;
  secretId?: string;
  /** Vault Enterprise namespace, sent as X-Vault-Namespace */
  namespace?: string;
  /** KV v2 mount, default 'secret' */
  mount?: string;
  /** entry under the mount, default 'celforge' */
  path?: string;
  /** per HTTP call, default 5000 */
  timeoutMs?: number;
  /**
   * Told about failures of the background token renewal (which is retried); start-up and
   * refresh() failures are thrown instead.
   */
  onError?: (error: VaultError) => void;
}

export interface VaultSecrets {
  /** the value under a lower-case key of the KV entry, e.g. get('database_url') */
  get(name: string): string | undefined;
  keys(): string[];
  /** re-reads the KV entry; on failure the previous values stay and the error is thrown */
  refresh(): Promise<void>;
  /** stops the renewal timer */
  close(): void;
}

export class VaultError extends Error {
  override readonly name = 'VaultError';
  constructor(
    message: string,
    /** HTTP status from Vault, when there was one */
    readonly status?: number,
  ) {
    super(message);
  }
}

const DEFAULT_TIMEOUT_MS = 5000;
/** renew when this share of the lease has passed */
const RENEW_AT = 2 / 3;
/** a failed background renewal is tried again after this long */
const RETRY_MS = 5000;
/** Node turns longer timeouts into 1 ms, which would renew in a loop (a 768h lease is close) */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Settings {
  origin: string;
  namespace?: string;
  mount: string;
  path: string;
  timeoutMs: number;
  credentials: { kind: 'token'; token: string } | { kind: 'approle'; roleId: string; secretId: string };
  onError?: (error: VaultError) => void;
}

interface Lease {
  token: string;
  /** seconds; 0 = never expires */
  ttl: number;
  renewable: boolean;
}

type Json = Record<string, unknown>;

export async function openVaultSecrets(options: VaultOptions): Promise<VaultSecrets> {
  const settings = validate(options);
  const client = new VaultClient(settings);
  await client.start();
  return {
    get: (name) => client.values.get(name),
    keys: () => [...client.values.keys()],
    refresh: () => client.refresh(),
    close: () => client.close(),
  };
}

function validate(options: VaultOptions): Settings {
  const origin = parseAddr(options.addr);
  const { token, roleId, secretId } = options;
  const hasAppRole = Boolean(roleId) || Boolean(secretId);
  if (token && hasAppRole) throw new VaultError('vault: give either a token or an AppRole role id and secret id, not both');
  if (!token && !(roleId && secretId)) {
    throw new VaultError(
      hasAppRole
        ? 'vault: AppRole needs both a role id and a secret id'
        : 'vault: no credentials: give a token, or an AppRole role id and secret id',
    );
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new VaultError('vault: timeoutMs must be a positive number');
  return {
    origin,
    namespace: options.namespace || undefined,
    mount: cleanKvPath('mount', options.mount ?? 'secret'),
    path: cleanKvPath('path', options.path ?? 'celforge'),
    timeoutMs,
    credentials: token ? { kind: 'token', token } : { kind: 'approle', roleId: roleId!, secretId: secretId! },
    onError: options.onError,
  };
}

function parseAddr(addr: string): string {
  let url: URL;
  try {
    url = new URL(addr);
  } catch {
    throw new VaultError('vault: the Vault address is not a URL (expected e.g. https://vault.example:8200)');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new VaultError(`vault: the Vault address must be http or https, not ${url.protocol}`);
  }
  // Credentials in the URL would end up in logs and error messages.
  if (url.username || url.password) throw new VaultError('vault: the Vault address must not contain a user name or password');
  return url.origin;
}

function cleanKvPath(what: string, value: string): string {
  const trimmed = value.replace(/^\/+|\/+$/g, '');
  const segments = trimmed.split('/');
  if (!trimmed || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new VaultError(`vault: ${what} "${value}" is not a valid Vault path`);
  }
  return segments.map(encodeURIComponent).join('/');
}

class VaultClient {
  values = new Map<string, string>();
  private lease: Lease | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private loggingIn: Promise<void> | undefined;

  constructor(private readonly settings: Settings) {}

  async start(): Promise<void> {
    await this.logIn();
    await this.refresh();
  }

  /** Reads the KV entry; a token Vault no longer accepts is replaced once when AppRole can. */
  async refresh(): Promise<void> {
    try {
      this.values = await this.readEntry();
    } catch (error) {
      if (!this.canLogInAgain(error)) throw error;
      await this.logIn();
      this.values = await this.readEntry();
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private get kvApiPath(): string {
    return `${this.settings.mount}/data/${this.settings.path}`;
  }

  /** The KV path as an operator would recognise it, e.g. "ns1/secret/data/celforge". */
  private get kvLabel(): string {
    const ns = this.settings.namespace?.replace(/\/*$/, '/') ?? '';
    return decodeURIComponent(`${ns}${this.kvApiPath}`);
  }

  private async readEntry(): Promise<Map<string, string>> {
    const action = `reading ${this.kvLabel}`;
    const response = await this.call('GET', this.kvApiPath, action, { token: this.token(), notFoundOk: true });
    if (response.status === 404) throw missingEntryError(this.kvLabel, response.body);
    const data = (response.body.data as Json | undefined)?.data;
    if (!isObject(data)) throw new VaultError(`vault: unexpected answer ${action}: no data (is ${this.settings.mount} a KV version 2 mount?)`);
    return toValues(data, this.kvLabel);
  }

  private token(): string {
    if (!this.lease) throw new VaultError('vault: not logged in');
    return this.lease.token;
  }

  private canLogInAgain(error: unknown): boolean {
    return this.settings.credentials.kind === 'approle' && error instanceof VaultError && error.status === 403;
  }

  /** One login at a time: a renewal and a refresh that both find the token dead share it. */
  private logIn(): Promise<void> {
    this.loggingIn ??= this.doLogIn().finally(() => {
      this.loggingIn = undefined;
    });
    return this.loggingIn;
  }

  private async doLogIn(): Promise<void> {
    const lease = this.settings.credentials.kind === 'token'
      ? await this.lookUpToken(this.settings.credentials.token)
      : await this.appRoleLogin(this.settings.credentials.roleId, this.settings.credentials.secretId);
    this.setLease(lease);
  }

  private async lookUpToken(token: string): Promise<Lease> {
    const action = 'looking up the token';
    const { body } = await this.call('GET', 'auth/token/lookup-self', action, { token });
    const data = body.data;
    if (!isObject(data)) throw new VaultError(`vault: unexpected answer ${action}`);
    return { token, ttl: numberOr(data.ttl, 0), renewable: data.renewable === true };
  }

  private async appRoleLogin(roleId: string, secretId: string): Promise<Lease> {
    const { body } = await this.call('POST', 'auth/approle/login', 'logging in with AppRole', {
      body: { role_id: roleId, secret_id: secretId },
    });
    return leaseFromAuth(body, 'logging in with AppRole');
  }

  private async renew(): Promise<void> {
    const token = this.token();
    const { body } = await this.call('POST', 'auth/token/renew-self', 'renewing the token', { token, body: {} });
    const lease = leaseFromAuth(body, 'renewing the token');
    // Renewal extends this token's lease; it never hands out a different token.
    this.setLease({ ...lease, token });
  }

  private setLease(lease: Lease): void {
    this.lease = lease;
    this.schedule(lease.ttl * 1000 * RENEW_AT);
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const lease = this.lease;
    if (this.closed || !lease || lease.ttl <= 0) return;
    // A token that cannot be renewed can only be replaced, and only AppRole can do that.
    if (!lease.renewable && this.settings.credentials.kind !== 'approle') return;
    this.timer = setTimeout(() => void this.maintain(), Math.min(MAX_TIMER_MS, Math.max(0, Math.floor(delayMs))));
    this.timer.unref();
  }

  /** Timer body: renew the token, else log in again (AppRole), else report and retry later. */
  private async maintain(): Promise<void> {
    this.timer = undefined;
    if (this.closed) return;
    try {
      if (this.lease?.renewable) {
        await this.renewOrLogIn();
      } else {
        await this.logIn();
      }
    } catch (error) {
      if (this.closed) return;
      this.settings.onError?.(asVaultError(error));
      this.schedule(RETRY_MS);
    }
  }

  private async renewOrLogIn(): Promise<void> {
    try {
      await this.renew();
    } catch (error) {
      if (this.settings.credentials.kind !== 'approle') throw error;
      await this.logIn();
    }
  }

  private async call(
    method: 'GET' | 'POST',
    apiPath: string,
    action: string,
    options: { token?: string; body?: Json; notFoundOk?: boolean },
  ): Promise<{ status: number; body: Json }> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.token) headers['x-vault-token'] = options.token;
    if (this.settings.namespace) headers['x-vault-namespace'] = this.settings.namespace;
    if (options.body) headers['content-type'] = 'application/json';

    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.settings.origin}/v1/${apiPath}`, {
        method,
        headers,
        body: options.body ? JSON.stringify(options.body) : undefined,
        // A redirect could carry X-Vault-Token to another host; Vault forwards to the active node itself.
        redirect: 'error',
        signal: AbortSignal.timeout(this.settings.timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      throw this.transportError(error);
    }

    const body = parseJson(text);
    if (response.ok || (response.status === 404 && options.notFoundOk)) {
      if (body === undefined && response.status === 200) throw new VaultError(`vault: unexpected answer ${action}: not JSON (${response.status})`, response.status);
      return { status: response.status, body: body ?? {} };
    }
    throw this.httpError(response.status, action, body);
  }

  private transportError(error: unknown): VaultError {
    const where = `vault: unreachable at ${this.settings.origin}`;
    const name = (error as { name?: unknown } | null)?.name;
    if (name === 'TimeoutError' || name === 'AbortError') return new VaultError(`${where}: timed out after ${this.settings.timeoutMs} ms`);
    const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
    const code = typeof cause?.code === 'string' ? cause.code : undefined;
    const reason = code ? describeCode(code) : typeof cause?.message === 'string' ? cause.message : String(error);
    return new VaultError(`${where}: ${this.redact(reason)}`);
  }

  private httpError(status: number, action: string, body: Json | undefined): VaultError {
    const details = Array.isArray(body?.errors) ? body.errors.filter((e): e is string => typeof e === 'string') : [];
    const phrase = STATUS_PHRASES[status] ?? (status >= 500 ? 'server error' : 'request refused');
    const extra = details.filter((d) => d.toLowerCase() !== phrase).join('; ');
    const message = `vault: ${phrase} ${action} (${status})${extra ? `: ${extra}` : ''}`;
    return new VaultError(this.redact(message).slice(0, 500), status);
  }

  /** Vault's own error text is passed on, so make sure it cannot carry our credentials. */
  private redact(text: string): string {
    const credentials = this.settings.credentials;
    const secrets = credentials.kind === 'token' ? [credentials.token] : [credentials.secretId];
    if (this.lease) secrets.push(this.lease.token);
    return secrets.reduce((out, secret) => (secret ? out.split(secret).join('[redacted]') : out), text);
  }
}

const CONNECTION_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  UND_ERR_SOCKET: 'connection closed',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'TLS certificate not trusted',
  SELF_SIGNED_CERT_IN_CHAIN: 'TLS certificate not trusted',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'TLS certificate not trusted',
  CERT_HAS_EXPIRED: 'TLS certificate expired',
  ERR_TLS_CERT_ALTNAME_INVALID: 'TLS certificate does not match the host name',
};

function describeCode(code: string): string {
  const words = CONNECTION_ERRORS[code];
  return words ? `${words} (${code})` : code;
}

const STATUS_PHRASES: Record<number, string> = {
  400: 'invalid request',
  403: 'permission denied',
  404: 'not found',
  405: 'unsupported operation',
  429: 'rate limited',
  500: 'internal error',
  501: 'not initialized',
  502: 'upstream error',
  503: 'sealed or down for maintenance',
};

/** KV v2 answers 404 both for a missing entry and for one whose latest version is deleted. */
function missingEntryError(label: string, body: Json): VaultError {
  const metadata = (body.data as Json | undefined)?.metadata;
  if (isObject(metadata) && (metadata.destroyed === true || (typeof metadata.deletion_time === 'string' && metadata.deletion_time !== ''))) {
    const state = metadata.destroyed === true ? 'destroyed' : `deleted at ${String(metadata.deletion_time)}`;
    return new VaultError(`vault: no secret at ${label} (404): version ${String(metadata.version)} was ${state}`, 404);
  }
  return new VaultError(`vault: no secret at ${label} (404): create it, or check the mount and path`, 404);
}

function leaseFromAuth(body: Json, action: string): Lease {
  const auth = body.auth;
  if (!isObject(auth) || typeof auth.client_token !== 'string' || auth.client_token === '') {
    throw new VaultError(`vault: unexpected answer ${action}: no token`);
  }
  return { token: auth.client_token, ttl: numberOr(auth.lease_duration, 0), renewable: auth.renewable === true };
}

/**
 * KV values become strings: strings as they are, numbers and booleans with String(), objects and
 * arrays as JSON (e.g. a JWK kept as a nested object), null as absent. Keys are lower-cased so
 * `DATABASE_URL` written by hand still reads as `database_url`.
 */
function toValues(data: Json, label: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const [key, value] of Object.entries(data)) {
    if (value === null || value === undefined) continue;
    const name = key.toLowerCase();
    if (values.has(name)) throw new VaultError(`vault: ${label} has the key "${name}" twice in different cases`);
    values.set(name, typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value));
  }
  return values;
}

function asVaultError(error: unknown): VaultError {
  return error instanceof VaultError ? error : new VaultError(`vault: ${error instanceof Error ? error.message : String(error)}`);
}

function parseJson(text: string): Json | undefined {
  if (text.trim() === '') return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : fallback;
}
