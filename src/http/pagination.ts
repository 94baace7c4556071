import { badRequest } from '../http/problem.js';

export interface Cursor {
  at: string;
  id: string;
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/;
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * One page from rows read with `limit + 1`: the extra row only says that a next page exists, and
 * `next` is the position after the page's last row.
 */
export function paginate<Row, Next>(rows: Row[], limit: number, next: (last: Row) => Next): { page: Row[]; next: Next | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { page, next: rows.length > limit && last !== undefined ? next(last) : null };
}

/** An opaque page position: base64url of the last item's time and id. */
export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.at, cursor.id])).toString('base64url');
}

export function decodeCursor(text: string | undefined): Cursor | undefined {
  if (text === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
    if (Array.isArray(value) && value.length === 2) {
      const [at, id] = value as unknown[];
      if (typeof at === 'string' && typeof id === 'string' && ISO.test(at) && UUID.test(id)) return { at, id };
    }
  } catch {
    // fall through
  }
  throw badRequest('The cursor is not valid; use next_cursor from a previous page.', [{ pointer: '/cursor', detail: 'is not a cursor' }]);
}
