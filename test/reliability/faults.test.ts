import { describe, expect, it } from 'vitest';
import { describeFault, isStoreUnavailable, isTemporaryFault } from '../../src/db/faults.js';

const coded = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('store and storage faults', () => {
  it('tells outages and lock timeouts of both stores from faults of the request', () => {
    for (const error of [
      coded('57P01', 'terminating connection due to administrator command'),
      coded('08006'),
      coded('53300', 'too many connections'),
      coded('55P03', 'lock timeout'),
      coded('ECONNREFUSED'),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      coded('SQLITE_BUSY', 'database is locked'),
      coded('SQLITE_FULL'),
      coded('SQLITE_READONLY_DBMOVED'),
      new Error('wrapped', { cause: coded('ECONNRESET') }),
    ]) {
      expect(isStoreUnavailable(error), String(error)).toBe(true);
      expect(isTemporaryFault(error)).toBe(true);
    }
    for (const error of [coded('23505', 'duplicate key'), coded('42P01', 'no such table'), coded('SQLITE_CONSTRAINT'), new Error('boom'), 'text', null]) {
      expect(isStoreUnavailable(error), String(error)).toBe(false);
      expect(isTemporaryFault(error)).toBe(false);
    }
  });

  it('counts a full or read-only disk as temporary, and names the kind of fault without a path', () => {
    const full = coded('ENOSPC', "ENOSPC: no space left on device, write '/srv/data/assets/x.png'");
    expect(isTemporaryFault(full)).toBe(true);
    expect(isStoreUnavailable(full)).toBe(false);
    expect(isTemporaryFault(coded('EACCES'))).toBe(false);
    expect(describeFault(full)).toBe('the storage is full');
    expect(describeFault(coded('EROFS'))).toBe('the storage is read-only');
    expect(describeFault(coded('SQLITE_BUSY'))).toBe('the store stayed locked');
    expect(describeFault(new Error('Connection terminated unexpectedly'))).toBe('the store was unreachable');
  });
});
