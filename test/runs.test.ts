// The runs API end to end: submission (202, every 422 refusal with nothing stored or queued, 400s),
// progress while queued and running, results before and after success, cancel, listing with
// filters, sort and cursor pagination, and 404s, every response checked against openapi.yaml.
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { OnnxModelBuilder } from '../src/engine/onnxBuilder.js';
import { apiKeyRepository } from '../src/store/apiKeys.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';
import { tinyClassifier } from './helpers/onnxModels.js';
import {
  FMNIST_CLASSES,
  FMNIST_PREPROCESSING,
  submitRun,
  uploadFmnist,
  uploadIdxDataset,
  uploadModel,
  waitForRun,
} from './helpers/runs.js';

const MAX_RUN_INFERENCES = 1_000_000;

interface RunView {
  id: string;
  status: string;
  name: string | null;
  tags: string[];
  modelId: string;
  datasetId: string;
  progress: { done: number; total: number };
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: unknown;
  request: Record<string, unknown> & { points: number; limit: number };
  summary: Record<string, unknown> | null;
  timings: Record<string, unknown> | null;
}
interface RunPage {
  items: RunView[];
  nextCursor: string | null;
}

let t: TestApp;
let fmnist: string;
let synthetic: string;
let plain: string;
let rotaug: string;
let small8: string;
let rgb: string;
let oneClass: string;
let plainLayers: string[];

/** Deterministic pseudo-random numbers in [0, 1). */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** x [N,1,8,8] -> Flatten -> MatMul -> Add -> logits [N,10]: a 10-class model for 8x8 images. */
function small8Model(): Uint8Array {
  const rnd = prng(8);
  const b = new OnnxModelBuilder();
  b.input('x', 'float32', ['N', 1, 8, 8]);
  b.initializer(
    'W',
    Float32Array.from({ length: 640 }, () => rnd() - 0.5),
    [64, 10],
  );
  b.initializer(
    'B',
    Float32Array.from({ length: 10 }, () => rnd() - 0.5),
    [10],
  );
  b.node('Flatten', ['x'], ['flat'], { axis: 1 });
  b.node('MatMul', ['flat', 'W'], ['mm']);
  b.node('Add', ['mm', 'B'], ['logits']);
  b.output('logits', 'float32', ['N', 10]);
  return b.toBytes();
}

async function uploadBytes(name: string, bytes: Uint8Array, fields: Record<string, string> = {}) {
  const file = path.join(t.dataDir, `${name}.onnx`);
  await writeFile(file, bytes);
  return (await uploadModel(t, file, { name, ...fields })).id;
}

async function uploadSynthetic(): Promise<string> {
  const n = 12;
  const rnd = prng(28);
  const pixels = Buffer.from(Array.from({ length: n * 28 * 28 }, () => Math.floor(rnd() * 256)));
  const labels = Array.from({ length: n }, (_, i) => i % 10);
  return uploadIdxDataset(t, { pixels, labels, size: 28, name: 'synthetic' });
}

beforeAll(async () => {
  const defaults = loadConfig({});
  t = await createTestApp(
    // Large shards keep the number of queue jobs of the long run (canceled early) small.
    { limits: { ...defaults.limits, maxRunInferences: MAX_RUN_INFERENCES }, shardInferences: 50_000 },
    { workers: true },
  );
  fmnist = (await uploadFmnist(t)).id;
  synthetic = await uploadSynthetic();
  const pre = { preprocessing: JSON.stringify(FMNIST_PREPROCESSING) };
  const p = await uploadModel(t, 'fmnist-cnn-plain.onnx', pre);
  plain = p.id;
  plainLayers = p.layers.map((l) => l.name);
  rotaug = (await uploadModel(t, 'fmnist-cnn-rotaug.onnx', pre)).id;
  small8 = await uploadBytes('small8', small8Model());
  rgb = await uploadBytes('rgb', tinyClassifier({ channels: 3, size: 28 }));
  oneClass = await uploadBytes('one-class', tinyClassifier({ channels: 1, size: 28 }));
}, 120_000);
afterAll(async () => t?.close());

