import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * A secret kept in the data dir (embedded mode): `<dataDir>/secrets/<name>`, read when present,
 * else made by `make()` and written with mode 0600 inside a 0700 directory.
 */
export function localSecret(dataDir: string, name: string, make: () => string): string {
  if (!NAME.test(name)) throw new TypeError('secret name must be lower-case letters, digits, dot, dash or underscore');
  const directory = path.join(dataDir, 'secrets');
  const file = path.join(directory, name);
  if (existsSync(file)) return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  chmodSync(directory, 0o700);
  const value = make();
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, value, { mode: 0o600 });
  // Another process may have made it meanwhile: the first one written wins, everyone reads it.
  if (existsSync(file)) return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  renameSync(temp, file);
  return value;
}
