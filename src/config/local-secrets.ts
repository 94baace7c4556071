import { chmodSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * A secret the embedded mode keeps in the data dir: `<dataDir>/secrets/<name>`, read if present,
 * else made by `make()` and written with mode 0600 in a 0700 directory. The file appears
 * atomically (hard link of a finished temp file), so processes starting at once agree on one value.
 */
export function localSecret(dataDir: string, name: string, make: () => string): string {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(name)) throw new TypeError('secret name must be a plain file name');
  const directory = path.join(dataDir, 'secrets');
  const file = path.join(directory, name);
  const existing = read(file);
  if (existing !== undefined) return existing;

  mkdirSync(directory, { recursive: true, mode: 0o700 });
  chmodSync(directory, 0o700);
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, `${make()}\n`, { mode: 0o600 });
  try {
    linkSync(temp, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    unlinkSync(temp);
  }
  const value = read(file);
  if (value === undefined) throw new Error(`the local secret "${name}" is empty`);
  return value;
}

function read(file: string): string | undefined {
  try {
    const text = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    return text === '' ? undefined : text;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
