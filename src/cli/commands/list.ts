// Walks a cursor-paginated list route until `limit` items (or the end).
import type { ApiClient, Query } from '../api/client.js';
import type { Page } from '../api/types.js';

export async function listAll<T>(
  client: ApiClient,
  path: string,
  query: Query,
  limit: number,
): Promise<Page<T>> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const page: Page<T> = await client.get<Page<T>>(path, {
      query: { ...query, limit: Math.min(200, limit - items.length), cursor: cursor ?? undefined },
    });
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor && items.length < limit);
  return { items, nextCursor: cursor };
}
