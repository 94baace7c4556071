import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, describe, expect, it } from 'vitest';
import { DiskObjectStore } from '../../src/assets/backends/disk.js';
import type { ObjectStore } from '../../src/assets/backends/object-store.js';
import { S3ObjectStore } from '../../src/assets/backends/s3.js';
import { ASSET_BACKENDS, startTestS3 } from '../support/s3.js';

const s3 = await startTestS3();
const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A body that yields `chunks` of 1 MiB and then, if told, fails instead of ending. */
function body(chunks: Buffer[], failAfter?: number): Readable {
  return Readable.from(
    (async function* () {
      for (const [index, chunk] of chunks.entries()) {
        if (failAfter !== undefined && index === failAfter) throw new Error('the renderer went away');
        yield chunk;
      }
    })(),
  );
}

for (const backend of ASSET_BACKENDS) {
  describe(`object store contract [${backend}]`, () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'celforge-objects-'));
    const settings = s3.settings();
    const store: ObjectStore = backend === 's3' ? new S3ObjectStore(settings) : new DiskObjectStore(dir, ['assets', 'thumbnails']);
    afterAll(async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('stores, reads whole and by range, lists, replaces and removes', async () => {
      const data = randomBytes(100_000);
      expect(await store.put('assets/a.bin', data, 'video/mp4')).toBe(data.length);
      expect(await store.stat('assets/a.bin')).toEqual({ size: data.length });
      expect((await buffer(await store.open('assets/a.bin'))).equals(data)).toBe(true);
      expect((await buffer(await store.open('assets/a.bin', { start: 10, end: 19 }))).equals(data.subarray(10, 20))).toBe(true);

      const replacement = randomBytes(10);
      await store.put('assets/a.bin', replacement, 'video/mp4');
      expect((await buffer(await store.open('assets/a.bin'))).equals(replacement)).toBe(true);
      const listed = [];
      for await (const item of store.list()) listed.push(item);
      expect(listed.map((item) => [item.key, item.size])).toEqual([['assets/a.bin', 10]]);
      expect(Date.now() - listed[0]!.modifiedAt.getTime()).toBeLessThan(60_000);

      await store.remove('assets/a.bin');
      expect(await store.stat('assets/a.bin')).toBeNull();
      await store.remove('assets/a.bin'); // removing what is gone is no error
    });

    it('streams a 20 MiB body (multipart on S3) and reads it back exactly', async () => {
      const chunks = Array.from({ length: 20 }, () => randomBytes(1024 * 1024));
      const whole = Buffer.concat(chunks);
      expect(await store.put('assets/big.bin', body(chunks), 'video/mp4')).toBe(whole.length);
      expect(await store.stat('assets/big.bin')).toEqual({ size: whole.length });
      expect(sha(await buffer(await store.open('assets/big.bin')))).toBe(sha(whole));
      const middle = await buffer(await store.open('assets/big.bin', { start: 9 * 1024 * 1024 - 5, end: 9 * 1024 * 1024 + 4 }));
      expect(middle.equals(whole.subarray(9 * 1024 * 1024 - 5, 9 * 1024 * 1024 + 5))).toBe(true);
      await store.remove('assets/big.bin');
    });

    it('a body that fails midway leaves nothing visible, and the previous object untouched', async () => {
      const previous = randomBytes(1000);
      await store.put('assets/c.bin', previous, 'video/mp4');
      const chunks = Array.from({ length: 12 }, () => randomBytes(1024 * 1024));
      await expect(store.put('assets/c.bin', body(chunks, 10), 'video/mp4')).rejects.toThrow();
      await expect(store.put('assets/d.bin', body(chunks, 10), 'video/mp4')).rejects.toThrow();
      expect(await store.stat('assets/d.bin')).toBeNull();
      expect((await buffer(await store.open('assets/c.bin'))).equals(previous)).toBe(true);
      const keys = [];
      for await (const item of store.list()) keys.push(item.key);
      expect(keys).toEqual(['assets/c.bin']);
      if (backend === 'disk') expect(readdirSync(path.join(dir, 'assets'))).toEqual(['c.bin']);
      else expect(await s3.keys(settings)).toEqual(['assets/c.bin']);
      await store.remove('assets/c.bin');
    });

    it.runIf(backend === 'disk')('sweeps temporary files older than the limit, not younger ones', async () => {
      const old = path.join(dir, 'assets', `e.bin.${crypto.randomUUID()}.tmp`);
      const young = path.join(dir, 'thumbnails', `e.webp.${crypto.randomUUID()}.tmp`);
      writeFileSync(old, 'half');
      writeFileSync(young, 'half');
      const then = new Date(Date.now() - 2 * 3600_000);
      utimesSync(old, then, then);
      expect(await store.sweepLeftovers(3600_000)).toBe(1);
      expect(readdirSync(path.join(dir, 'assets'))).toEqual([]);
      expect(readdirSync(path.join(dir, 'thumbnails'))).toEqual([path.basename(young)]);
    });

    it.runIf(backend === 's3')('sweeps bodies a killed writer left under incoming/ once they are older than the limit', async () => {
      const { PutObjectCommand } = await import('@aws-sdk/client-s3');
      const client = (store as S3ObjectStore).client;
      await client.send(new PutObjectCommand({ Bucket: settings.bucket, Key: `${settings.prefix}incoming/assets_e.bin.${crypto.randomUUID()}`, Body: Buffer.from('half') }));
      await store.put('assets/kept.bin', Buffer.from('whole'), 'video/mp4');
      const listed = [];
      for await (const item of store.list()) listed.push(item.key);
      expect(listed).toEqual(['assets/kept.bin']);
      expect(await store.sweepLeftovers(3600_000)).toBe(0);
      expect((await s3.keys(settings)).filter((key) => key.startsWith('incoming/'))).toHaveLength(1);
      // a limit in the future stands for "an hour later"
      expect(await store.sweepLeftovers(-3600_000)).toBe(1);
      expect(await s3.keys(settings)).toEqual(['assets/kept.bin']);
      await store.remove('assets/kept.bin');
    });

    // S3 keys are opaque names there; AssetStorage makes every key from a job id and position
    it.runIf(backend === 'disk')('refuses keys outside its folders', async () => {
      await expect(store.put('../secrets/x', Buffer.from('x'), 'text/plain')).rejects.toThrow('not an object key');
      await expect(store.stat('assets/../../x')).resolves.toBeNull();
    });
  });
}
