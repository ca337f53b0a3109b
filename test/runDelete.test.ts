// DELETE /v1/runs/{id}: a finished run goes with everything that belongs to it (its row, shards,
// partial statistics, webhook events and deliveries) and nothing else; queued and running runs
// are refused with 409 RUN_ACTIVE; jobs and deliveries that arrive late for a deleted run are
// no-ops; and once a model's and a dataset's runs are gone, they can be deleted too.
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import type PgBoss from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnginePool } from '../src/engine/workerPool.js';
import type { ShardJobData } from '../src/jobs/queue.js';
import { createFinalizeHandler, createShardHandler } from '../src/jobs/runLifecycle.js';
import { deliver } from '../src/jobs/webhooks.js';
import { apiKeyRepository } from '../src/store/apiKeys.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';
import { FMNIST_PREPROCESSING, submitRun, uploadFmnist, uploadModel, waitForRun } from './helpers/runs.js';

let t: TestApp;
let modelId: string;
let datasetId: string;
/** A succeeded run, and one whose verdict used it as its baseline. */
let baselineId: string;
let candidateId: string;
let candidateVerdict: unknown;
let webhookId: string;

const small = (extra: Record<string, unknown> = {}) => ({
  modelId,
  datasetId,
  transforms: [{ type: 'rotate', values: [90, 180] }],
  metrics: ['accuracy'],
  limit: 30,
  ...extra,
});

const partialsOf = (runId: string) => path.join(t.dataDir, 'partials', runId);

function request(method: 'GET' | 'POST' | 'DELETE', url: string, key?: string) {
  const headers = key === undefined ? t.auth : key ? { authorization: `Bearer ${key}` } : {};
  return t.app.inject({ method, url, headers });
}

const del = (id: string, key?: string) => request('DELETE', `/v1/runs/${id}`, key);

function expectProblem(res: LightMyRequestResponse, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.json()).toMatchObject({ status, code });
  expectMatchesSpec('DELETE', '/v1/runs/{id}', res);
}

/** Rows that belong to a run, table by table. */
async function rowsOf(runId: string) {
  const { rows } = await t.db.pool.query<{
    runs: number;
    shards: number;
    events: number;
    deliveries: number;
  }>(
    `SELECT (SELECT count(*)::int FROM runs WHERE id = $1) AS runs,
            (SELECT count(*)::int FROM run_shards WHERE run_id = $1) AS shards,
            (SELECT count(*)::int FROM webhook_events WHERE run_id = $1) AS events,
            (SELECT count(*)::int FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
              WHERE e.run_id = $1) AS deliveries`,
    [runId],
  );
  return rows[0];
}

/** One delivery (as the dispatcher would make it) of each webhook event of the run. */
async function addDeliveries(runId: string): Promise<string[]> {
  const { rows } = await t.db.pool.query<{ id: string }>(
    `INSERT INTO webhook_deliveries (id, webhook_id, event_id, event, body)
     SELECT gen_random_uuid(), $2, e.id, e.type, '{}' FROM webhook_events e WHERE e.run_id = $1
     RETURNING id`,
    [runId, webhookId],
  );
  return rows.map((r) => r.id);
}

beforeAll(async () => {
  t = await createTestApp({}, { workers: true });
  modelId = (
    await uploadModel(t, 'fmnist-cnn-plain.onnx', {
      name: 'fmnist',
      preprocessing: JSON.stringify(FMNIST_PREPROCESSING),
    })
  ).id;
  datasetId = (await uploadFmnist(t)).id;
  webhookId = randomUUID();
  await t.db.pool.query(
    `INSERT INTO webhooks (id, url, secret, events) VALUES ($1, 'http://127.0.0.1:9/hook', 'a-secret', $2)`,
    [webhookId, ['run.succeeded', 'run.canceled', 'verdict.failed']],
  );
  baselineId = (await submitRun(t, small({ tags: ['baseline'] }))).id;
  expect((await waitForRun(t, baselineId)).status).toBe('succeeded');
  candidateId = (
    await submitRun(
      t,
      small({
        limit: 20,
        gates: [{ metric: 'accuracy.mean', op: 'maxDrop', value: 1 }],
        baseline: { runId: baselineId },
      }),
    )
  ).id;
  expect((await waitForRun(t, candidateId)).status).toBe('succeeded');
  const candidate = await request('GET', `/v1/runs/${candidateId}`);
  candidateVerdict = candidate.json().verdict;
  expect(candidateVerdict).toMatchObject({ baseline: { runId: baselineId } });
}, 120_000);
afterAll(async () => t?.close());

