import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { withConfigurationTables } from '../../scripts/config-table.js';
import { variableName } from '../../src/config/read-settings.js';
import { MAIN_GROUPS, SSO_GROUPS } from '../../src/config/settings.js';

const root = path.resolve(import.meta.dirname, '../..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(file) : entry.name.endsWith('.ts') ? [file] : [];
  });
}

describe('configuration schema', () => {
  it("is what README's configuration tables say (npm run docs:config writes them)", () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    expect(withConfigurationTables(readme)).toBe(readme);
  });

  it('names every variable the code reads', () => {
    const known = [...MAIN_GROUPS, ...SSO_GROUPS].flatMap((group) => Object.keys(group.properties).map((key) => variableName(group, key)));
    const provider = /^CELFORGE_OIDC_[A-Z0-9]+_(.+)$/;
    const named = new Set(
      sourceFiles(path.join(root, 'src')).flatMap((file) => readFileSync(file, 'utf8').match(/\b(?:CELFORGE_[A-Z0-9_]*[A-Z0-9]|DATABASE_URL|REDIS_URL)\b/g) ?? []),
    );
    const unknown = [...named].filter((name) => {
      const base = name.replace(/_FILE$/, '');
      const setting = provider.exec(base)?.[1];
      return !known.includes(base) && !(setting && known.includes(`CELFORGE_OIDC_<ID>_${setting}`)) && !known.some((k) => k.startsWith(`${base}_`));
    });
    expect(unknown).toEqual([]);
  });
});
