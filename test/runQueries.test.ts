// The SQL-to-JSON path of GET /v1/runs and GET /v1/runs/{id} (src/store/runQueries.ts) against
// runs this file inserts with known fields: every document field for field, every filter, both
// sorts, cursor pages through ties in created_at, and json columns holding SQL NULL, JSON null,
// scalars, arrays and objects. The expected pages are computed here from the inserted fixtures.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/store/database.js';
import { type Direction, decodeCursor } from '../src/store/pagination.js';
import { findRunJson, listRunsJson } from '../src/store/runQueries.js';
import { RUN_STATUSES, type RunFilters, runRepository } from '../src/store/runRepository.js';
import { createMigratedDatabase, type TestDatabase } from './helpers/database.js';

let test: TestDatabase;
let db: Database;

const MODEL_IDS = ['10000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000002'];
const DATASET_IDS = ['20000000-0000-4000-8000-000000000001', '20000000-0000-4000-8000-000000000002'];

/** A json column: the text stored (null: SQL NULL) and the value the API gives for it. */
interface JsonColumn {
  sql: string | null;
  api: unknown;
}
const SQL_NULL: JsonColumn = { sql: null, api: null };
const JSON_NULL: JsonColumn = { sql: 'null', api: null };

interface RunFixture {
  id: string;
  modelId: string;
  datasetId: string;
  name: string | null;
  tags: string[];
  status: (typeof RUN_STATUSES)[number];
  request: JsonColumn;
  progressDone: number;
  progressTotal: number;
  error: JsonColumn;
  summary: JsonColumn;
  timings: JsonColumn;
  verdict: JsonColumn;
  verdictStatus: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

const RUN_COUNT = 150;
const CREATED_BASE = Date.parse('2026-01-01T00:00:00.000Z');

/**
 * Run i of 1..150. The id's last group is a permutation of 1..150 (37 i mod the prime 151), so the
 * id order inside a created_at tie differs from the insertion order. Groups of 3 share created_at.
 */
function fixture(i: number): RunFixture {
  const verdictStatus = i % 6 === 0 ? 'PASS' : i % 6 === 3 ? 'FAIL' : null;
  const summaries: JsonColumn[] = [
    SQL_NULL,
    JSON_NULL,
    { sql: '[1, 2]', api: [1, 2] },
    // Numbers as written: -0.0 stays negative zero, 1.5e300 stays 1.5e300.
    {
      sql: '{"accuracy": {"clean": 0.896, "min": -0.0}, "nv": {"a|mean": 1.5e300}}',
      api: { accuracy: { clean: 0.896, min: -0 }, nv: { 'a|mean': 1.5e300 } },
    },
    // A scalar is no object: the API gives null.
    { sql: '42', api: null },
  ];
  const request = {
    limit: i,
    transforms: [{ type: 'rotate', values: [0.5, 1e-7, 90] }],
  };
  return {
    id: `00000000-0000-4000-8000-${String((i * 37) % 151).padStart(12, '0')}`,
    modelId: MODEL_IDS[i % 2],
    datasetId: DATASET_IDS[Math.floor(i / 2) % 2],
    name: i % 3 === 0 ? null : `run "${i}" é 🚀`,
    tags: [[], ['a'], ['a', 'b c'], ['b c']][i % 4],
    status: RUN_STATUSES[i % 5],
    // request is NOT NULL; a JSON null or a string in it reads as the empty object.
    request:
      i % 7 === 0
        ? { sql: 'null', api: {} }
        : i % 11 === 0
          ? { sql: '"text"', api: {} }
          : { sql: JSON.stringify(request), api: request },
    progressDone: i * 10,
    progressTotal: 1000,
    error:
      i % 5 === 3
        ? {
            sql: JSON.stringify({ message: `shard "3" failed: \\ ${i}` }),
            api: { message: `shard "3" failed: \\ ${i}` },
          }
        : SQL_NULL,
    summary: summaries[i % 5],
    timings: i % 2 === 0 ? { sql: `{"wallMs": ${i}}`, api: { wallMs: i } } : SQL_NULL,
    verdict: verdictStatus
      ? {
          sql: JSON.stringify({ status: verdictStatus, gates: [] }),
          api: { status: verdictStatus, gates: [] },
        }
      : SQL_NULL,
    verdictStatus,
    // 1 minute and 1 ms apart, so the milliseconds of every instant are tested too.
    createdAt: new Date(CREATED_BASE + Math.floor(i / 3) * 60_001).toISOString(),
    startedAt: i % 5 > 0 ? '2026-01-02T00:00:00.123Z' : null,
    finishedAt: i % 5 > 1 ? '2026-01-03T00:00:00.500Z' : null,
  };
}

const RUNS = Array.from({ length: RUN_COUNT }, (_, k) => fixture(k + 1));

/** The API's Run for a fixture (openapi.yaml's Run). */
function expectedDocument(f: RunFixture) {
  return {
    id: f.id,
    status: f.status,
    name: f.name,
    tags: f.tags,
    modelId: f.modelId,
    datasetId: f.datasetId,
    progress: { done: f.progressDone, total: f.progressTotal },
    createdAt: f.createdAt,
    startedAt: f.startedAt,
    finishedAt: f.finishedAt,
    error: f.error.api,
    request: f.request.api,
    summary: f.summary.api,
    timings: f.timings.api,
    verdict: f.verdict.api,
  };
}

/** The fixtures a filter keeps, in the page order: (createdAt, id), descending or ascending. */
function expectedRuns(f: RunFilters, direction: Direction): RunFixture[] {
  const kept = RUNS.filter(
    (r) =>
      (!f.modelId || r.modelId === f.modelId) &&
      (!f.datasetId || r.datasetId === f.datasetId) &&
      (!f.status || r.status === f.status) &&
      (!f.tag || r.tags.includes(f.tag)) &&
      (!f.verdict || r.verdictStatus === (f.verdict === 'NONE' ? null : f.verdict)) &&
      (!f.createdAfter || Date.parse(r.createdAt) >= f.createdAfter.getTime()) &&
      (!f.createdBefore || Date.parse(r.createdAt) < f.createdBefore.getTime()),
  );
  // ISO instants of one format and lower-case canonical UUIDs sort as text in PostgreSQL's order.
  const ascending = kept.sort((a, b) =>
    a.createdAt === b.createdAt ? (a.id < b.id ? -1 : 1) : a.createdAt < b.createdAt ? -1 : 1,
  );
  return direction === 'asc' ? ascending : ascending.reverse();
}

beforeAll(async () => {
  ({ test, db } = await createMigratedDatabase());
  await db.pool.query(
    `INSERT INTO models (id, sha256, name, tags, size_bytes, inputs, outputs, layers, preprocessing)
     SELECT id, repeat(n::text, 64), 'm' || n, '{}', 1, '[]', '[]', '[]', '{}'
       FROM unnest($1::uuid[]) WITH ORDINALITY AS m(id, n)`,
    [MODEL_IDS],
  );
  await db.pool.query(
    `INSERT INTO datasets (id, sha256, name, format, count, width, height, channels, dtype, classes, blob_sha256, size_bytes)
     SELECT id, repeat(n::text, 64), 'd' || n, 'idx', 1, 1, 1, 1, 'uint8', '[]', repeat('c', 64), 1
       FROM unnest($1::uuid[]) WITH ORDINALITY AS d(id, n)`,
    [DATASET_IDS],
  );
  for (const r of RUNS) {
    await db.pool.query(
      `INSERT INTO runs (id, model_id, dataset_id, name, tags, status, request, progress_done, progress_total,
                         error, summary, timings, verdict, verdict_status, created_at, started_at, finished_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8, $9, $10::json, $11::json, $12::json, $13::json, $14,
               $15, $16, $17)`,
      [
        r.id,
        r.modelId,
        r.datasetId,
        r.name,
        r.tags,
        r.status,
        r.request.sql,
        r.progressDone,
        r.progressTotal,
        r.error.sql,
        r.summary.sql,
        r.timings.sql,
        r.verdict.sql,
        r.verdictStatus,
        r.createdAt,
        r.startedAt,
        r.finishedAt,
      ],
    );
  }
});
afterAll(async () => {
  await db?.close();
  await test?.drop();
});

interface Page {
  items: Array<ReturnType<typeof expectedDocument>>;
  nextCursor: string | null;
}

/** Walks every page of the filter and checks each against the expected slice; returns the count. */
async function walkPages(filter: RunFilters, direction: Direction, limit: number) {
  const expected = expectedRuns(filter, direction);
  let cursor: string | null = null;
  let pages = 0;
  for (;;) {
    const page: Page = JSON.parse(
      await listRunsJson(db.pool, { limit, cursor: decodeCursor(cursor ?? undefined), direction }, filter),
    );
    const slice = expected.slice(pages * limit, (pages + 1) * limit);
    expect(page.items).toEqual(slice.map(expectedDocument));
    pages++;
    const more = pages * limit < expected.length;
    if (!more) {
      expect(page.nextCursor).toBeNull();
      break;
    }
    // The cursor names the page's last run.
    const last = slice[slice.length - 1];
    expect(decodeCursor(page.nextCursor ?? undefined)).toEqual({
      createdAt: new Date(last.createdAt),
      id: last.id,
    });
    cursor = page.nextCursor;
  }
  return { pages, seen: expected.length };
}

describe('runQueries: the documents of the runs inserted', () => {
  const filters: Array<[string, RunFilters, number]> = [
    ['none', {}, 150],
    ['status', { status: 'failed' }, 30],
    ['tag', { tag: 'b c' }, 75],
    ['tag that no run has', { tag: 'zzz' }, 0],
    ['modelId', { modelId: MODEL_IDS[0] }, 75],
    ['datasetId and status', { datasetId: DATASET_IDS[1], status: 'succeeded' }, 16],
    ['verdict', { verdict: 'PASS' }, 25],
    ['no verdict', { verdict: 'NONE', tag: 'a' }, 51],
    [
      'created range',
      { createdAfter: new Date('2026-01-01T00:10:00.010Z'), createdBefore: new Date('2026-01-01T00:30:00Z') },
      60,
    ],
  ];

  it.each(filters)('list, filter %s, both sorts, pages of 7 through ties', async (_name, filter, count) => {
    // The counts are worked out by hand from fixture(), so a wrong filter in expectedRuns shows too.
    expect(expectedRuns(filter, 'desc')).toHaveLength(count);
    const pages = Math.max(1, Math.ceil(count / 7));
    expect(await walkPages(filter, 'desc', 7)).toEqual({ pages, seen: count });
    expect(await walkPages(filter, 'asc', 7)).toEqual({ pages, seen: count });
  });

  it('orders ties in created_at by id, not by insertion', async () => {
    // Runs 3, 4 and 5 share 2026-01-01T00:01:00.001Z; their ids end in 111, 148 and 34, so
    // ascending order is run 5, run 3 (no name), run 4.
    const page = JSON.parse(
      await listRunsJson(
        db.pool,
        { limit: 3, cursor: null, direction: 'asc' },
        { createdAfter: new Date('2026-01-01T00:01:00.001Z') },
      ),
    ) as Page;
    expect(page.items.map((r) => [r.name, r.createdAt])).toEqual([
      ['run "5" é 🚀', '2026-01-01T00:01:00.001Z'],
      [null, '2026-01-01T00:01:00.001Z'],
      ['run "4" é 🚀', '2026-01-01T00:01:00.001Z'],
    ]);
    expect(page.items.map((r) => r.id)).toEqual([
      '00000000-0000-4000-8000-000000000034',
      '00000000-0000-4000-8000-000000000111',
      '00000000-0000-4000-8000-000000000148',
    ]);
  });

  it('one run by id, for every run; null for an unknown id', async () => {
    for (const r of RUNS) {
      expect(JSON.parse((await findRunJson(db.pool, r.id)) ?? 'null'), r.id).toEqual(expectedDocument(r));
    }
    expect(await findRunJson(db.pool, '00000000-0000-4000-8000-000000000000')).toBeNull();
  });

  it('gives run 18 as written out by hand', async () => {
    // i = 18: id 37*18 mod 151 = 62, model 1, dataset 2, no name, tags a and "b c", failed with an
    // error, the nested summary (negative zero kept), timings, a PASS verdict, 6 x 60.001 s in.
    expect(
      JSON.parse((await findRunJson(db.pool, '00000000-0000-4000-8000-000000000062')) ?? 'null'),
    ).toEqual({
      id: '00000000-0000-4000-8000-000000000062',
      status: 'failed',
      name: null,
      tags: ['a', 'b c'],
      modelId: MODEL_IDS[0],
      datasetId: DATASET_IDS[1],
      progress: { done: 180, total: 1000 },
      createdAt: '2026-01-01T00:06:00.006Z',
      startedAt: '2026-01-02T00:00:00.123Z',
      finishedAt: '2026-01-03T00:00:00.500Z',
      error: { message: 'shard "3" failed: \\ 18' },
      request: { limit: 18, transforms: [{ type: 'rotate', values: [0.5, 1e-7, 90] }] },
      summary: { accuracy: { clean: 0.896, min: -0 }, nv: { 'a|mean': 1.5e300 } },
      timings: { wallMs: 18 },
      verdict: { status: 'PASS', gates: [] },
    });
  });

  it('runRepository.findById gives the same run as an object, null for an unknown id', async () => {
    const runs = runRepository(db);
    const run = RUNS[17];
    expect(await runs.findById(run.id)).toEqual(expectedDocument(run));
    expect(await runs.findById('00000000-0000-4000-8000-000000000000')).toBeNull();
  });
});
