// The two hottest reads of the API, GET /v1/runs and GET /v1/runs/{id}, from PostgreSQL to JSON
// text with plain SQL: the json columns (request, summary, timings, error, verdict), the tags and
// the instants arrive as text ready for JSON and go into the response as they are, never parsed
// and re-serialised, with no ORM in between. `npm run loadtest` measured the Prisma path
// (findMany, toRunView, JSON.stringify) at about 4x the CPU of the service's main thread per
// page; building the whole document in SQL (json_build_object) costs PostgreSQL twice as much.
//
// The JSON is the document runRepository's toRunView gives (test/runQueries.test.ts holds the two
// to each other); the WHERE clauses are those of runRepository.list, with the cursor as a row
// comparison that PostgreSQL uses as an index condition on (…, created_at, id).
import type pg from 'pg';
import { type CursorKey, type Direction, encodeCursor } from './pagination.js';
import type { RunFilters } from './runRepository.js';

interface RunRow {
  id: string;
  status: string;
  name: string | null;
  /** JSON text of the tags array. */
  tags: string;
  model_id: string;
  dataset_id: string;
  progress_done: number;
  progress_total: number;
  /** The instants as toISOString writes them (UTC, milliseconds, "Z"), formatted by PostgreSQL. */
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  error: string | null;
  request: string | null;
  summary: string | null;
  timings: string | null;
  verdict: string | null;
}

const iso = (column: string) =>
  `to_char(runs.${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ${column}`;
const COLUMNS = `runs.id, runs.status, runs.name, array_to_json(runs.tags)::text AS tags, runs.model_id,
  runs.dataset_id, runs.progress_done, runs.progress_total, ${iso('created_at')}, ${iso('started_at')},
  ${iso('finished_at')}, runs.error::text AS error, runs.request::text AS request,
  runs.summary::text AS summary, runs.timings::text AS timings, runs.verdict::text AS verdict`;

const str = JSON.stringify;
/** A json column as toRunView's asObject: an object or array as stored, a scalar or null null. */
const object = (text: string | null) => (text !== null && /^\s*[{[]/.test(text) ? text : null);

/** One run as JSON text: the API's Run, field for field as toRunView. */
function runJson(r: RunRow): string {
  return (
    `{"id":${str(r.id)},"status":${str(r.status)},"name":${str(r.name)},"tags":${r.tags},` +
    `"modelId":${str(r.model_id)},"datasetId":${str(r.dataset_id)},` +
    `"progress":{"done":${r.progress_done},"total":${r.progress_total}},` +
    `"createdAt":${str(r.created_at)},"startedAt":${str(r.started_at)},"finishedAt":${str(r.finished_at)},` +
    `"error":${object(r.error) ?? 'null'},"request":${object(r.request) ?? '{}'},` +
    `"summary":${object(r.summary) ?? 'null'},"timings":${object(r.timings) ?? 'null'},` +
    `"verdict":${object(r.verdict) ?? 'null'}}`
  );
}

/** The run as JSON text, or null when there is none with this id (a UUID). */
export async function findRunJson(pool: pg.Pool, id: string): Promise<string | null> {
  const { rows } = await pool.query<RunRow>({
    name: 'run-json-by-id',
    text: `SELECT ${COLUMNS} FROM runs WHERE runs.id = $1`,
    values: [id],
  });
  return rows[0] ? runJson(rows[0]) : null;
}

/** One page of runs as the JSON text of {items, nextCursor}; filters as runRepository.list. */
export async function listRunsJson(
  pool: pg.Pool,
  page: { limit: number; cursor: CursorKey | null; direction: Direction },
  f: RunFilters,
): Promise<string> {
  const where: string[] = [];
  const values: unknown[] = [];
  const param = (v: unknown) => {
    values.push(v);
    return `$${values.length}`;
  };
  const desc = page.direction === 'desc';
  if (page.cursor) {
    where.push(
      `(runs.created_at, runs.id) ${desc ? '<' : '>'} (${param(page.cursor.createdAt)}, ${param(page.cursor.id)})`,
    );
  }
  if (f.modelId) where.push(`runs.model_id = ${param(f.modelId)}`);
  if (f.datasetId) where.push(`runs.dataset_id = ${param(f.datasetId)}`);
  if (f.status) where.push(`runs.status = ${param(f.status)}`);
  if (f.tag) where.push(`runs.tags @> ARRAY[${param(f.tag)}]::text[]`);
  if (f.verdict) {
    where.push(
      f.verdict === 'NONE' ? 'runs.verdict_status IS NULL' : `runs.verdict_status = ${param(f.verdict)}`,
    );
  }
  if (f.createdAfter) where.push(`runs.created_at >= ${param(f.createdAfter)}`);
  if (f.createdBefore) where.push(`runs.created_at < ${param(f.createdBefore)}`);
  const order = desc ? 'DESC' : 'ASC';
  // ORDER BY names the table's columns: created_at alone would be the formatted text above.
  const { rows } = await pool.query<RunRow>(
    `SELECT ${COLUMNS} FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY runs.created_at ${order}, runs.id ${order} LIMIT ${param(page.limit + 1)}`,
    values,
  );
  const more = rows.length > page.limit;
  const items = more ? rows.slice(0, page.limit) : rows;
  const last = items[items.length - 1];
  const next =
    more && last ? str(encodeCursor({ createdAt: new Date(last.created_at), id: last.id })) : 'null';
  return `{"items":[${items.map(runJson).join(',')}],"nextCursor":${next}}`;
}
