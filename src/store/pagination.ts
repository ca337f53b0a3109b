// Keyset pagination over (created_at DESC, id DESC): stable under inserts, O(limit) per page.
// The cursor is opaque to clients (base64url JSON of the last item's sort key).
import { AppError } from '../http/problem.js';

export interface CursorKey {
  createdAt: Date;
  id: string;
}

export function encodeCursor(key: CursorKey): string {
  return Buffer.from(JSON.stringify([key.createdAt.toISOString(), key.id])).toString('base64url');
}

const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export function decodeCursor(cursor: string | undefined): CursorKey | null {
  if (!cursor) return null;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(parsed) &&
      parsed.length === 2 &&
      typeof parsed[0] === 'string' &&
      typeof parsed[1] === 'string'
    ) {
      // Only what encodeCursor writes (toISOString of a database timestamp, a canonical UUID):
      // anything else reaches PostgreSQL as an out-of-range timestamp (year 0000) or a bad uuid
      // (36 dashes) and would be a 500 rather than a 400.
      const createdAt = ISO_INSTANT.test(parsed[0]) ? new Date(parsed[0]) : new Date(Number.NaN);
      if (
        !Number.isNaN(createdAt.getTime()) &&
        createdAt.getUTCFullYear() >= 1 &&
        /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(parsed[1])
      ) {
        return { createdAt, id: parsed[1] };
      }
    }
  } catch {
    // fall through
  }
  throw new AppError(400, 'INVALID_CURSOR', 'the cursor is not one this service issued');
}

export type Direction = 'asc' | 'desc';

/**
 * Prisma `where` fragment for "strictly after this cursor" in (createdAt, id) order. The first
 * condition is implied by the OR; it is there for PostgreSQL, which can start an index scan at
 * it, so a deep page costs as little as the first one.
 */
export function afterCursor(key: CursorKey | null, direction: Direction = 'desc') {
  if (!key) return {};
  const beyond = direction === 'desc' ? 'lt' : 'gt';
  const beyondOrAt = direction === 'desc' ? 'lte' : 'gte';
  return {
    createdAt: { [beyondOrAt]: key.createdAt },
    OR: [{ createdAt: { [beyond]: key.createdAt } }, { createdAt: key.createdAt, id: { [beyond]: key.id } }],
  };
}

export const pageOrder = [{ createdAt: 'desc' as const }, { id: 'desc' as const }];

export function pageOrderFor(direction: Direction) {
  return [{ createdAt: direction }, { id: direction }];
}

/** Fetch limit+1 rows, return a page and the cursor of its last item if more exist. */
export function toPage<T extends CursorKey, R>(rows: T[], limit: number, map: (row: T) => R) {
  const more = rows.length > limit;
  const items = more ? rows.slice(0, limit) : rows;
  const last = items[items.length - 1];
  return { items: items.map(map), nextCursor: more && last ? encodeCursor(last) : null };
}
