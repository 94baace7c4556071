import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

/**
 * A software WebAuthn authenticator for tests: ES256 keys made with node:crypto, 'none'
 * attestation, discoverable credentials, and authenticator data and client data built as a browser
 * and a platform authenticator build them. Its answers are what `PublicKeyCredential.toJSON()`
 * gives, so they go to the API as the studio sends them.
 */

type Json = Record<string, unknown>;

const b64url = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest();

/** The CBOR subset attestation objects and COSE keys use (RFC 8949): integers, byte/text strings, maps. */
export function cbor(value: unknown): Buffer {
  const head = (major: number, n: number) => {
    if (n < 24) return Buffer.from([(major << 5) | n]);
    if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
    if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
    const out = Buffer.alloc(5);
    out[0] = (major << 5) | 26;
    out.writeUInt32BE(n, 1);
    return out;
  };
  if (typeof value === 'number') return value >= 0 ? head(0, value) : head(1, -1 - value);
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([head(3, bytes.length), bytes]);
  }
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), value]);
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value as Json);
  return Buffer.concat([head(5, entries.length), ...entries.flatMap(([k, v]) => [cbor(k), cbor(v)])]);
}

export interface Flags {
  userPresent?: boolean;
  userVerified?: boolean;
  backupEligible?: boolean;
  backedUp?: boolean;
}

function flagsByte(flags: Flags, attested: boolean): number {
  return (
    (flags.userPresent !== false ? 0x01 : 0) |
    (flags.userVerified !== false ? 0x04 : 0) |
    (flags.backupEligible ? 0x08 : 0) |
    (flags.backedUp ? 0x10 : 0) |
    (attested ? 0x40 : 0)
  );
}

export interface SoftCredential {
  id: Buffer;
  rpId: string;
  userHandle: string;
  privateKey: KeyObject;
  counter: number;
}

export interface Ceremony {
  /** the origin the "browser" reports (default: the authenticator's) */
  origin?: string;
  /** the RP ID the authenticator signs for (default: the options', else the authenticator's) */
  rpId?: string;
  flags?: Flags;
  /** the signature counter to report (default: one more than the last) */
  counter?: number;
  /** the credential to use (default: the first the options allow) */
  credential?: SoftCredential;
}

export class SoftAuthenticator {
  readonly credentials: SoftCredential[] = [];

  constructor(
    readonly origin: string,
    /** start each new credential's counter here; 0 = an authenticator without a counter (as synced passkeys) */
    readonly counting = true,
  ) {}

  private get defaultRpId(): string {
    return new URL(this.origin).hostname;
  }

  /** navigator.credentials.create(): a RegistrationResponseJSON. */
  create(options: Json, ceremony: Ceremony = {}): Json {
    const rp = options.rp as { id?: string };
    const user = options.user as { id: string };
    const rpId = ceremony.rpId ?? rp.id ?? this.defaultRpId;
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' });
    const credential: SoftCredential = { id: randomBytes(32), rpId, userHandle: user.id, privateKey, counter: this.counting ? 1 : 0 };
    const cose = cbor(
      new Map<number, unknown>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(jwk.x!, 'base64url')],
        [-3, Buffer.from(jwk.y!, 'base64url')],
      ]),
    );
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(credential.counter);
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(credential.id.length);
    const authData = Buffer.concat([sha256(rpId), Buffer.from([flagsByte(ceremony.flags ?? {}, true)]), counter, Buffer.alloc(16), idLength, credential.id, cose]);
    const clientData = this.clientData('webauthn.create', options.challenge as string, ceremony);
    this.credentials.push(credential);
    return {
      id: b64url(credential.id),
      rawId: b64url(credential.id),
      type: 'public-key',
      response: {
        clientDataJSON: b64url(clientData),
        attestationObject: b64url(cbor({ fmt: 'none', attStmt: {}, authData })),
        transports: ['internal'],
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }

  /** navigator.credentials.get(): an AuthenticationResponseJSON. */
  get(options: Json, ceremony: Ceremony = {}): Json {
    const allowed = ((options.allowCredentials as { id: string }[] | undefined) ?? []).map((c) => c.id);
    const credential =
      ceremony.credential ?? this.credentials.find((c) => allowed.length === 0 || allowed.includes(b64url(c.id)));
    if (!credential) throw new Error('no credential for these options');
    const rpId = ceremony.rpId ?? (options.rpId as string | undefined) ?? credential.rpId;
    if (ceremony.counter !== undefined) credential.counter = ceremony.counter;
    else if (credential.counter > 0) credential.counter += 1;
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(credential.counter);
    const authenticatorData = Buffer.concat([sha256(rpId), Buffer.from([flagsByte(ceremony.flags ?? {}, false)]), counter]);
    const clientData = this.clientData('webauthn.get', options.challenge as string, ceremony);
    const signature = sign('sha256', Buffer.concat([authenticatorData, sha256(clientData)]), credential.privateKey);
    return {
      id: b64url(credential.id),
      rawId: b64url(credential.id),
      type: 'public-key',
      response: {
        clientDataJSON: b64url(clientData),
        authenticatorData: b64url(authenticatorData),
        signature: b64url(signature),
        userHandle: credential.userHandle,
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }

  private clientData(type: string, challenge: string, ceremony: Ceremony): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin: ceremony.origin ?? this.origin, crossOrigin: false }), 'utf8');
  }
}
