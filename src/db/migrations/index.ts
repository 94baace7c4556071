import type { Migration } from 'kysely';
import * as initial from './0001_initial.js';
import * as identity from './0002_identity.js';

/** Every migration, by name; names sort in the order they run. */
export const migrations: Record<string, Migration> = {
  '0001_initial': initial,
  '0002_identity': identity,
};
