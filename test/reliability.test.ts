// Queue and shard reliability inside one process (the real app, real pg-boss, real engine
// threads): results do not depend on sharding or thread count, a model that fails at run time
// fails its run after the retries and leaves the pool healthy, cancel stops in-flight work, and
// progress moves while a run runs. Faults of whole processes: reliability-process.test.ts.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OnnxModelBuilder } from '../src/engine/onnxBuilder.js';
import { SHARD_QUEUE, type ShardJobData } from '../src/jobs/queue.js';
import { recoverOrphanedJobs } from '../src/jobs/runLifecycle.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { countNumbers, resultDiffs } from './helpers/compare.js';
import {
  FMNIST_PREPROCESSING,
  getResults,
  submitRun,
  uploadFmnist,
  uploadModel,
  waitForRun,
} from './helpers/runs.js';

interface ShardRow {
  index: number;
  start: number;
  count: number;
  status: string;
  attempts: number;
  error: string | null;
  timings: { threadId?: number } | null;
}

async function shardsOf(t: TestApp, runId: string): Promise<ShardRow[]> {
  const { rows } = await t.db.pool.query<ShardRow>(
    'SELECT index, start, count, status, attempts, error, timings FROM run_shards WHERE run_id = $1 ORDER BY index',
    [runId],
  );
  return rows;
}

async function setUp(overrides: Parameters<typeof createTestApp>[0]) {
  const t = await createTestApp(overrides, { workers: true });
  const datasetId = (await uploadFmnist(t)).id;
  const modelId = (
    await uploadModel(t, 'fmnist-cnn-plain.onnx', { preprocessing: JSON.stringify(FMNIST_PREPROCESSING) })
  ).id;
  return { t, datasetId, modelId };
}

const sweep = (modelId: string, datasetId: string, limit: number) => ({
  modelId,
  datasetId,
  // Off-grid angles too: interpolated pixels must not depend on how samples are batched.
  transforms: [{ type: 'rotate', values: [15, 90, 180, 250] }],
  metrics: ['accuracy', 'ekld', 'nv'],
  nv: { layers: 'all', aggregation: ['none', 'mean'] },
  limit,
});

describe('the same numbers for any sharding and any number of engine threads', () => {
  let one: Awaited<ReturnType<typeof setUp>> | undefined;
  let two: Awaited<ReturnType<typeof setUp>> | undefined;
  afterAll(async () => {
    await one?.t.close();
    await two?.t.close();
  });

  it('one thread and one shard vs two threads and seven uneven shards: equal to 1e-9', async () => {
    // (a) one engine thread, shards as large as the run
    one = await setUp({ workers: 1, shardInferences: 1_000_000 });
    const a = await submitRun(one.t, sweep(one.modelId, one.datasetId, 300));
    // (b) two engine threads, 300 samples x 5 images in shards of <= 230 inferences: 7 shards
    // of 43 samples, the last of 42
    two = await setUp({ workers: 2, shardInferences: 230 });
    const b = await submitRun(two.t, sweep(two.modelId, two.datasetId, 300));

    const [doneA, doneB] = await Promise.all([waitForRun(one.t, a.id), waitForRun(two.t, b.id)]);
    expect(doneA.status, JSON.stringify(doneA.error)).toBe('succeeded');
    expect(doneB.status, JSON.stringify(doneB.error)).toBe('succeeded');

    const shardsA = await shardsOf(one.t, a.id);
    expect(shardsA.map((s) => [s.start, s.count, s.status])).toEqual([[0, 300, 'done']]);
    const shardsB = await shardsOf(two.t, b.id);
    expect(shardsB.map((s) => s.count)).toEqual([43, 43, 43, 43, 43, 43, 42]);
    expect(shardsB.every((s) => s.status === 'done')).toBe(true);
    const threads = new Set(shardsB.map((s) => s.timings?.threadId));
    expect(threads.has(undefined)).toBe(false);
    expect(threads.size, 'shards ran on both engine threads').toBe(2);

    const ra = await getResults(one.t, a.id);
    const rb = await getResults(two.t, b.id);
    expect(countNumbers(ra)).toBeGreaterThan(200);
    expect(resultDiffs(rb, ra)).toEqual([]);
  }, 90_000);
});

/**
 * A linear classifier whose last node reshapes its logits to [1, 10]: it loads, passes upload
 * inspection (which probes with a batch of one), and fails at run time on every larger batch.
 */
/**
 * Runs on zeros (so upload's probe accepts it) but fails on any real image: the logits are
 * reshaped to [-1, 10 + 10080 k] with k = ceil(clip(max(input), 0, 1)), i.e. [-1, 10] for an
 * all-zero batch and [-1, 10090] otherwise, which no batch below 1009 images fits.
 */
