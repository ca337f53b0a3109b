// Whole-process faults, with the real server as a child process on a fresh database: a server
// SIGKILLed mid-run, and one stopped with SIGTERM mid-run, leave runs that a restarted server
// finishes with the same numbers as an uninterrupted run.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  api,
  type ChildServer,
  killChildServers,
  startChildServer,
  uploadFixtures,
} from './helpers/childServer.js';
import { countNumbers, resultDiffs } from './helpers/compare.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';

const KEY = `inv_test_${randomBytes(12).toString('hex')}`;
let database: TestDatabase;
let pool: pg.Pool;
let dataDir: string;
let server: ChildServer | null = null;
let ids: { modelId: string; datasetId: string };
let baseline: Record<string, unknown>;
let longBaseline: Record<string, unknown>;

const start = (shardInferences = 300) =>
  startChildServer({
    DATABASE_URL: database.url,
    DATA_DIR: dataDir,
    INVARIANCE_ADMIN_KEY: KEY,
    WORKERS: '2',
    // 1,000 samples x 4 images in shards of <= 300 inferences: 14 shards.
    SHARD_INFERENCES: String(shardInferences),
    SHARD_STALE_SECONDS: '2',
    SHARD_RETRIES: '2',
  });

/** The SIGTERM test's sweep: 16 images a sample, so that its two shards run for seconds. */
const LONG = Array.from({ length: 15 }, (_, i) => 10 + 24 * i);

const request = (rotations = [30, 90, 200]) => ({
  ...ids,
  transforms: [{ type: 'rotate', values: rotations }],
  metrics: ['accuracy', 'ekld', 'nv'],
  nv: { layers: 'all', aggregation: ['none', 'mean'] },
  limit: 1000,
});

interface Shard {
  index: number;
  status: string;
  attempts: number;
  worker_id: string | null;
  finished_at: Date | null;
}

async function shards(runId: string): Promise<Shard[]> {
  const { rows } = await pool.query<Shard>(
    'SELECT index, status, attempts, worker_id, finished_at FROM run_shards WHERE run_id = $1 ORDER BY index',
    [runId],
  );
  return rows;
}

const count = (rows: Shard[], status: string) => rows.filter((s) => s.status === status).length;

async function submit(s: ChildServer, rotations?: number[]): Promise<string> {
  const res = await api<{ id: string }>(s, 'POST', '/v1/runs', request(rotations));
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body.id;
}

async function waitSucceeded(s: ChildServer, id: string, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await api<{ status: string; error: unknown }>(s, 'GET', `/v1/runs/${id}`);
    if (!['queued', 'running'].includes(body.status)) {
      expect(body.status, `${JSON.stringify(body.error)}\n${s.output()}`).toBe('succeeded');
      const res = await api(s, 'GET', `/v1/runs/${id}/results`);
      expect(res.status).toBe(200);
      return res.body;
    }
    if (Date.now() > deadline) throw new Error(`run ${id} still ${body.status}:\n${s.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until the run has some shards done, some running and some still to do. */
async function waitMidRun(id: string): Promise<Shard[]> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const rows = await shards(id);
    if (count(rows, 'done') >= 3 && count(rows, 'running') >= 1 && count(rows, 'pending') >= 3) return rows;
    if (count(rows, 'pending') < 3 && count(rows, 'done') > 0)
      throw new Error('missed the middle of the run');
    if (Date.now() > deadline) throw new Error(`run ${id} never reached its middle: ${JSON.stringify(rows)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  database = await createTestDatabase();
  pool = new pg.Pool({ connectionString: database.url, max: 2 });
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'invariance-process-'));
  server = await start();
  ids = await uploadFixtures(server);
  // The uninterrupted run everything below is compared with.
  baseline = await waitSucceeded(server, await submit(server));
  expect(countNumbers(baseline)).toBeGreaterThan(200);
  longBaseline = await waitSucceeded(server, await submit(server, LONG));
}, 120_000);

afterAll(async () => {
  await killChildServers();
  await pool?.end();
  await database?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
}, 60_000);