const inject = (method: 'GET' | 'POST', url: string, payload?: InjectOptions['payload']) =>
  t.app.inject({ method, url, headers: t.auth, payload });

const post = (body: unknown) => inject('POST', '/v1/runs', body as InjectOptions['payload']);

const cheap = (extra: Record<string, unknown> = {}) => ({
  modelId: plain,
  datasetId: fmnist,
  transforms: [{ type: 'rotate', values: [90, 180] }],
  metrics: ['accuracy'],
  limit: 20,
  ...extra,
});

async function counts() {
  const { rows } = await t.db.pool.query<{ runs: number; shards: number; jobs: number }>(
    `SELECT (SELECT count(*)::int FROM runs) AS runs, (SELECT count(*)::int FROM run_shards) AS shards,
            (SELECT count(*)::int FROM pgboss.job) AS jobs`,
  );
  return rows[0];
}

function expectProblem(res: LightMyRequestResponse, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.json()).toMatchObject({ status, code });
}

async function getRun(id: string): Promise<RunView> {
  const res = await inject('GET', `/v1/runs/${id}`);
  expect(res.statusCode, res.body).toBe(200);
  expectMatchesSpec('GET', '/v1/runs/{id}', res);
  return res.json() as RunView;
}

async function pollUntil(id: string, done: (r: RunView) => boolean, timeoutMs = 30_000): Promise<RunView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await getRun(id);
    if (done(run)) return run;
    if (Date.now() > deadline) throw new Error(`run ${id}: condition not reached (${JSON.stringify(run)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('POST /v1/runs refusals: nothing is stored or queued', () => {
  async function refused(body: unknown, status: number, code: string, detail?: RegExp) {
    const before = await counts();
    const res = await post(body);
    expectProblem(res, status, code);
    if (detail) expect(res.json().detail).toMatch(detail);
    expectMatchesSpec('POST', '/v1/runs', res);
    expect(await counts()).toEqual(before);
    return res;
  }

  it('starts from an empty store', async () => {
    expect(await counts()).toEqual({ runs: 0, shards: 0, jobs: 0 });
  });

  it('422 MODEL_NOT_FOUND and DATASET_NOT_FOUND, for unknown and malformed ids', async () => {
    await refused(cheap({ modelId: randomUUID() }), 422, 'MODEL_NOT_FOUND');
    await refused(cheap({ modelId: 'not-a-uuid' }), 422, 'MODEL_NOT_FOUND');
    await refused(cheap({ datasetId: randomUUID() }), 422, 'DATASET_NOT_FOUND');
    await refused(cheap({ datasetId: "x'; DROP TABLE runs; --" }), 422, 'DATASET_NOT_FOUND');
  });

  it('422 INVALID_SWEEP names the family and the problem', async () => {
    const sweep = (transforms: unknown[], detail: RegExp) =>
      refused(cheap({ transforms }), 422, 'INVALID_SWEEP', detail);
    await sweep([{ type: 'rotate', range: { from: 0, to: 90, step: 0 } }], /transforms\[0\].*step/);
    await sweep(
      [
        { type: 'rotate', values: [0] },
        { type: 'rotate', range: { from: 0, to: 90, step: -10 } },
      ],
      /transforms\[1\] \(rotate\).*away from/,
    );
    await sweep([{ type: 'rotate', values: [] }], /non-empty/);
    await sweep([{ type: 'rotate', range: { from: 10, to: 10, step: 1 } }], /no points/);
    await sweep([{ type: 'spin', values: [1] }], /unknown transform type 'spin'/);
    await sweep([{ type: 'rotate', values: [1], speed: 2 }], /unknown property 'speed'/);
    await sweep([{ type: 'rotate', values: ['90'] }], /finite number/);
    await sweep([{ type: 'scale', values: [0] }], /> 0/);
    // Valid numbers whose warp no graph can run on these images: refused now, not a failed run.
    await sweep([{ type: 'scale', values: [1, 1e300] }], /scale=1e\+300 cannot be applied to 28x28 images/);
    await sweep([{ type: 'scale', values: [5e-324] }], /scale=5e-324 cannot be applied to 28x28 images/);
    await sweep([{ type: 'brightness', uniform: { min: 0.5, max: -0.5 }, samples: 3 }], /greater than/);
    await sweep([{ type: 'grid', of: [] }], /non-empty/);
    await sweep(
      [
        {
          type: 'grid',
          of: [
            { type: 'rotate', values: [0] },
            { type: 'rotate', values: [90] },
          ],
        },
      ],
      /appears twice/,
    );
    // NV needs at least two points.
    await refused(
      cheap({ transforms: [{ type: 'rotate', values: [90] }], metrics: ['nv'] }),
      422,
      'INVALID_SWEEP',
      /at least 2/,
    );
  });

  it('422 SWEEP_TOO_LARGE is counted, not expanded: a billion points are refused at once', async () => {
    const started = performance.now();
    await refused(
      cheap({ transforms: [{ type: 'rotate', range: { from: 0, to: 1e9, step: 1 } }] }),
      422,
      'SWEEP_TOO_LARGE',
    );
    await refused(
      cheap({ transforms: [{ type: 'brightness', uniform: { min: 0, max: 1 }, samples: 1e9 }] }),
      422,
      'SWEEP_TOO_LARGE',
    );
    const thousand = Array.from({ length: 1000 }, (_, i) => i / 1000);
    await refused(
      cheap({
        transforms: [
          {
            type: 'grid',
            of: [
              { type: 'rotate', values: thousand },
              { type: 'scale', values: thousand.map((x) => x + 0.5) },
              { type: 'brightness', values: thousand },
            ],
          },
        ],
      }),
      422,
      'SWEEP_TOO_LARGE',
    );
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('422 RUN_TOO_LARGE above MAX_RUN_INFERENCES (samples x (points + 1))', async () => {
    // 1000 samples x (1440 points + 1) = 1,441,000 inferences > 1,000,000.
    const transforms = [{ type: 'rotate', range: { from: 0, to: 360, step: 0.25 } }];
    const res = await refused(cheap({ transforms, limit: 1000 }), 422, 'RUN_TOO_LARGE');
    expect(res.json().detail).toContain('1441000');
  });

  it('422 UNKNOWN_LAYER for a layer the model does not have', async () => {
    await refused(
      cheap({ metrics: ['nv'], nv: { layers: [plainLayers[0], '/nope'] } }),
      422,
      'UNKNOWN_LAYER',
      /"\/nope"/,
    );
  });

  it('422 INPUT_SIZE_MISMATCH for an 8x8 model on 28x28 images (resize: true is accepted: see below)', async () => {
    await refused(cheap({ modelId: small8 }), 422, 'INPUT_SIZE_MISMATCH', /8x8.*28x28/);
  });

  it('422 CHANNELS_MISMATCH, OUTPUT_CLASSES_MISMATCH, INVALID_PREPROCESSING, INVALID_CLASS_SIZES, INVALID_LIMIT', async () => {
    await refused(cheap({ modelId: rgb }), 422, 'CHANNELS_MISMATCH');
    await refused(cheap({ modelId: oneClass }), 422, 'OUTPUT_CLASSES_MISMATCH');
    await refused(cheap({ preprocessing: { mean: [0.1, 0.2] } }), 422, 'INVALID_PREPROCESSING');
    await refused(cheap({ preprocessing: { std: [0] } }), 422, 'INVALID_PREPROCESSING');
    await refused(cheap({ classSizes: [1, 2, 3] }), 422, 'INVALID_CLASS_SIZES');
    await refused(cheap({ metrics: ['nv'], limit: 1 }), 422, 'INVALID_LIMIT');
  });

  it('400 VALIDATION_FAILED for unknown fields, wrong types and out-of-range values', async () => {
    const bad: unknown[] = [
      { ...cheap(), priority: 1 },
      cheap({ limit: '10' }),
      cheap({ limit: -5 }),
      cheap({ limit: 0 }),
      cheap({ limit: 2.5 }),
      cheap({ metrics: ['speed'] }),
      cheap({ metrics: [] }),
      cheap({ combine: 'product' }),
      cheap({ classSizes: [-1] }),
      cheap({ nv: { layers: 'all', extra: true } }),
      cheap({ preprocessing: { layout: 'CHW' } }),
      cheap({ transforms: [] }),
      cheap({ transforms: [{ values: [90] }] }),
      cheap({ name: 'a\u0000b' }),
      cheap({ name: '' }),
      cheap({ tags: ['a,b'] }),
      cheap({ tags: ['nul\u0000'] }),
      cheap({ resize: 'yes' }),
      { datasetId: fmnist, transforms: [{ type: 'rotate', values: [90] }] },
      [],
    ];
    for (const body of bad) await refused(body, 400, 'VALIDATION_FAILED');
  });

  it('400 INVALID_JSON, 415, 401 and 403 (a read-only key cannot submit)', async () => {
    const before = await counts();
    const postText = (payload: string, contentType = 'application/json') =>
      t.app.inject({
        method: 'POST',
        url: '/v1/runs',
        headers: { ...t.auth, 'content-type': contentType },
        payload,
      });
    const raw = await postText('{"modelId": ');
    expectProblem(raw, 400, 'INVALID_JSON');
    expect(raw.json().detail).toMatch(/^the body is not valid JSON: /);
    expectMatchesSpec('POST', '/v1/runs', raw);
    const poisoned = await postText('{"__proto__": {"isAdmin": true}}');
    expectProblem(poisoned, 400, 'INVALID_JSON');
    expect(poisoned.json().detail).toContain('"__proto__"');
    // An empty JSON body is no body: here the schema asks for one.
    expectProblem(await postText(''), 400, 'VALIDATION_FAILED');
    const text = await postText('rotate please', 'text/plain');
    expect(text.statusCode).toBe(415);
    expectMatchesSpec('POST', '/v1/runs', text);
    const anonymous = await t.app.inject({ method: 'POST', url: '/v1/runs', payload: cheap() });
    expectProblem(anonymous, 401, 'UNAUTHORIZED');
    expectMatchesSpec('POST', '/v1/runs', anonymous);
    const { key } = await apiKeyRepository(t.db.prisma).create('reader', ['read']);
    const reader = await t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: { authorization: `Bearer ${key}` },
      payload: cheap(),
    });
    expectProblem(reader, 403, 'INSUFFICIENT_SCOPE');
    expectMatchesSpec('POST', '/v1/runs', reader);
    const list = await t.app.inject({
      method: 'GET',
      url: '/v1/runs',
      headers: { authorization: `Bearer ${key}` },
    });
    expect(list.statusCode).toBe(200);
    expect(await counts()).toEqual(before);
  });
});

describe('run lifecycle', () => {
  // A run that takes many seconds: 1000 samples x (360 rotations + the clean image).
  const heavy = () =>
    cheap({
      transforms: [{ type: 'rotate', range: { from: -180, to: 180, step: 1 } }],
      limit: 1000,
      tags: ['heavy'],
    });
  let heavyId: string;
  let queuedId: string;

  it('202 with Location and the queued run; progress total = samples x (points + 1)', async () => {
    const res = await post(heavy());
    expect(res.statusCode, res.body).toBe(202);
    expectMatchesSpec('POST', '/v1/runs', res);
    const run = res.json() as RunView;
    heavyId = run.id;
    expect(res.headers.location).toBe(`/v1/runs/${run.id}`);
    expect(run).toMatchObject({
      status: 'queued',
      name: null,
      tags: ['heavy'],
      modelId: plain,
      datasetId: fmnist,
      progress: { done: 0, total: 1000 * 361 },
      startedAt: null,
      finishedAt: null,
      error: null,
      summary: null,
      timings: null,
    });
    expect(run.request).toMatchObject({
      points: 360,
      limit: 1000,
      metrics: ['accuracy'],
      combine: 'concat',
      resize: false,
      preprocessing: { mean: [0.286], std: [0.353], layout: 'NCHW', outputIsProbability: false },
      input: { height: 28, width: 28, channels: 1 },
      nv: { layers: [] },
    });
    const { rows } = await t.db.pool.query(
      `SELECT (SELECT count(*)::int FROM run_shards WHERE run_id::text = $1) AS shards,
              (SELECT count(*)::int FROM pgboss.job WHERE data->>'runId' = $1) AS jobs`,
      [run.id],
    );
    expect(rows[0].shards).toBeGreaterThanOrEqual(2);
    expect(rows[0].jobs).toBe(rows[0].shards);
  });

  it('a run queued behind it shows progress {0, total}; results are 409 RUN_NOT_FINISHED; cancel works', async () => {
    const submitted = await submitRun(t, cheap({ name: 'behind', limit: 30 }));
    queuedId = submitted.id;
    const run = await getRun(queuedId);
    expect(['queued', 'running']).toContain(run.status);
    expect(run.progress.total).toBe(30 * 3);
    if (run.status === 'queued') expect(run.progress.done).toBe(0);

    const results = await inject('GET', `/v1/runs/${queuedId}/results`);
    expectProblem(results, 409, 'RUN_NOT_FINISHED');
    expect(results.json().runStatus).toBe(run.status);
    expectMatchesSpec('GET', '/v1/runs/{id}/results', results);

    // As some HTTP clients send it: a JSON content type with an empty body.
    const cancel = await t.app.inject({
      method: 'POST',
      url: `/v1/runs/${queuedId}/cancel`,
      headers: { ...t.auth, 'content-type': 'application/json' },
      payload: '',
    });
    expect(cancel.statusCode, cancel.body).toBe(200);
    expectMatchesSpec('POST', '/v1/runs/{id}/cancel', cancel);
    expect(cancel.json()).toMatchObject({ id: queuedId, status: 'canceled' });
    expect(cancel.json().finishedAt).not.toBeNull();
  });

  it('while running, progress advances; cancel stops it within seconds; cancel again is 409', async () => {
    const running = await pollUntil(heavyId, (r) => r.status !== 'queued' && r.progress.done > 0);
    expect(running.status).toBe('running');
    expect(running.startedAt).not.toBeNull();
    expect(running.progress.total).toBe(361_000);
    expect(running.progress.done).toBeGreaterThan(0);
    expect(running.progress.done).toBeLessThan(361_000);

    const early = await inject('GET', `/v1/runs/${heavyId}/results`);
    expectProblem(early, 409, 'RUN_NOT_FINISHED');
    expect(early.json().runStatus).toBe('running');
    expectMatchesSpec('GET', '/v1/runs/{id}/results', early);

    const cancel = await inject('POST', `/v1/runs/${heavyId}/cancel`);
    expect(cancel.statusCode, cancel.body).toBe(200);
    expectMatchesSpec('POST', '/v1/runs/{id}/cancel', cancel);
    expect(cancel.json()).toMatchObject({ status: 'canceled' });

    const again = await inject('POST', `/v1/runs/${heavyId}/cancel`);
    expectProblem(again, 409, 'RUN_FINISHED');
    expect(again.json().runStatus).toBe('canceled');
    expectMatchesSpec('POST', '/v1/runs/{id}/cancel', again);
    const queuedAgain = await inject('POST', `/v1/runs/${queuedId}/cancel`);
    expectProblem(queuedAgain, 409, 'RUN_FINISHED');

    // The workers let go of it: no job of the run is still being worked on or waiting.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const { rows } = await t.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pgboss.job
          WHERE data->>'runId' = ANY($1) AND state IN ('created', 'retry', 'active')`,
        [[heavyId, queuedId]],
      );
      if (rows[0].n === 0) break;
      expect(Date.now(), 'jobs of canceled runs still in flight').toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 200));
    }
    const after = await getRun(heavyId);
    expect(after.status).toBe('canceled');
    expect(after.progress.done).toBeLessThan(361_000);
    const late = await inject('GET', `/v1/runs/${heavyId}/results`);
    expectProblem(late, 409, 'RUN_NOT_FINISHED');
    expect(late.json().runStatus).toBe('canceled');
  });

  it('a succeeded run: summary, timings, full progress; results with K-entry per-class arrays and classSizes', async () => {
    const classSizes = FMNIST_CLASSES.map((_, i) => 6000 + i);
    const { id } = await submitRun(
      t,
      cheap({
        name: 'classes',
        tags: ['list', 'a'],
        metrics: ['accuracy', 'ekld'],
        classSizes,
      }),
    );
    const done = await waitForRun(t, id, 60_000);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const run = await getRun(id);
    expect(run.progress).toEqual({ done: 60, total: 60 });
    expect(run.startedAt).not.toBeNull();
    expect(run.finishedAt).not.toBeNull();
    expect(run.summary).toMatchObject({ samples: 20, points: 2 });
    expect(run.timings).toMatchObject({ shards: expect.any(Number) });

    const res = await inject('GET', `/v1/runs/${id}/results`);
    expect(res.statusCode, res.body).toBe(200);
    expectMatchesSpec('GET', '/v1/runs/{id}/results', res);
    const r = res.json();
    expect(r.samples).toBe(20);
    expect(r.nonFiniteSamples).toBe(0);
    expect(r.points.map((p: { params: unknown }) => p.params)).toEqual([{ rotate: 90 }, { rotate: 180 }]);
    expect(r.clean.perClassAccuracy).toHaveLength(10);
    for (const p of r.points) {
      expect(p.perClassAccuracy).toHaveLength(10);
      expect(typeof p.ekld).toBe('number');
    }
    expect(r.ekld.perClass).toHaveLength(10);
    r.ekld.perClass.forEach((c: { class: number; name: string; classSize: number | null }, i: number) => {
      expect(c).toMatchObject({ class: i, name: FMNIST_CLASSES[i], classSize: 6000 + i });
    });
    const counted = r.ekld.perClass.reduce((s: number, c: { count: number }) => s + c.count, 0);
    expect(counted).toBe(20);
    expect(r.nv).toBeUndefined();
    expect(run.summary?.accuracy).toMatchObject({ clean: r.clean.accuracy, worstCase: r.accuracy.worstCase });
    expect(run.summary?.ekld).toBe(r.ekld.overall);

    const cancel = await inject('POST', `/v1/runs/${id}/cancel`);
    expectProblem(cancel, 409, 'RUN_FINISHED');
    expect(cancel.json().runStatus).toBe('succeeded');
  });

  it('results with NV (layers x aggregations) and without eKLD match the contract', async () => {
    const layers = [plainLayers[0], plainLayers[plainLayers.length - 1]];
    const { id } = await submitRun(
      t,
      cheap({
        modelId: rotaug,
        tags: ['b'],
        metrics: ['accuracy', 'nv'],
        nv: { layers: layers, aggregation: ['none', 'mean'], dispersion: 'variance' },
      }),
    );
    const done = await waitForRun(t, id, 60_000);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const res = await inject('GET', `/v1/runs/${id}/results`);
    expect(res.statusCode, res.body).toBe(200);
    expectMatchesSpec('GET', '/v1/runs/{id}/results', res);
    const r = res.json();
    expect(r.ekld).toBeUndefined();
    expect(r.points[0].ekld).toBeUndefined();
    expect(
      r.nv.map((x: { layer: string; aggregation: string; dispersion: string }) => [
        x.layer,
        x.aggregation,
        x.dispersion,
      ]),
    ).toEqual([
      [layers[0], 'none', 'variance'],
      [layers[0], 'mean', 'variance'],
      [layers[1], 'none', 'variance'],
      [layers[1], 'mean', 'variance'],
    ]);
    const run = await getRun(id);
    expect(Object.keys(run.summary?.nv as object)).toHaveLength(4);
  });

  it('resize: true runs an 8x8 model on the 28x28 dataset', async () => {
    const { id } = await submitRun(t, cheap({ modelId: small8, resize: true, tags: ['resized'] }));
    const done = await waitForRun(t, id, 60_000);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const run = await getRun(id);
    expect(run.request).toMatchObject({ resize: true, input: { height: 8, width: 8, channels: 1 } });
    const res = await inject('GET', `/v1/runs/${id}/results`);
    expectMatchesSpec('GET', '/v1/runs/{id}/results', res);
    expect(res.json().samples).toBe(20);
  });

  it('a run on another dataset (fewer samples than the limit: all of them)', async () => {
    const { id } = await submitRun(t, cheap({ datasetId: synthetic, tags: ['list', 'b'], limit: 1000 }));
    const done = await waitForRun(t, id, 60_000);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const run = await getRun(id);
    expect(run.request.limit).toBe(12);
    expect(run.progress).toEqual({ done: 36, total: 36 });
  });
});

