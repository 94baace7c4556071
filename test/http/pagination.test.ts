import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, paginate } from '../../src/http/pagination.js';
import { HttpProblem } from '../../src/http/problem.js';

describe('paginate', () => {
  const rows = [1, 2, 3, 4];

  it('keeps `limit` rows and points after the last one when the extra row says there is more', () => {
    expect(paginate(rows, 3, (last) => `after-${last}`)).toEqual({ page: [1, 2, 3], next: 'after-3' });
  });

  it('has no next page when the rows fit (also exactly)', () => {
    expect(paginate(rows, 4, (last) => last)).toEqual({ page: rows, next: null });
    expect(paginate(rows, 10, (last) => last)).toEqual({ page: rows, next: null });
    expect(paginate([], 10, (last) => last)).toEqual({ page: [], next: null });
  });
});

describe('page cursors', () => {
  const cursor = { at: '2026-01-02T03:04:05.678Z', id: '0b9f8c2e-7a61-4c1e-9a57-2f3d4b5c6d7e' };

  it('round-trip', () => {
    expect(decodeCursor(encodeCursor(cursor))).toEqual(cursor);
    expect(decodeCursor(undefined)).toBeUndefined();
  });

  it('refuse anything else with a 400 naming the field', () => {
    for (const text of ['x', encodeCursor({ ...cursor, id: 'not-a-uuid' }), Buffer.from('[1,2]').toString('base64url')]) {
      let thrown: unknown;
      try {
        decodeCursor(text);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(HttpProblem);
      expect(thrown).toMatchObject({ status: 400 });
    }
  });
});
