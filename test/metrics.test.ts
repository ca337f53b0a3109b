// GET /metrics (issue 6, point 4): Prometheus text with runs by status, queue depth, shard
// seconds, inferences (images per second), upload bytes and HTTP latency, after a real run;
// public by default, behind a read key with METRICS_PUBLIC=false.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';
import { FMNIST_PREPROCESSING, submitRun, uploadFmnist, uploadModel, waitForRun } from './helpers/runs.js';

/** The value of the sample `name{labels} value` having all the given labels (in any order). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(l);
    if (!m || m[1] !== name) return false;
    const have = (m[2] ?? '').split(/,(?=[a-z_]+=")/).filter(Boolean);
    return have.length === wanted.length && wanted.every((w) => have.includes(w));
  });
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('GET /metrics', () => {
  let t: TestApp;
  let runId: string;
  let total: number;
  beforeAll(async () => {
    t = await createTestApp({ shardInferences: 100 }, { workers: true });
    const model = await uploadModel(t, 'fmnist-cnn-plain.onnx', {
      preprocessing: JSON.stringify(FMNIST_PREPROCESSING),
    });
    const dataset = await uploadFmnist(t);
    const run = await submitRun(t, {
      modelId: model.id,
      datasetId: dataset.id,
      transforms: [{ type: 'rotate', values: [90, 180] }],
      metrics: ['accuracy', 'ekld'],
      limit: 60,
    });
    runId = run.id;
    const done = await waitForRun(t, run.id);
    expect(done.status).toBe('succeeded');
    total = done.progress.total;
    // One run that stays queued: submitted after the workers are stopped.
    await t.workers?.stop();
    await submitRun(t, {
      modelId: model.id,
      datasetId: dataset.id,
      transforms: [{ type: 'rotate', values: [90] }],
      metrics: ['accuracy'],
      limit: 10,
    });
  }, 120_000);
  afterAll(async () => t?.close());

  it('is Prometheus text, needs no key, and matches the contract', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expectMatchesSpec('GET', '/metrics', res);
    expect(res.body).toMatch(/^# HELP invariance_runs /m);
    expect(res.body).toMatch(/^# TYPE invariance_http_request_duration_seconds histogram$/m);
    expect(res.body).toMatch(/^process_resident_memory_bytes \d+/m);
  });

  it('reports runs by status, queue depth, shard seconds, inferences and upload bytes', async () => {
    const body = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(sample(body, 'invariance_runs', { status: 'succeeded' })).toBe(1);
    expect(sample(body, 'invariance_runs', { status: 'queued' })).toBe(1);
    expect(sample(body, 'invariance_runs', { status: 'failed' })).toBe(0);
    // The queued run's shards wait in the shard queue (the stopped workers do not take them).
    const { rows } = await t.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM run_shards s JOIN runs r ON r.id = s.run_id WHERE r.status = 'queued'`,
    );
    expect(sample(body, 'invariance_queue_depth', { queue: 'run-shard' })).toBe(rows[0].n);
    expect(sample(body, 'invariance_queue_depth', { queue: 'run-finalize' })).toBe(0);

    const shards = await t.db.pool.query<{ n: number; ms: number }>(
      `SELECT count(*)::int AS n, sum(duration_ms)::int AS ms FROM run_shards WHERE run_id = $1`,
      [runId],
    );
    expect(shards.rows[0].n).toBeGreaterThan(1);
    expect(sample(body, 'invariance_shard_duration_seconds_count')).toBe(shards.rows[0].n);
    expect(sample(body, 'invariance_shard_duration_seconds_sum')).toBeCloseTo(shards.rows[0].ms / 1000, 6);
    expect(sample(body, 'invariance_shard_duration_seconds_bucket', { le: '+Inf' })).toBe(shards.rows[0].n);

    // 60 samples x (2 points + 1).
    expect(total).toBe(180);
    expect(sample(body, 'invariance_inferences_total')).toBe(180);
    expect(sample(body, 'invariance_inferences_per_second')).toEqual(expect.any(Number));

    // The model fixture and the two IDX files.
    expect(sample(body, 'invariance_upload_bytes_total')).toBeGreaterThan(100_000);
    expect(sample(body, 'invariance_uploads_in_progress')).toBe(0);
  });

  it('counts shards once across scrapes, and HTTP latency by route pattern and status', async () => {
    await t.app.inject({ method: 'GET', url: `/v1/runs/${runId}`, headers: t.auth });
    await t.app.inject({
      method: 'GET',
      url: '/v1/runs/00000000-0000-4000-8000-000000000000',
      headers: t.auth,
    });
    await t.app.inject({ method: 'GET', url: '/no/such/route' });
    const body = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    const n = sample(body, 'invariance_shard_duration_seconds_count');
    const again = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(sample(again, 'invariance_shard_duration_seconds_count')).toBe(n);
    expect(sample(again, 'invariance_inferences_total')).toBe(180);

    const count = (route: string, status: number) =>
      sample(body, 'invariance_http_request_duration_seconds_count', {
        method: 'GET',
        route,
        status_code: String(status),
      });
    expect(count('/v1/runs/:id', 200)).toBeGreaterThanOrEqual(2);
    expect(count('/v1/runs/:id', 404)).toBe(1);
    expect(count('<unmatched>', 404)).toBe(1);
    expect(count('/metrics', 200)).toBeGreaterThanOrEqual(2);
    expect(
      sample(body, 'invariance_http_request_duration_seconds_bucket', {
        le: '+Inf',
        method: 'POST',
        route: '/v1/runs',
        status_code: '202',
      }),
    ).toBe(2);
  });

  it('keeps counting inferences after a run is deleted', async () => {
    const scrape = async () =>
      sample((await t.app.inject({ method: 'GET', url: '/metrics' })).body, 'invariance_inferences_total');
    expect(await scrape()).toBe(180);
    // The finished run goes (its progress leaves the sum); then the queued one makes progress.
    const del = await t.app.inject({ method: 'DELETE', url: `/v1/runs/${runId}`, headers: t.auth });
    expect(del.statusCode, del.body).toBe(204);
    expect(await scrape()).toBe(180);
    await t.db.pool.query(`UPDATE runs SET progress_done = progress_done + 50 WHERE status = 'queued'`);
    expect(await scrape()).toBe(230);
  });
});

describe('GET /metrics with METRICS_PUBLIC=false', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({}, { env: { METRICS_PUBLIC: 'false' } });
  });
  afterAll(async () => t?.close());

  it('needs a key with the read scope', async () => {
    const anonymous = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json().code).toBe('UNAUTHORIZED');
    expectMatchesSpec('GET', '/metrics', anonymous);
    const res = await t.app.inject({ method: 'GET', url: '/metrics', headers: t.auth });
    expect(res.statusCode).toBe(200);
    expect(res.body).toMatch(/^invariance_runs\{status="queued"\} 0$/m);
  });
});
