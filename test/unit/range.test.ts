import { describe, expect, it } from 'vitest';
import { parseRange } from '../../src/assets/routes.js';

describe('Range parsing for asset downloads', () => {
  it('reads one byte range, an open end or a suffix', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=90-1000', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
  });

  it('serves the whole file for a suffix longer than it (RFC 9110 §14.1.2)', () => {
    expect(parseRange('bytes=-10', 5)).toEqual({ start: 0, end: 4 });
  });

  it('answers unsatisfiable past the end, for an empty suffix and for a reversed range', () => {
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=9-3', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-', 0)).toBe('unsatisfiable');
  });

  it('ignores what it does not serve: no header, other units, several ranges, garbage', () => {
    for (const header of [undefined, '', 'bytes=-', 'items=0-9', 'Bytes=0-9', 'bytes=0-1,3-4', 'bytes=a-b', 'bytes 0-9']) {
      expect(parseRange(header, 100), String(header)).toBeNull();
    }
  });
});