function failsOnRealImagesModel(): Uint8Array {
  const b = new OnnxModelBuilder({ opset: 13 });
  b.input('input', 'float32', ['N', 1, 28, 28]);
  const weights = new Float32Array(784 * 10).map((_, i) => ((i * 7919) % 13) / 13 - 0.5);
  b.initializer('W', weights, [784, 10]);
  const flat = b.op('Flatten', ['input'], { axis: 1 });
  const logits = b.op('MatMul', [flat, 'W']);
  const max = b.op('ReduceMax', ['input'], { keepdims: 0 });
  const clipped = b.op('Clip', [max, b.float32([0], []), b.float32([1], [])]);
  const k = b.op('Cast', [b.op('Ceil', [clipped])], { to: 7 });
  const width = b.op('Add', [b.op('Mul', [k, b.int64([10080], [])]), b.int64([10], [])]);
  const shape = b.op('Concat', [b.int64([-1]), b.op('Unsqueeze', [width, b.int64([0])])], { axis: 0 });
  b.node('Reshape', [logits, shape], ['logits']);
  b.output('logits', 'float32', ['N', 10]);
  return b.toBytes();
}

interface RunView {
  status: string;
  progress: { done: number; total: number };
  error: { code?: string; message: string } | null;
}

describe('faults inside one worker process', () => {
  let env: Awaited<ReturnType<typeof setUp>>;
  beforeAll(async () => {
    // Default shard size: a 1000-sample run is two shards of 2,500 inferences, one per thread.
    env = await setUp({ workers: 2, shardRetries: 2 });
  }, 60_000);
  afterAll(async () => env?.t.close());

  const getRun = async (id: string) => {
    const res = await env.t.app.inject({ method: 'GET', url: `/v1/runs/${id}`, headers: env.t.auth });
    return res.json() as RunView;
  };

  it('progress advances at least every 2 s while a run runs', async () => {
    const { t, modelId, datasetId } = env;
    // 12 rotations: a run long enough (13,000 images) to see progress move several times.
    const run = await submitRun(t, {
      ...sweep(modelId, datasetId, 1000),
      transforms: [{ type: 'rotate', range: { from: -180, to: 180, step: 30 } }],
    });
    const changes: number[] = [];
    let last = -1;
    let lastChange = Date.now();
    let maxGap = 0;
    let view: RunView;
    for (;;) {
      view = await getRun(run.id);
      const now = Date.now();
      if (['succeeded', 'failed', 'canceled'].includes(view.status)) break;
      if (view.progress.done !== last) {
        expect(view.progress.done).toBeGreaterThanOrEqual(Math.max(last, 0));
        if (last >= 0) changes.push(now - lastChange);
        last = view.progress.done;
        lastChange = now;
      } else if (view.status === 'running' && view.progress.done < view.progress.total) {
        maxGap = Math.max(maxGap, now - lastChange);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(view.status, JSON.stringify(view.error)).toBe('succeeded');
    expect(view.progress).toEqual({ done: 13000, total: 13000 });
    expect(changes.length, 'progress moved several times').toBeGreaterThanOrEqual(4);
    expect(maxGap, `gaps between progress changes: ${changes.join(', ')} ms`).toBeLessThan(2000);
  }, 90_000);

  it('cancel stops in-flight shards within 3 s; no shard completes after it', async () => {
    const { t, modelId, datasetId } = env;
    const run = await submitRun(t, {
      ...sweep(modelId, datasetId, 1000),
      transforms: [{ type: 'rotate', range: { from: -180, to: 180, step: 30 } }],
    });
    for (let view = await getRun(run.id); view.progress.done === 0; view = await getRun(run.id)) {
      expect(view.status).toMatch(/queued|running/);
      await new Promise((r) => setTimeout(r, 50));
    }
    const running = await shardsOf(t, run.id);
    expect(running.filter((s) => s.status === 'running').length).toBeGreaterThan(0);

    const res = await t.app.inject({ method: 'POST', url: `/v1/runs/${run.id}/cancel`, headers: t.auth });
    expect(res.statusCode, res.body).toBe(200);
    const canceledAt = Date.now();
    let shards = await shardsOf(t, run.id);
    while (shards.some((s) => s.status === 'running' || s.status === 'pending')) {
      expect(Date.now() - canceledAt, JSON.stringify(shards)).toBeLessThan(3000);
      await new Promise((r) => setTimeout(r, 50));
      shards = await shardsOf(t, run.id);
    }
    expect(
      shards.every((s) => s.status === 'canceled'),
      JSON.stringify(shards),
    ).toBe(true);
    const { rows } = await t.db.pool.query<{ late: number }>(
      `SELECT count(*)::int AS late FROM run_shards s JOIN runs r ON r.id = s.run_id
        WHERE r.id = $1 AND s.status = 'done'`,
      [run.id],
    );
    expect(rows[0].late).toBe(0);
    // Nothing moves afterwards: the run stays canceled, its shards stay canceled.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await getRun(run.id)).status).toBe('canceled');
    expect((await shardsOf(t, run.id)).map((s) => s.status)).toEqual(shards.map((s) => s.status));
  }, 60_000);

  it('a model that fails at run time: retries, then the run fails with the cause; the next run succeeds', async () => {
    const { t, datasetId, modelId } = env;
    const file = path.join(t.dataDir, 'fails-on-real-images.onnx');
    await writeFile(file, failsOnRealImagesModel());
    const bad = await uploadModel(t, file, { preprocessing: JSON.stringify(FMNIST_PREPROCESSING) });
    const run = await submitRun(t, {
      modelId: bad.id,
      datasetId,
      transforms: [{ type: 'rotate', values: [0, 90] }],
      metrics: ['accuracy', 'ekld'],
      limit: 100,
    });
    const done = await waitForRun(t, run.id, 60_000);
    expect(done.status).toBe('failed');
    const error = done.error as { code: string; message: string };
    expect(error.code).toBe('SHARD_FAILED');
    expect(error.message).toMatch(/failed after 3 attempts/);
    expect(error.message).toMatch(/reshape/i);
    const shards = await shardsOf(t, run.id);
    // The shard named in the error ran 1 + SHARD_RETRIES times; none succeeded.
    const named = Number(/shard (\d+)/.exec(error.message)?.[1]);
    expect(shards[named].attempts).toBe(3);
    expect(shards[named].status).toBe('failed');
    expect(shards[named].error).toMatch(/reshape/i);
    expect(Math.max(...shards.map((s) => s.attempts))).toBe(3);
    expect(shards.some((s) => s.status === 'done')).toBe(false);

    // The pool is healthy: a good run right after succeeds on both threads.
    const good = await submitRun(t, sweep(modelId, datasetId, 100));
    const ok = await waitForRun(t, good.id, 60_000);
    expect(ok.status, JSON.stringify(ok.error)).toBe('succeeded');
    expect(env.t.workers?.engine.size).toBe(2);
  }, 60_000);
});

describe('the janitor', () => {
  it('hands out again a job whose process fetched it and died before claiming its shard', async () => {
    // No workers: this test plays the dead process by hand.
    const t = await createTestApp({ workers: 2 });
    try {
      const datasetId = (await uploadFmnist(t)).id;
      const modelId = (await uploadModel(t, 'fmnist-cnn-plain.onnx')).id;
      const run = await submitRun(t, sweep(modelId, datasetId, 100));
      const [lost] = await t.queue.fetch<ShardJobData>(SHARD_QUEUE);
      const [alive] = await t.queue.fetch<ShardJobData>(SHARD_QUEUE);
      expect([lost.data.index, alive.data.index].sort()).toEqual([0, 1]);
      // Both fetched a minute ago; `alive`'s shard is running with a fresh heartbeat.
      await t.db.pool.query(
        `UPDATE pgboss.job SET started_on = now() - interval '1 minute' WHERE id = ANY($1::uuid[])`,
        [[lost.id, alive.id]],
      );
      await t.db.pool.query(
        `UPDATE run_shards SET status = 'running', worker_id = 'w-alive', heartbeat_at = now(), attempts = 1
          WHERE run_id = $1 AND index = $2`,
        [run.id, alive.data.index],
      );
      const deps = { pool: t.db.pool, boss: t.queue, staleAfterMs: 15_000, log: () => undefined };
      expect(await recoverOrphanedJobs(deps)).toBe(1);
      expect(await recoverOrphanedJobs(deps)).toBe(0);

      const { rows } = await t.db.pool.query<{ id: string; index: number; state: string }>(
        `SELECT id, (data->>'index')::int AS index, state FROM pgboss.job WHERE name = $1 ORDER BY created_on, id`,
        [SHARD_QUEUE],
      );
      const byIndex = (i: number) => rows.filter((r) => r.index === i).map((r) => r.state);
      expect(rows.find((r) => r.id === lost.id)?.state).toBe('completed');
      expect(byIndex(lost.data.index).sort()).toEqual(['completed', 'created']);
      expect(byIndex(alive.data.index)).toEqual(['active']);
    } finally {
      await t.close();
    }
  }, 60_000);
});
