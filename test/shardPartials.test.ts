// The lifecycle of a shard's partial statistics and of shards whose worker dies, driven step by
// step: this test plays the worker (fetches the jobs, runs the real shard and merge handlers on a
// real engine pool) so it can look at and break the state in between.
// - a done shard's statistics are a file under DATA_DIR/partials/<run>/ named by its row; the
//   merge reads them from there and removes them once the results are stored;
// - a done shard whose file is gone runs again, and the run still ends with the right numbers;
// - the janitor removes the partials of runs that are over;
// - a shard whose worker stopped heart-beating is re-issued at most SHARD_RETRIES times, then its
//   run fails with SHARD_ABANDONED (by the janitor, or by the worker that would take it over).
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type PgBoss from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnginePool, type EnginePool } from '../src/engine/workerPool.js';
import { FINALIZE_QUEUE, SHARD_QUEUE, type ShardJobData } from '../src/jobs/queue.js';
import {
  createFinalizeHandler,
  createShardHandler,
  type LifecycleDeps,
  recoverStaleShards,
  removeOrphanedPartials,
} from '../src/jobs/runLifecycle.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { resultDiffs } from './helpers/compare.js';
import { FMNIST_PREPROCESSING, getResults, submitRun, uploadFmnist, uploadModel } from './helpers/runs.js';

let t: TestApp;
let engine: EnginePool;
let deps: LifecycleDeps;
let modelId: string;
let datasetId: string;
const RETRIES = 2;

interface ShardRow {
  index: number;
  status: string;
  partial_file: string | null;
  abandoned: number;
  error: string | null;
}

async function shards(runId: string): Promise<ShardRow[]> {
  const { rows } = await t.db.pool.query<ShardRow>(
    'SELECT index, status, partial_file, abandoned, error FROM run_shards WHERE run_id = $1 ORDER BY index',
    [runId],
  );
  return rows;
}

async function runRow(runId: string) {
  const { rows } = await t.db.pool.query<{
    status: string;
    error: { code: string; message: string } | null;
    progress_done: number;
  }>('SELECT status, error, progress_done FROM runs WHERE id = $1', [runId]);
  return rows[0];
}

/** Fetches and handles every queued job of `queue` for `runId`; returns how many. */
async function drain(queue: string, handler: (job: PgBoss.JobWithMetadata<never>) => Promise<void>) {
  let handled = 0;
  for (;;) {
    const jobs = await t.queue.fetch<never>(queue, { includeMetadata: true, batchSize: 1 });
    if (!jobs.length) return handled;
    await handler(jobs[0]);
    await t.queue.complete(queue, jobs[0].id);
    handled++;
  }
}

const request = () => ({
  modelId,
  datasetId,
  transforms: [{ type: 'rotate', values: [0, 90, 180] }],
  metrics: ['accuracy', 'ekld', 'nv'],
  nv: { layers: 'all', aggregation: ['mean'] },
  limit: 120,
});

beforeAll(async () => {
  // Small shards (120 samples x 4 images in shards of <= 160 inferences: 3 shards). No workers:
  // the test is the worker.
  t = await createTestApp({ shardInferences: 160, shardRetries: RETRIES, workers: 1 });
  datasetId = (await uploadFmnist(t)).id;
  modelId = (
    await uploadModel(t, 'fmnist-cnn-plain.onnx', { preprocessing: JSON.stringify(FMNIST_PREPROCESSING) })
  ).id;
  engine = createEnginePool({ workers: 1, ortThreads: 1, executionProvider: 'cpu' });
  deps = {
    pool: t.db.pool,
    boss: t.queue,
    engine,
    blobs: t.blobs,
    workerId: 'w-test',
    heartbeatMs: 200,
    staleAfterMs: 3000,
    partialsDir: path.join(t.dataDir, 'partials'),
    shardRetries: RETRIES,
    log: () => undefined,
  };
}, 60_000);
afterAll(async () => {
  await engine?.destroy();
  await t?.close();
});

