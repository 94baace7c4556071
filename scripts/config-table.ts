import { settingSchema, variableName, type SettingSchema } from '../src/config/read-settings.js';
import { MAIN_GROUPS, SSO_GROUPS, type SettingGroup } from '../src/config/settings.js';

/** README's configuration tables, written from the schemas of src/config/settings.ts. */
const TABLES: Record<string, SettingGroup[]> = { main: MAIN_GROUPS, sso: SSO_GROUPS };

/** a code span; a `|` is escaped, or it would end the table cell (GFM) */
const code = (value: string) => `\`${value.replaceAll('|', '\\|')}\``;

function seconds(value: number): string {
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]] as const) if (value % size === 0) return `${value / size}${unit}`;
  return `${value}s`;
}

function kind(schema: SettingSchema, plural = false): string {
  const s = plural ? 's' : '';
  if (schema.form === 'duration') return `duration${s} (${code('15m')}, ${code('900s')}, ${code('1h')})`;
  if (schema.type === 'integer') return `whole number${s} ${schema.minimum}–${schema.maximum}`;
  if (schema.type === 'boolean') return `${code('true')} or ${code('false')}`;
  if (schema.enum) return `one of ${schema.enum.map(code).join(', ')}`;
  if (schema.type === 'array') return `list of ${kind(schema.items ?? {}, true)}, comma-separated`;
  if (schema.form === 'url') return `URL${s} (${(schema.protocols ?? []).map((p) => code(`${p}//`)).join(' or ')})`;
  if (schema.form === 'origin') return `origin${s} (${code('https://host[:port]')})`;
  if (schema.form === 'address') return `IP address${plural ? 'es' : ''} or CIDR${s}`;
  if (schema.form === 'host') return 'IP address or host name';
  if (schema.form === 'issuer') return 'URL';
  if (schema.shape) return schema.shape;
  if (schema.pattern) return `text${s} matching ${code(schema.pattern)}`;
  return plural ? 'words' : 'text';
}

function fallback(schema: SettingSchema, required: boolean): string {
  if (schema.defaultText !== undefined) return schema.defaultText;
  const value = schema.default;
  if (value === undefined) return required ? 'required' : 'unset';
  if (schema.form === 'duration' && typeof value === 'number') return code(seconds(value));
  if (Array.isArray(value)) return value.length === 0 ? 'empty' : code(value.join(' '));
  return value === '' ? 'empty' : code(String(value));
}

function meaning(schema: SettingSchema): string {
  const description = schema.description ?? '';
  return schema.vault ? `${description}; env, ${code('*_FILE')} or Vault key ${code(schema.vault)}` : description;
}

function groupTable(group: SettingGroup): string {
  const rows = Object.keys(group.properties).map((key) => {
    const schema = settingSchema(group, key);
    const required = group.required?.includes(key) ?? false;
    return `| ${code(variableName(group, key))} | ${kind(schema)} | ${fallback(schema, required)} | ${meaning(schema)} |`;
  });
  return [`**${group.title}**`, '', '| variable | type | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

export function configurationTable(name: string): string {
  return TABLES[name]!.map(groupTable).join('\n\n');
}

const start = (name: string) => `<!-- config:${name} (written by npm run docs:config from src/config/settings.ts) -->`;
const end = (name: string) => `<!-- /config:${name} -->`;

/** README with each table between its markers written anew. */
export function withConfigurationTables(readme: string): string {
  let text = readme;
  for (const name of Object.keys(TABLES)) {
    const from = text.indexOf(start(name));
    const to = text.indexOf(end(name));
    if (from < 0 || to < from) throw new Error(`README.md lacks the markers ${start(name)} … ${end(name)}`);
    text = `${text.slice(0, from + start(name).length)}\n${configurationTable(name)}\n${text.slice(to)}`;
  }
  return text;
}
