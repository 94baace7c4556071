import { isIP } from 'node:net';
import type { Static } from 'typebox';
import Value from 'typebox/value';
import type { Form, SettingGroup } from './settings.js';
import { ConfigError, readVariable, type Env } from './variables.js';

/** What `readSettings` looks at in a setting's schema (see settings.ts). */
export interface SettingSchema {
  type?: string;
  enum?: string[];
  items?: SettingSchema;
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  pattern?: string;
  form?: Form;
  protocols?: string[];
  mismatch?: string;
  shape?: string;
  defaultText?: string;
  vault?: string;
}

export const settingSchema = (group: SettingGroup, key: string): SettingSchema => group.properties[key] as SettingSchema;

/** The variable behind one of a group's settings; `id` fills in a provider group's `<ID>`. */
export const variableName = (group: SettingGroup, key: string, id = '<ID>') => `${group.variablePrefix.replace('<ID>', id.toUpperCase())}${key}`;

export interface ReadOptions {
  /** a provider group's id */
  id?: string;
  /** ends the message about a required setting that is missing */
  requiredFor?: string;
}

/**
 * Reads one group from the environment and `*_FILE` twins: an unset variable takes the schema's
 * default, a set one is parsed as its schema says and checked against its constraints. A bad value
 * stops with one line naming the variable.
 */
export function readSettings<G extends SettingGroup>(env: Env, group: G, options: ReadOptions = {}): Static<G> {
  const values: Record<string, unknown> = {};
  for (const key of Object.keys(group.properties)) {
    const name = variableName(group, key, options.id);
    const schema = settingSchema(group, key);
    const text = readVariable(env, name);
    if (text !== undefined) values[key] = parseSetting(name, text, schema);
    else if (schema.default !== undefined) values[key] = structuredClone(schema.default);
    else if (group.required?.includes(key)) throw new ConfigError(`${name} is required${options.requiredFor ?? ''}`);
  }
  return values as Static<G>;
}

/** Comma- (or space-) separated items, empty ones dropped. */
export function parseList(text: string | undefined): string[] {
  return (text ?? '')
    .split(/[\s,]+/)
    .map((item) => item.trim())
    .filter(Boolean);
}

function parseSetting(name: string, text: string, schema: SettingSchema): unknown {
  if (schema.type === 'array') {
    const items = parseList(text).map((item) => parseSetting(name, item, schema.items ?? {}));
    if (!Value.Check(schema, items)) throw new ConfigError(`${name}: ${schema.mismatch ?? 'not a valid list'}`);
    return items;
  }
  if (schema.type === 'integer') {
    return schema.form === 'duration' ? parseDuration(name, text) : parseInteger(name, text, schema.minimum ?? 0, schema.maximum ?? Number.MAX_SAFE_INTEGER);
  }
  if (schema.type === 'boolean') return parseFlag(name, text);
  if (schema.enum && !schema.enum.includes(text)) throw new ConfigError(`${name}: "${text}" is not one of ${schema.enum.join(', ')}`);
  const value = parseForm(name, text, schema);
  if (!Value.Check(schema, value)) throw new ConfigError(`${name}: "${text}" ${schema.mismatch ?? 'is not valid'}`);
  return value;
}

function parseForm(name: string, text: string, schema: SettingSchema): string {
  switch (schema.form) {
    case 'url':
      return parseUrl(name, text, schema.protocols ?? ['http:', 'https:']);
    case 'origin':
      return parseOrigin(name, text);
    case 'address':
      return parseAddress(name, text);
    case 'host':
      if (!isIP(text) && !/^[A-Za-z0-9.-]{1,253}$/.test(text)) throw new ConfigError(`${name}: "${text}" is not a host`);
      return text;
    case 'issuer':
      return parseIssuer(name, text);
    default:
      return text;
  }
}

const DURATION = /^(\d+)\s*(ms|s|m|h|d)?$/;
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** "15m", "900s", "900", "1h" → seconds */
export function parseDuration(name: string, text: string): number {
  const match = DURATION.exec(text.trim());
  if (!match) throw new ConfigError(`${name}: "${text}" is not a duration like 15m, 900s or 1h`);
  const seconds = Number(match[1]) * UNIT_SECONDS[match[2] ?? 's']!;
  if (!Number.isFinite(seconds) || seconds < 1) throw new ConfigError(`${name}: must be at least 1s`);
  return Math.floor(seconds);
}

export function parseInteger(name: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text.trim())) throw new ConfigError(`${name}: "${text}" is not a whole number`);
  const value = Number(text);
  if (value < min || value > max) throw new ConfigError(`${name}: ${value} is outside ${min}–${max}`);
  return value;
}

function parseFlag(name: string, text: string): boolean {
  if (['true', '1', 'yes', 'on'].includes(text.toLowerCase())) return true;
  if (['false', '0', 'no', 'off'].includes(text.toLowerCase())) return false;
  throw new ConfigError(`${name}: "${text}" is not true or false`);
}

function parseUrl(name: string, text: string, protocols: string[]): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${name}: not a valid URL`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(`${name}: must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
  }
  return text;
}

function parseOrigin(name: string, text: string): string {
  parseUrl(name, text, ['http:', 'https:']);
  const origin = new URL(text).origin;
  if (origin !== text.replace(/\/$/, '')) throw new ConfigError(`${name}: "${text}" is not a bare origin like https://studio.example`);
  return origin;
}

function parseAddress(name: string, text: string): string {
  const [address, bits, ...rest] = text.split('/');
  const family = isIP(address ?? '');
  const maxBits = family === 6 ? 128 : 32;
  if (!family || rest.length > 0 || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= maxBits))) {
    throw new ConfigError(`${name}: "${text}" is not an IP address or CIDR`);
  }
  return text;
}

function parseIssuer(name: string, text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${name}: not a valid URL`);
  }
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new ConfigError(`${name}: must start with https:// (http:// only for localhost)`);
  }
  return text.replace(/\/$/, '');
}

/** The group's settings Vault may hold: Vault key → variable (`id` fills in a provider group's `<id>`). */
export function vaultKeys(group: SettingGroup, id = '<id>'): Record<string, string> {
  const keys: Record<string, string> = {};
  for (const key of Object.keys(group.properties)) {
    const vault = settingSchema(group, key).vault;
    if (vault) keys[vault.replace('<id>', id)] = variableName(group, key, id);
  }
  return keys;
}