it('a server killed with SIGKILL mid-run: a new server finishes the run with the same numbers', async () => {
  const first = server!;
  const id = await submit(first);
  await waitMidRun(id);
  first.proc.kill('SIGKILL');
  expect((await first.exited).signal).toBe('SIGKILL');
  const atKill = await shards(id);
  const orphaned = atKill.filter((s) => s.status === 'running');
  const finished = atKill.filter((s) => s.status === 'done');
  expect(orphaned.length, 'shards were in flight when the server died').toBeGreaterThan(0);
  expect(finished.length).toBeGreaterThan(0);
  expect(count(atKill, 'pending')).toBeGreaterThan(0);

  // The next server cuts runs into shards of 8,000 inferences (the SIGTERM test needs long ones).
  server = await start(8000);
  const results = await waitSucceeded(server, id);
  expect(resultDiffs(results, baseline)).toEqual([]);

  const after = await shards(id);
  expect(after.every((s) => s.status === 'done')).toBe(true);
  for (const s of orphaned) {
    // Taken from the dead worker (after SHARD_STALE_SECONDS) and run again.
    expect(after[s.index].attempts, `shard ${s.index}`).toBe(s.attempts + 1);
    expect(after[s.index].worker_id).not.toBe(s.worker_id);
  }
  for (const s of finished) {
    // Persisted partials are used as they are: finished shards never run twice.
    expect(after[s.index].attempts, `shard ${s.index}`).toBe(1);
    expect(after[s.index].finished_at?.getTime()).toBe(s.finished_at?.getTime());
  }
}, 120_000);

it('SIGTERM mid-run: exits 0 within seconds, in-flight shards go back to the queue, a restart finishes', async () => {
  const current = server!;
  // Two shards of 500 samples x 16 images (seconds each, NV on every layer): stopped in the middle.
  const id = await submit(current, LONG);
  expect((await shards(id)).length).toBe(2);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM run_shards WHERE run_id = $1 AND status = 'running' AND progress > 0`,
      [id],
    );
    if (rows[0].n > 0) break;
    expect(Date.now()).toBeLessThan(deadline);
    await new Promise((r) => setTimeout(r, 25));
  }
  const sent = Date.now();
  current.proc.kill('SIGTERM');
  const exit = await current.exited;
  const tookMs = Date.now() - sent;
  expect(exit, current.output()).toEqual({ code: 0, signal: null });
  expect(tookMs, current.output()).toBeLessThan(5000);
  expect(current.output()).toMatch(/SIGTERM: shutting down/);

  const stopped = await shards(id);
  expect(count(stopped, 'running'), JSON.stringify(stopped)).toBe(0);
  // Handed back: claimed once, pending again, each with a new job waiting in the queue.
  const handedBack = stopped.filter((s) => s.status === 'pending' && s.attempts > 0);
  expect(handedBack.length, JSON.stringify(stopped)).toBeGreaterThan(0);
  const { rows: jobs } = await pool.query<{ index: number; n: number }>(
    `SELECT (data->>'index')::int AS index, count(*)::int AS n FROM pgboss.job
      WHERE name = 'run-shard' AND data->>'runId' = $1 AND state = 'created' GROUP BY 1`,
    [id],
  );
  const queued = new Map(jobs.map((j) => [j.index, j.n]));
  for (const s of stopped.filter((x) => x.status === 'pending')) {
    expect(queued.get(s.index), `a queued job for shard ${s.index}`).toBeGreaterThanOrEqual(1);
  }
  const { rows: active } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'run-shard' AND data->>'runId' = $1 AND state = 'active'`,
    [id],
  );
  expect(active[0].n, 'no job left active by the stopped server').toBe(0);

  server = await start(8000);
  const results = await waitSucceeded(server, id);
  // Sharded in 2 here, in 54 for the baseline: the same numbers.
  expect(resultDiffs(results, longBaseline)).toEqual([]);
  const after = await shards(id);
  for (const s of handedBack) expect(after[s.index].attempts, `shard ${s.index}`).toBe(s.attempts + 1);
}, 120_000);
