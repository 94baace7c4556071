import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../config/config.js';
import { secretsDir, writeSecretFile } from '../config/local-secrets.js';

/** One Ed25519 key that signs access tokens. */
export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** The current key signs; the previous one still verifies tokens issued before a rotation. */
export interface SigningKeySet {
  current: SigningKey;
  previous?: SigningKey;
}

interface StoredKey {
  kid: string;
  /** PKCS#8 PEM */
  privateKey: string;
  created: string;
}

/** A PKCS#8 PEM, or a private JWK as JSON (Vault may keep the key as a nested object). */
function fromPem(kid: string, text: string): SigningKey {
  let privateKey: KeyObject;
  try {
    const trimmed = text.trim();
    privateKey = trimmed.startsWith('{')
      ? createPrivateKey({ key: JSON.parse(trimmed) as Record<string, string> & { kty: string }, format: 'jwk' })
      : createPrivateKey(trimmed);
  } catch {
    throw new ConfigError('CELFORGE_SIGNING_KEY: not a private key (expected an Ed25519 PKCS#8 PEM or JWK)');
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new ConfigError('CELFORGE_SIGNING_KEY: must be an Ed25519 private key');
  return { kid, privateKey, publicKey: createPublicKey(privateKey) };
}

function newStoredKey(): StoredKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  return {
    kid: randomBytes(8).toString('base64url'),
    privateKey: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    created: new Date().toISOString(),
  };
}

function keyFile(dataDir: string): string {
  return path.join(secretsDir(dataDir), 'signing-keys.json');
}

function writeKeys(dataDir: string, keys: StoredKey[]): void {
  writeSecretFile(keyFile(dataDir), JSON.stringify({ keys }, null, 2));
}

function readKeys(dataDir: string): StoredKey[] {
  const parsed = JSON.parse(readFileSync(keyFile(dataDir), 'utf8')) as { keys: StoredKey[] };
  return parsed.keys;
}

function toSet(keys: StoredKey[]): SigningKeySet {
  const [current, previous] = keys.map((k) => fromPem(k.kid, k.privateKey));
  if (!current) throw new ConfigError('the signing key file holds no key');
  return { current, previous };
}

/**
 * The token signing keys: from `CELFORGE_SIGNING_KEY` (a PEM; its kid is derived from its public
 * key) when given, else from the data dir, made on first start with mode 0600.
 */
export function loadSigningKeys(options: { dataDir: string; signingKey?: string }): SigningKeySet {
  if (options.signingKey) {
    const probe = fromPem('probe', options.signingKey);
    const raw = probe.publicKey.export({ format: 'jwk' }).x ?? '';
    return { current: { ...probe, kid: `env-${raw.slice(0, 11)}` } };
  }
  if (!existsSync(keyFile(options.dataDir))) writeKeys(options.dataDir, [newStoredKey()]);
  return toSet(readKeys(options.dataDir));
}

/** Makes a new current key; the old current stays as previous so its tokens live out their time. */
export function rotateSigningKeys(dataDir: string): SigningKeySet {
  const existing = existsSync(keyFile(dataDir)) ? readKeys(dataDir) : [];
  const keys = [newStoredKey(), ...existing].slice(0, 2);
  writeKeys(dataDir, keys);
  return toSet(keys);
}

export function publicJwks(set: SigningKeySet): { keys: Record<string, unknown>[] } {
  const keys = [set.current, set.previous].filter((k): k is SigningKey => k !== undefined);
  return {
    keys: keys.map((k) => ({ ...k.publicKey.export({ format: 'jwk' }), kid: k.kid, alg: 'EdDSA', use: 'sig' })),
  };
}
