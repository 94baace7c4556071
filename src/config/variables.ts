import { readFileSync } from 'node:fs';

/** A bad setting: start-up stops with this one line. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export type Env = Record<string, string | undefined>;

/**
 * Reads a variable or its `NAME_FILE` twin (the file's content, trailing newline trimmed).
 * Setting both is ambiguous and refused.
 */
export function readVariable(env: Env, name: string): string | undefined {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  if (direct !== undefined && direct !== '' && file) {
    throw new ConfigError(`${name} and ${name}_FILE are both set; set one`);
  }
  if (file) {
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch {
      throw new ConfigError(`${name}_FILE: cannot read the file it names`);
    }
  }
  return direct === '' ? undefined : direct;
}