describe('DELETE /v1/runs/{id} refusals', () => {
  it('404 NOT_FOUND for unknown ids and ids that are not UUIDs, never a 500', async () => {
    for (const id of [randomUUID(), 'not-a-uuid', 'x'.repeat(100), '%00', "1'or'1'='1"]) {
      expectProblem(await del(id), 404, 'NOT_FOUND');
    }
  });

  it('401 without a key; 403 INSUFFICIENT_SCOPE for read and write keys (admin only, like models)', async () => {
    expectProblem(await del(baselineId, ''), 401, 'UNAUTHORIZED');
    const keys = apiKeyRepository(t.db.prisma);
    for (const scope of ['read', 'write'] as const) {
      const { key } = await keys.create(`${scope}-key`, [scope]);
      const res = await del(baselineId, key);
      expectProblem(res, 403, 'INSUFFICIENT_SCOPE');
      expect(res.json().requiredScope).toBe('admin');
    }
    expect((await request('GET', `/v1/runs/${baselineId}`)).statusCode).toBe(200);
  });

  it('the model and the dataset are in use while runs reference them; the message names the route', async () => {
    const model = await request('DELETE', `/v1/models/${modelId}`);
    expect(model.statusCode, model.body).toBe(409);
    expect(model.json()).toMatchObject({ code: 'MODEL_IN_USE' });
    expect(model.json().detail).toContain('DELETE /v1/runs/{id}');
    const dataset = await request('DELETE', `/v1/datasets/${datasetId}`);
    expect(dataset.statusCode, dataset.body).toBe(409);
    expect(dataset.json()).toMatchObject({ code: 'DATASET_IN_USE' });
    expect(dataset.json().detail).toContain('DELETE /v1/runs/{id}');
  });
});

describe('a queued or running run', () => {
  it('409 RUN_ACTIVE, and nothing changes; once canceled it is deleted, and late shards are no-ops', async () => {
    // Seconds of work: 1000 samples x (36 rotations + the clean image).
    const { id } = await submitRun(
      t,
      small({ transforms: [{ type: 'rotate', range: { from: -180, to: 180, step: 10 } }], limit: 1000 }),
    );
    const before = await rowsOf(id);
    const res = await del(id);
    expectProblem(res, 409, 'RUN_ACTIVE');
    expect(['queued', 'running']).toContain(res.json().runStatus);
    expect(res.json().detail).toContain(`POST /v1/runs/${id}/cancel`);
    const run = await request('GET', `/v1/runs/${id}`);
    expect(run.statusCode).toBe(200);
    expect(['queued', 'running']).toContain(run.json().status);
    expect(await rowsOf(id)).toEqual(before);
    expect(before).toMatchObject({ runs: 1 });
    expect(before.shards).toBeGreaterThan(1);

    const cancel = await request('POST', `/v1/runs/${id}/cancel`);
    expect(cancel.statusCode, cancel.body).toBe(200);
    await addDeliveries(id);
    expect((await rowsOf(id)).events).toBe(1); // run.canceled
    // Deleted at once, with shards possibly still in flight on the workers.
    const gone = await del(id);
    expect(gone.statusCode, gone.body).toBe(204);
    expectMatchesSpec('DELETE', '/v1/runs/{id}', gone);
    expect(await rowsOf(id)).toEqual({ runs: 0, shards: 0, events: 0, deliveries: 0 });

    // The workers let go of its jobs without a failure, and no partial statistics stay behind
    // (a shard that finishes late removes its own file; the janitor, the empty folder).
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { rows } = await t.db.pool.query<{ state: string }>(
        `SELECT state FROM pgboss.job WHERE data->>'runId' = $1`,
        [id],
      );
      const busy = rows.filter((r) => ['created', 'retry', 'active'].includes(r.state));
      if (busy.length === 0 && !existsSync(partialsOf(id))) {
        expect(rows.filter((r) => r.state === 'failed')).toEqual([]);
        break;
      }
      expect(Date.now(), `jobs ${JSON.stringify(busy)} or partials of the deleted run remain`).toBeLessThan(
        deadline,
      );
      await new Promise((r) => setTimeout(r, 200));
    }
    expectProblem(await del(id), 404, 'NOT_FOUND');
  });
});

