import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../../src');

/**
 * Libraries that take a noticeable part of a start to load and that only some deployments use:
 * BullMQ (scale-out only), the S3 client (S3 storage only), WebAuthn (at a passkey ceremony).
 * A restart after a crash waits for every module loaded at start, so these are loaded when needed.
 */
const LOADED_WHEN_NEEDED = ['bullmq', '@aws-sdk/', '@simplewebauthn/server'];

/** The modules a file loads when it is loaded: its imports and re-exports, except type-only ones and `import()`. */
function staticImports(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
  const found: string[] = [];
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement) && !statement.importClause?.isTypeOnly) {
      found.push((statement.moduleSpecifier as ts.StringLiteral).text);
    }
    if (ts.isExportDeclaration(statement) && statement.moduleSpecifier && !statement.isTypeOnly) {
      found.push((statement.moduleSpecifier as ts.StringLiteral).text);
    }
  }
  return found;
}

/** Every package loaded, through static imports, by loading `entry`; with the chain of files that leads to each. */
function packagesLoadedBy(entry: string): Map<string, string[]> {
  const packages = new Map<string, string[]>();
  const seen = new Set<string>();
  const walk = (file: string, trail: string[]) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const specifier of staticImports(file)) {
      if (specifier.startsWith('.')) {
        const target = path.resolve(path.dirname(file), specifier.replace(/\.js$/, '.ts'));
        if (existsSync(target)) walk(target, [...trail, path.relative(SRC, target)]);
      } else if (!specifier.startsWith('node:') && !packages.has(specifier)) {
        packages.set(specifier, trail);
      }
    }
  };
  walk(entry, [path.relative(SRC, entry)]);
  return packages;
}

describe('what a start loads', () => {
  it('loads BullMQ, the S3 client and WebAuthn only when they are used', () => {
    const packages = packagesLoadedBy(path.join(SRC, 'app.ts'));
    expect(packages.has('fastify')).toBe(true);
    const slow = [...packages].filter(([name]) => LOADED_WHEN_NEEDED.some((prefix) => name.startsWith(prefix)));
    expect(slow.map(([name, trail]) => `${name} via ${trail.join(' → ')}`)).toEqual([]);
  });
});
