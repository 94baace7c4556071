import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { signIn, useTestApp } from '../support/app.js';
import { describeEachDialect } from '../support/dialects.js';
import { generate, ROOMY_LIMITS, waitFor, type Json } from './helpers.js';

/** A temporary file as an asset write names it, last modified `ageMs` ago. */
function plantTemp(dir: string, ageMs: number): string {
  const file = path.join(dir, `${randomUUID()}-0.png.${randomUUID()}.tmp`);
  writeFileSync(file, 'half a png');
  const when = new Date(Date.now() - ageMs);
  utimesSync(file, when, when);
  return file;
}

describeEachDialect('temporary asset files left by a killed writer', (dialect) => {
  const t = useTestApp(dialect, { limits: ROOMY_LIMITS, previewStepMs: 0 });

  it('are removed when the app starts once they are an hour old; younger ones and real assets stay', async () => {
    const user = await signIn(t.app);
    const submitted = (await generate(t.app, user.authorization, { prompt: 'a kept result', type: 'image', width: 64, height: 64 })).json() as Json;
    const job = await waitFor(t.app, user.authorization, submitted.job_id, ['succeeded']);
    const dir = path.join(t.config.dataDir, 'assets');
    const realFiles = readdirSync(dir).filter((name) => !name.endsWith('.tmp'));
    expect(realFiles.length).toBeGreaterThan(0);

    const old = plantTemp(dir, 2 * 60 * 60 * 1000);
    const olderStill = plantTemp(dir, 3 * 24 * 60 * 60 * 1000);
    const recent = plantTemp(dir, 50 * 60 * 1000);
    const fresh = plantTemp(dir, 0);

    const restarted = await buildApp(t.config);
    try {
      expect(existsSync(old)).toBe(false);
      expect(existsSync(olderStill)).toBe(false);
      expect(existsSync(recent)).toBe(true);
      expect(existsSync(fresh)).toBe(true);
      expect(readdirSync(dir).filter((name) => !name.endsWith('.tmp'))).toEqual(realFiles);
      const bytes = await restarted.inject({ url: job.assets[0].url });
      expect(bytes.statusCode).toBe(200);
      expect(bytes.rawPayload.length).toBe(job.assets[0].byte_size);
    } finally {
      await restarted.close();
    }
  });
});
