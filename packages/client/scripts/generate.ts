/**
 * Writes packages/client/src/schema.d.ts from the OpenAPI document the app serves at
 * /api/anime/openapi.json. Run it (`npm run client:generate`) after changing a route's schema;
 * a test fails while the committed file is stale.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import openapiTS, { astToString } from 'openapi-typescript';
import { buildApp } from '../../../src/app.js';
import { testConfig } from '../../../src/config/config.js';

export const SCHEMA_FILE = resolve(dirname(fileURLToPath(import.meta.url)), '../src/schema.d.ts');

/** The OpenAPI document of a freshly built app (embedded store in a temporary directory, no worker). */
export async function openApiDocument(): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'celforge-openapi-'));
  const app = await buildApp(testConfig({ dataDir }), { worker: false });
  try {
    const response = await app.inject({ method: 'GET', url: '/api/anime/openapi.json' });
    return response.json() as Record<string, unknown>;
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function generateSchema(): Promise<string> {
  const ast = await openapiTS((await openApiDocument()) as never);
  return `// Generated from /api/anime/openapi.json by packages/client/scripts/generate.ts. Do not edit.\n\n${astToString(ast)}`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(SCHEMA_FILE, await generateSchema());
  console.log(`wrote ${SCHEMA_FILE}`);
}
