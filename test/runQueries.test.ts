// The SQL-to-JSON fast path of GET /v1/runs and GET /v1/runs/{id} (src/store/runQueries.ts)
// gives exactly the documents of runRepository (Prisma, toRunView): every filter, both sorts,
// cursor pages through ties in created_at, and json columns holding null, 'null', arrays, objects.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/store/database.js';
import type { CursorKey, Direction } from '../src/store/pagination.js';
import { decodeCursor } from '../src/store/pagination.js';
import { findRunJson, listRunsJson } from '../src/store/runQueries.js';
import { type RunFilters, runRepository } from '../src/store/runRepository.js';
import { createMigratedDatabase, type TestDatabase } from './helpers/database.js';

let test: TestDatabase;
let db: Database;
let modelIds: string[];
let datasetIds: string[];

beforeAll(async () => {
  ({ test, db } = await createMigratedDatabase());
  await db.pool.query(
    `INSERT INTO models (id, sha256, name, tags, size_bytes, inputs, outputs, layers, preprocessing)
     SELECT gen_random_uuid(), repeat(i::text, 64), 'm' || i, '{}', 1, '[]', '[]', '[]', '{}' FROM generate_series(1, 2) i`,
  );
  await db.pool.query(
    `INSERT INTO datasets (id, sha256, name, format, count, width, height, channels, dtype, classes, blob_sha256, size_bytes)
     SELECT gen_random_uuid(), repeat(i::text, 64), 'd' || i, 'idx', 1, 1, 1, 1, 'uint8', '[]', repeat('c', 64), 1
       FROM generate_series(1, 2) i`,
  );
  modelIds = (await db.pool.query<{ id: string }>('SELECT id FROM models ORDER BY name')).rows.map(
    (r) => r.id,
  );
  datasetIds = (await db.pool.query<{ id: string }>('SELECT id FROM datasets ORDER BY name')).rows.map(
    (r) => r.id,
  );
  // 150 runs; groups of 3 share a created_at (ties broken by id), every third has a NULL name,
  // json columns cycle through NULL, 'null', an array, a nested object with unicode and numbers.
  await db.pool.query(
    `INSERT INTO runs (id, model_id, dataset_id, name, tags, status, request, progress_done, progress_total,
                       error, summary, timings, verdict, verdict_status, created_at, started_at, finished_at)
     SELECT gen_random_uuid(), ($1::uuid[])[1 + i % 2], ($2::uuid[])[1 + (i / 2) % 2],
            CASE WHEN i % 3 = 0 THEN NULL ELSE 'run "' || i || '" é 🚀' END,
            CASE i % 4 WHEN 0 THEN '{}'::text[] WHEN 1 THEN ARRAY['a'] WHEN 2 THEN ARRAY['a', 'b c'] ELSE ARRAY['b c'] END,
            (ARRAY['queued', 'running', 'succeeded', 'failed', 'canceled'])[1 + i % 5],
            CASE WHEN i % 7 = 0 THEN 'null'::json ELSE json_build_object('limit', i, 'transforms', json_build_array(json_build_object('type', 'rotate', 'values', json_build_array(0.5, 1e-7, 90)))) END,
            i * 10, 1000,
            CASE WHEN i % 5 = 3 THEN json_build_object('message', 'shard "3" failed: \\ ' || i) END,
            CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN 'null'::json WHEN 2 THEN '[1, 2]'::json
                 ELSE json_build_object('accuracy', json_build_object('clean', 0.896, 'min', -0.0), 'nv', json_build_object('a|mean', 1.5e300)) END,
            CASE WHEN i % 2 = 0 THEN json_build_object('wallMs', i) END,
            CASE WHEN i % 6 = 0 THEN json_build_object('status', 'PASS', 'gates', json_build_array()) END,
            CASE WHEN i % 6 = 0 THEN 'PASS' END,
            timestamptz '2026-01-01 00:00:00Z' + (i / 3) * interval '1 minute 0.001 seconds',
            CASE WHEN i % 5 > 0 THEN timestamptz '2026-01-02 00:00:00.123Z' END,
            CASE WHEN i % 5 > 1 THEN timestamptz '2026-01-03 00:00:00.5Z' END
       FROM generate_series(1, 150) i`,
    [modelIds, datasetIds],
  );
});
afterAll(async () => {
  await db?.close();
  await test?.drop();
});

async function pagesBothWays(filter: RunFilters, direction: Direction, limit: number) {
  const repo = runRepository(db.prisma);
  let cursor: CursorKey | null = null;
  let pages = 0;
  let seen = 0;
  for (;;) {
    const expected = await repo.list({ limit, cursor, direction }, filter);
    const actual = JSON.parse(await listRunsJson(db.pool, { limit, cursor, direction }, filter));
    expect(actual).toEqual(JSON.parse(JSON.stringify(expected)));
    pages++;
    seen += expected.items.length;
    if (!expected.nextCursor) break;
    cursor = decodeCursor(expected.nextCursor);
  }
  return { pages, seen };
}

describe('runQueries: the same documents as runRepository', () => {
  const filters: Array<[string, () => RunFilters]> = [
    ['none', () => ({})],
    ['status', () => ({ status: 'failed' })],
    ['tag', () => ({ tag: 'b c' })],
    ['tag that no run has', () => ({ tag: 'zzz' })],
    ['modelId', () => ({ modelId: modelIds[0] })],
    ['datasetId and status', () => ({ datasetId: datasetIds[1], status: 'succeeded' })],
    ['verdict', () => ({ verdict: 'PASS' })],
    ['no verdict', () => ({ verdict: 'NONE', tag: 'a' })],
    [
      'created range',
      () => ({
        createdAfter: new Date('2026-01-01T00:10:00.010Z'),
        createdBefore: new Date('2026-01-01T00:30:00Z'),
      }),
    ],
  ];

  it.each(filters)('list, filter %s, both sorts, pages of 7 through ties', async (_name, filter) => {
    const desc = await pagesBothWays(filter(), 'desc', 7);
    const asc = await pagesBothWays(filter(), 'asc', 7);
    expect(asc.seen).toBe(desc.seen);
  });

  it('covers every run with no filter, in 22 pages of 7', async () => {
    expect(await pagesBothWays({}, 'desc', 7)).toEqual({ pages: 22, seen: 150 });
  });

  it('one run by id, for every run; null for an unknown id', async () => {
    const repo = runRepository(db.prisma);
    const { rows } = await db.pool.query<{ id: string }>('SELECT id FROM runs');
    for (const { id } of rows) {
      const fast = await findRunJson(db.pool, id);
      expect(JSON.parse(fast ?? 'null')).toEqual(JSON.parse(JSON.stringify(await repo.findById(id))));
    }
    expect(await findRunJson(db.pool, '00000000-0000-4000-8000-000000000000')).toBeNull();
  });
});