describe('partial statistics in files', () => {
  let reference: unknown;

  it('each done shard names its synced file; the merge reads them and removes them with the results stored', async () => {
    const run = await submitRun(t, request());
    const shardHandler = createShardHandler(deps);
    expect(await drain(SHARD_QUEUE, (job) => shardHandler.handle(job))).toBe(3);
    const done = await shards(run.id);
    expect(done.map((s) => s.status)).toEqual(['done', 'done', 'done']);
    for (const s of done) {
      expect(s.partial_file).toMatch(new RegExp(`^${run.id}/${s.index}-1-w-test\\.part$`));
      expect(existsSync(path.join(deps.partialsDir, s.partial_file ?? ''))).toBe(true);
    }
    // The bytes are not in the database.
    const { rows } = await t.db.pool.query(
      'SELECT count(*)::int AS n FROM run_shards WHERE partial IS NOT NULL',
    );
    expect(rows[0].n).toBe(0);
    expect((await runRow(run.id)).status).toBe('running');

    expect(await drain(FINALIZE_QUEUE, createFinalizeHandler(deps))).toBe(1);
    expect((await runRow(run.id)).status).toBe('succeeded');
    expect((await shards(run.id)).map((s) => s.partial_file)).toEqual([null, null, null]);
    expect(existsSync(path.join(deps.partialsDir, run.id))).toBe(false);
    reference = await getResults(t, run.id);
  }, 60_000);

  it('a done shard whose file is gone runs again; the run ends with the same numbers', async () => {
    const run = await submitRun(t, request());
    const shardHandler = createShardHandler(deps);
    await drain(SHARD_QUEUE, (job) => shardHandler.handle(job));
    const lost = (await shards(run.id))[1];
    await rm(path.join(deps.partialsDir, lost.partial_file ?? ''));

    // The merge notices, puts shard 1 back with a job of its own, and stops there.
    expect(await drain(FINALIZE_QUEUE, createFinalizeHandler(deps))).toBe(1);
    expect((await shards(run.id)).map((s) => s.status)).toEqual(['done', 'pending', 'done']);
    expect(await runRow(run.id)).toMatchObject({ status: 'running', progress_done: 320 });

    expect(await drain(SHARD_QUEUE, (job) => shardHandler.handle(job))).toBe(1);
    expect((await shards(run.id))[1].partial_file).toMatch(new RegExp(`^${run.id}/1-2-w-test\\.part$`));
    expect(await drain(FINALIZE_QUEUE, createFinalizeHandler(deps))).toBe(1);
    expect((await runRow(run.id)).status).toBe('succeeded');
    expect(resultDiffs(await getResults(t, run.id), reference)).toEqual([]);
  }, 60_000);

  it('the janitor removes the partials of runs that are over, and keeps those of active runs', async () => {
    const active = await submitRun(t, request());
    const over = await submitRun(t, request());
    await t.app.inject({ method: 'POST', url: `/v1/runs/${over.id}/cancel`, headers: t.auth });
    for (const id of [active.id, over.id]) {
      await mkdir(path.join(deps.partialsDir, id), { recursive: true });
      await writeFile(path.join(deps.partialsDir, id, '0-1-w-gone.part'), 'x');
    }
    // A folder of a run that no longer exists at all, and a file that is nobody's run.
    const deleted = '00000000-0000-4000-8000-00000000dead';
    await mkdir(path.join(deps.partialsDir, deleted), { recursive: true });
    await writeFile(path.join(deps.partialsDir, 'README'), 'not a run');

    expect(await removeOrphanedPartials(deps)).toBe(2);
    expect((await readdir(deps.partialsDir)).sort()).toEqual([active.id, 'README'].sort());
    await t.app.inject({ method: 'POST', url: `/v1/runs/${active.id}/cancel`, headers: t.auth });
    // Leave the queue empty for the next tests.
    await drain(SHARD_QUEUE, async () => undefined);
  }, 60_000);
});

describe('shards whose worker dies (no heartbeat)', () => {
  /** Marks shard `index` as run by a dead worker whose last heartbeat was a minute ago. */
  async function dies(runId: string, index: number, abandoned: number) {
    await t.db.pool.query(
      `UPDATE run_shards SET status = 'running', worker_id = 'w-dead', attempts = attempts + 1,
              heartbeat_at = now() - interval '1 minute', abandoned = $3
        WHERE run_id = $1 AND index = $2`,
      [runId, index, abandoned],
    );
  }

  it(`the janitor re-issues it ${RETRIES} times, then the run fails with SHARD_ABANDONED`, async () => {
    const run = await submitRun(t, request());
    await drain(SHARD_QUEUE, async () => undefined); // the first jobs are lost with the worker
    for (let times = 0; times < RETRIES; times++) {
      await dies(run.id, 0, times);
      expect(await recoverStaleShards(deps)).toBe(1);
      expect((await shards(run.id))[0]).toMatchObject({ status: 'pending', abandoned: times + 1 });
      expect((await runRow(run.id)).status).toBe('queued');
      // A job for it again.
      expect(await drain(SHARD_QUEUE, async () => undefined)).toBe(1);
    }
    await dies(run.id, 0, RETRIES);
    expect(await recoverStaleShards(deps)).toBe(1);
    const [shard] = await shards(run.id);
    expect(shard).toMatchObject({ status: 'failed', abandoned: RETRIES + 1 });
    expect(shard.error).toMatch(/shard 0 \(samples 0\.\.39\) was abandoned 3 times/);
    const failed = await runRow(run.id);
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('SHARD_ABANDONED');
    expect(await drain(SHARD_QUEUE, async () => undefined)).toBe(0);
  }, 60_000);

  it('a worker taking over a shard abandoned once too often fails the run instead of running it', async () => {
    const run = await submitRun(t, request());
    const [job] = await t.queue.fetch<ShardJobData>(SHARD_QUEUE, { includeMetadata: true, batchSize: 1 });
    await dies(run.id, job.data.index, RETRIES);
    await createShardHandler(deps).handle(job);
    const shard = (await shards(run.id))[job.data.index];
    expect(shard).toMatchObject({ status: 'failed', abandoned: RETRIES + 1 });
    expect((await runRow(run.id)).error?.code).toBe('SHARD_ABANDONED');
    await drain(SHARD_QUEUE, async () => undefined);
    // ...and below the limit it simply takes the shard over and runs it.
    const next = await submitRun(t, request());
    const [again] = await t.queue.fetch<ShardJobData>(SHARD_QUEUE, { includeMetadata: true, batchSize: 1 });
    expect(again.data.runId).toBe(next.id);
    await dies(next.id, again.data.index, RETRIES - 1);
    await createShardHandler(deps).handle(again);
    expect((await shards(next.id))[again.data.index]).toMatchObject({ status: 'done', abandoned: RETRIES });
  }, 60_000);
});