describe('GET /v1/runs', () => {
  let all: RunView[];

  async function list(query: string): Promise<RunPage> {
    const res = await inject('GET', `/v1/runs${query ? `?${query}` : ''}`);
    expect(res.statusCode, res.body).toBe(200);
    expectMatchesSpec('GET', '/v1/runs', res);
    return res.json() as RunPage;
  }
  const ids = (runs: RunView[]) => runs.map((r) => r.id);

  async function walk(query: string, limit: number): Promise<RunView[]> {
    const out: RunView[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 100; pages++) {
      const page: RunPage = await list(
        `${query}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(page.items.length).toBeLessThanOrEqual(limit);
      out.push(...page.items);
      cursor = page.nextCursor;
      if (!cursor) return out;
      expect(page.items).toHaveLength(limit);
    }
    throw new Error('pagination does not end');
  }

  beforeAll(async () => {
    all = (await list('limit=200')).items;
  });

  it('lists every run newest first by default, oldest first with sort=createdAt', async () => {
    expect(all).toHaveLength(6);
    const times = all.map((r) => Date.parse(r.createdAt));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    const asc = await list('limit=200&sort=createdAt');
    expect(ids(asc.items)).toEqual(ids(all).reverse());
    const explicit = await list('sort=-createdAt');
    expect(ids(explicit.items)).toEqual(ids(all));
    expect(explicit.nextCursor).toBeNull();
  });

  it('filters by modelId, datasetId, status and tag', async () => {
    const expectSet = async (query: string, keep: (r: RunView) => boolean) => {
      const got = await list(`${query}&limit=200`);
      const want = all.filter(keep);
      expect(want.length).toBeGreaterThan(0);
      expect(ids(got.items)).toEqual(ids(want));
    };
    await expectSet(`modelId=${plain}`, (r) => r.modelId === plain);
    await expectSet(`modelId=${rotaug}`, (r) => r.modelId === rotaug);
    await expectSet(`datasetId=${synthetic}`, (r) => r.datasetId === synthetic);
    await expectSet(`datasetId=${fmnist}`, (r) => r.datasetId === fmnist);
    await expectSet('status=canceled', (r) => r.status === 'canceled');
    await expectSet('status=succeeded', (r) => r.status === 'succeeded');
    await expectSet('tag=list', (r) => r.tags.includes('list'));
    await expectSet(`tag=b&modelId=${plain}`, (r) => r.tags.includes('b') && r.modelId === plain);
    expect((await list(`modelId=${small8}&status=canceled`)).items).toEqual([]);
    expect((await list('tag=nobody')).items).toEqual([]);
    expect((await list(`modelId=${randomUUID()}`)).items).toEqual([]);
  });

  it('filters by createdAfter (inclusive) and createdBefore (exclusive): a split without overlap', async () => {
    const mid = all[2].createdAt;
    const after = await list(`limit=200&createdAfter=${encodeURIComponent(mid)}`);
    const before = await list(`limit=200&createdBefore=${encodeURIComponent(mid)}`);
    expect(ids(after.items)).toEqual(ids(all.filter((r) => Date.parse(r.createdAt) >= Date.parse(mid))));
    expect(ids(before.items)).toEqual(ids(all.filter((r) => Date.parse(r.createdAt) < Date.parse(mid))));
    expect([...ids(after.items), ...ids(before.items)]).toEqual(ids(all));
    const window = await list(
      `createdAfter=${encodeURIComponent(all[4].createdAt)}&createdBefore=${encodeURIComponent(all[1].createdAt)}`,
    );
    expect(ids(window.items)).toEqual(
      ids(
        all.filter(
          (r) =>
            Date.parse(r.createdAt) >= Date.parse(all[4].createdAt) &&
            Date.parse(r.createdAt) < Date.parse(all[1].createdAt),
        ),
      ),
    );
  });

  it('paginates with limit 2 and the cursor to the end, both ways and with filters: no duplicates, no gaps', async () => {
    expect(ids(await walk('sort=-createdAt', 2))).toEqual(ids(all));
    expect(ids(await walk('sort=createdAt', 2))).toEqual(ids(all).reverse());
    expect(ids(await walk('sort=createdAt', 1))).toEqual(ids(all).reverse());
    expect(ids(await walk(`modelId=${plain}`, 2))).toEqual(ids(all.filter((r) => r.modelId === plain)));
    expect(ids(await walk('status=succeeded', 3))).toEqual(ids(all.filter((r) => r.status === 'succeeded')));
  });

  it('400 INVALID_CURSOR for cursors it did not issue (never a 500)', async () => {
    const forged = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    for (const cursor of [
      'garbage',
      forged({ a: 1 }),
      forged(['2024-01-01T00:00:00.000Z', '-'.repeat(36)]),
      forged(['+275760-09-13T00:00:00.000Z', randomUUID()]),
      forged(['0000-01-01T00:00:00.000Z', randomUUID()]),
      forged(['yesterday', randomUUID()]),
    ]) {
      const res = await inject('GET', `/v1/runs?cursor=${encodeURIComponent(cursor)}`);
      expectProblem(res, 400, 'INVALID_CURSOR');
      expectMatchesSpec('GET', '/v1/runs', res);
    }
  });

  it('400 VALIDATION_FAILED for malformed filters', async () => {
    for (const query of [
      'limit=-1',
      'limit=0',
      'limit=201',
      'limit=ten',
      'modelId=not-a-uuid',
      'datasetId=42',
      'status=done',
      'sort=name',
      'createdAfter=yesterday',
      'tag=%00',
      'colour=blue',
    ]) {
      const res = await inject('GET', `/v1/runs?${query}`);
      expectProblem(res, 400, 'VALIDATION_FAILED');
      expectMatchesSpec('GET', '/v1/runs', res);
    }
  });
});

describe('unknown and malformed run ids', () => {
  it('404 NOT_FOUND on every route, never a 500', async () => {
    for (const id of [randomUUID(), 'not-a-uuid', 'x'.repeat(100), '%00', "1'or'1'='1"]) {
      for (const [method, suffix, specPath] of [
        ['GET', '', '/v1/runs/{id}'],
        ['GET', '/results', '/v1/runs/{id}/results'],
        ['POST', '/cancel', '/v1/runs/{id}/cancel'],
      ] as const) {
        const res = await inject(method, `/v1/runs/${id}${suffix}`);
        expectProblem(res, 404, 'NOT_FOUND');
        expectMatchesSpec(method, specPath, res);
      }
    }
    // Longer than any route parameter (Fastify's maxParamLength): 414, still a problem document.
    const long = await inject('GET', `/v1/runs/${'x'.repeat(300)}`);
    expect(long.statusCode).toBe(414);
    expect(long.headers['content-type']).toMatch(/^application\/problem\+json/);
  });
});