describe('a succeeded run', () => {
  let baselineDeliveries: string[];

  it('204: its row, shards, partials, webhook events and deliveries go; nothing else does', async () => {
    baselineDeliveries = await addDeliveries(baselineId);
    expect(baselineDeliveries.length).toBe(1); // run.succeeded
    const candidateDeliveries = await addDeliveries(candidateId);
    expect(candidateDeliveries.length).toBeGreaterThan(0);
    // Partials a late shard could have left (the merge removed the real ones).
    await mkdir(partialsOf(baselineId), { recursive: true });
    await writeFile(path.join(partialsOf(baselineId), `0-1-w-late.part`), Buffer.alloc(16));
    const before = await rowsOf(baselineId);
    expect(before).toMatchObject({ runs: 1, events: 1, deliveries: 1 });
    expect(before.shards).toBeGreaterThan(0);
    const others = await rowsOf(candidateId);

    const res = await del(baselineId);
    expect(res.statusCode, res.body).toBe(204);
    expect(res.body).toBe('');
    expectMatchesSpec('DELETE', '/v1/runs/{id}', res);

    expect(await rowsOf(baselineId)).toEqual({ runs: 0, shards: 0, events: 0, deliveries: 0 });
    expect(existsSync(partialsOf(baselineId))).toBe(false);
    const get = await request('GET', `/v1/runs/${baselineId}`);
    expect(get.statusCode).toBe(404);
    expect(get.json().code).toBe('NOT_FOUND');
    expect((await request('GET', `/v1/runs/${baselineId}/results`)).statusCode).toBe(404);
    const list = await request('GET', `/v1/runs?modelId=${modelId}`);
    expect((list.json().items as Array<{ id: string }>).map((r) => r.id)).not.toContain(baselineId);

    // The run that used it as its baseline keeps its rows and its stored verdict as it was.
    expect(await rowsOf(candidateId)).toEqual(others);
    const candidate = await request('GET', `/v1/runs/${candidateId}`);
    expect(candidate.statusCode).toBe(200);
    expect(candidate.json().verdict).toEqual(candidateVerdict);
    const { rows } = await t.db.pool.query('SELECT count(*)::int AS n FROM webhooks WHERE id = $1', [
      webhookId,
    ]);
    expect(rows[0].n).toBe(1);
  });

  it('a second delete is 404', async () => {
    expectProblem(await del(baselineId), 404, 'NOT_FOUND');
  });

  it('a shard job, a merge job or a webhook delivery that arrives late for it is a no-op', async () => {
    const deps = {
      pool: t.db.pool,
      boss: t.queue,
      // Never reached: nothing of a deleted run gets as far as the engine.
      engine: {} as EnginePool,
      blobs: t.blobs,
      workerId: 'w-late',
      heartbeatMs: 1000,
      staleAfterMs: 15_000,
      partialsDir: path.join(t.dataDir, 'partials'),
      shardRetries: 2,
      log: () => undefined,
    };
    const job = <T>(data: T) =>
      ({
        id: randomUUID(),
        name: 'late',
        data,
        retryCount: 0,
        retryLimit: 2,
      }) as unknown as PgBoss.JobWithMetadata<T>;
    await expect(
      createShardHandler(deps).handle(job<ShardJobData>({ runId: baselineId, index: 0 })),
    ).resolves.toBeUndefined();
    await expect(createFinalizeHandler(deps)(job({ runId: baselineId }))).resolves.toBeUndefined();
    await expect(
      deliver(t.db.pool, job({ deliveryId: baselineDeliveries[0] }), t.config.webhooks),
    ).resolves.toBeUndefined();
    expect(await rowsOf(baselineId)).toEqual({ runs: 0, shards: 0, events: 0, deliveries: 0 });
    expect(existsSync(partialsOf(baselineId))).toBe(false);
  });

  it('once every run of them is deleted, the model and the dataset can be deleted (204)', async () => {
    expect((await del(candidateId)).statusCode).toBe(204);
    const { rows } = await t.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM runs');
    expect(rows[0].n).toBe(0);
    const model = await request('DELETE', `/v1/models/${modelId}`);
    expect(model.statusCode, model.body).toBe(204);
    const dataset = await request('DELETE', `/v1/datasets/${datasetId}`);
    expect(dataset.statusCode, dataset.body).toBe(204);
    expect((await request('GET', `/v1/models/${modelId}`)).statusCode).toBe(404);
    expect((await request('GET', `/v1/datasets/${datasetId}`)).statusCode).toBe(404);
  });
});
