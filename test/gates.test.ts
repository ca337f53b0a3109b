// Gates, baselines, verdicts and comparisons through the real API: the rotation-augmented
// model passes a rotation gate that the plain model fails.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiKeyRepository } from '../src/store/apiKeys.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';
import {
  FMNIST_PREPROCESSING,
  getResults,
  submitRun,
  uploadFmnist,
  uploadModel,
  waitForRun,
} from './helpers/runs.js';

interface Verdict {
  status: string;
  gatesVersion: number;
  baseline: { runId: string } | null;
  gates: Array<{
    name: string;
    metric: string;
    status: string;
    actual: number | null;
    baseline?: number | null;
    message: string;
  }>;
}
interface RunView {
  id: string;
  status: string;
  verdict: Verdict | null;
}

let t: TestApp;
let datasetId: string;
let plainId: string;
let rotaugId: string;
const sweep = [{ type: 'rotate', values: [0, 90, 180] }];
const base = () => ({
  datasetId,
  limit: 200,
  metrics: ['accuracy', 'ekld', 'nv'],
  nv: { layers: ['logits'] },
  transforms: sweep,
});

async function run(body: Record<string, unknown>): Promise<RunView> {
  const submitted = await submitRun(t, body);
  const done = await waitForRun(t, submitted.id);
  expect(done.status).toBe('succeeded');
  const res = await t.app.inject({ method: 'GET', url: `/v1/runs/${submitted.id}`, headers: t.auth });
  expectMatchesSpec('GET', '/v1/runs/{id}', res);
  return res.json() as RunView;
}

beforeAll(async () => {
  t = await createTestApp({}, { workers: true });
  datasetId = (await uploadFmnist(t)).id;
  const pre = JSON.stringify(FMNIST_PREPROCESSING);
  plainId = (
    await uploadModel(t, 'fmnist-cnn-plain.onnx', { name: 'fmnist', version: 'plain', preprocessing: pre })
  ).id;
  rotaugId = (
    await uploadModel(t, 'fmnist-cnn-rotaug.onnx', { name: 'fmnist', version: 'rotaug', preprocessing: pre })
  ).id;
}, 120_000);
afterAll(async () => t?.close());

describe('gates', () => {
  const rotationGate = { metric: 'accuracy.at(rotate=90)', op: '>=', value: 0.5 };
  let production: RunView;

  it('PASS for the rotation-augmented model, with readable messages', async () => {
    production = await run({
      ...base(),
      modelId: rotaugId,
      tags: ['production'],
      gates: [rotationGate, { metric: 'ekld.overall', op: '<=', value: 5, severity: 'warn' }],
    });
    const results = await getResults<{ points: Array<{ accuracy: number }>; ekld: { overall: number } }>(
      t,
      production.id,
    );
    expect(production.verdict?.status).toBe('PASS');
    expect(production.verdict?.gatesVersion).toBe(1);
    const [g0, g1] = production.verdict!.gates;
    expect(g0).toMatchObject({
      metric: 'accuracy.at(rotate=90)',
      status: 'PASS',
      actual: results.points[1].accuracy,
    });
    expect(g0.message).toMatch(/^accuracy\.at\(rotate=90\) = 0\.\d+ >= 0\.50*$/);
    expect(g1.actual).toBe(results.ekld.overall);

    // The engine records the samples whose prediction flips most under the sweep.
    const ex = await t.app.inject({
      method: 'GET',
      url: `/v1/runs/${production.id}/examples`,
      headers: t.auth,
    });
    expect(ex.statusCode, ex.body).toBe(200);
    expectMatchesSpec('GET', '/v1/runs/{id}/examples', ex);
    const items = ex.json().items as Array<{ index: number }>;
    expect(items.length).toBeGreaterThan(0);
    expect(items.every((e) => Number.isInteger(e.index) && e.index >= 0 && e.index < 200)).toBe(true);
  });

  it('FAIL for the plain model; a missing baseline is ERROR, not a silent pass', async () => {
    const plain = await run({ ...base(), modelId: plainId, gates: [rotationGate] });
    expect(plain.verdict?.status).toBe('FAIL');
    expect(plain.verdict?.gates[0].message).toMatch(/^accuracy\.at\(rotate=90\) = 0\.\d+ < 0\.50*$/);
    const { rows } = await t.db.pool.query('SELECT verdict_status FROM runs WHERE id = $1', [plain.id]);
    expect(rows[0].verdict_status).toBe('FAIL');

    const missing = await run({
      ...base(),
      modelId: plainId,
      gates: [{ metric: 'accuracy.mean', op: 'maxDrop', value: '2%' }],
      baseline: { model: 'fmnist', tag: 'no-such-tag' },
    });
    expect(missing.verdict?.status).toBe('ERROR');
    expect(missing.verdict?.gates[0].message).toMatch(
      /no succeeded run of model "fmnist" tagged "no-such-tag"/,
    );
  });

  it('baseline by model name and tag: maxDrop against the production run', async () => {
    const candidate = await run({
      ...base(),
      modelId: plainId,
      gates: [
        { metric: 'accuracy.mean', op: 'maxDrop', value: '2%' },
        { metric: 'accuracy.clean', op: 'maxDrop', value: 0.5 },
      ],
      baseline: { model: 'fmnist', tag: 'production' },
    });
    const mine = await getResults<{
      accuracy: { mean: number; clean?: number };
      clean: { accuracy: number };
    }>(t, candidate.id);
    const theirs = await getResults<{ accuracy: { mean: number }; clean: { accuracy: number } }>(
      t,
      production.id,
    );
    expect(candidate.verdict?.baseline).toEqual({ runId: production.id });
    const [drop, clean] = candidate.verdict!.gates;
    expect(drop).toMatchObject({ actual: mine.accuracy.mean, baseline: theirs.accuracy.mean });
    // The plain model loses far more than 2% mean accuracy under rotation.
    expect(theirs.accuracy.mean - mine.accuracy.mean).toBeGreaterThan(0.02 * theirs.accuracy.mean);
    expect(drop.status).toBe('FAIL');
    expect(drop.message).toMatch(/^accuracy\.mean dropped .* from baseline .*, more than the allowed 2%$/);
    expect(clean.status).toBe('PASS');
    expect(candidate.verdict?.status).toBe('FAIL');
  });

  it('invalid gates are refused at submission, and nothing is queued', async () => {
    const before = await t.db.prisma.run.count();
    for (const gates of [
      [{ metric: 'accuracy.at(rotate=45)', op: '>=', value: 0.5 }],
      [{ metric: 'nv.layer(/Relu_output_0)', op: '<', value: 1 }],
      [{ metric: 'accuracy.mean', op: '==', value: 1 }],
      [{ metric: 'ekld.class(Unicorn)', op: '<', value: 1 }],
    ]) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/runs',
        headers: t.auth,
        payload: { ...base(), modelId: plainId, gates },
      });
      expect(res.statusCode, JSON.stringify(gates)).toBe(422);
      expect(res.json().code).toBe('INVALID_GATE');
    }
    expect(await t.db.prisma.run.count()).toBe(before);
  });

  it('POST /v1/runs/{id}/verdict evaluates new gates without re-running (a read key may)', async () => {
    const { key } = await apiKeyRepository(t.db.prisma).create('dashboard', ['read']);
    const res = await t.app.inject({
      method: 'POST',
      url: `/v1/runs/${production.id}/verdict`,
      headers: { authorization: `Bearer ${key}` },
      payload: {
        gates: [
          { metric: 'ekld.class(T-shirt/top)', op: '<', value: 0.000001 },
          { metric: 'nv.layer(logits)', op: '<', value: 100 },
        ],
      },
    });
    expect(res.statusCode, res.body).toBe(200);
    expectMatchesSpec('POST', '/v1/runs/{id}/verdict', res);
    const v = res.json() as Verdict;
    expect(v.status).toBe('FAIL');
    expect(v.gates.map((g) => g.status)).toEqual(['FAIL', 'PASS']);
    const stored = (
      await t.app.inject({ method: 'GET', url: `/v1/runs/${production.id}`, headers: t.auth })
    ).json();
    expect(stored.verdict.status).toBe('PASS');
  });

  it('compares runs of the same sweep, refuses different sweeps', async () => {
    const plain = (
      await t.app.inject({ method: 'GET', url: `/v1/runs?modelId=${plainId}&limit=1`, headers: t.auth })
    ).json().items[0];
    const res = await t.app.inject({
      method: 'GET',
      url: `/v1/runs/${plain.id}/compare?baseline=${production.id}`,
      headers: t.auth,
    });
    expect(res.statusCode, res.body).toBe(200);
    expectMatchesSpec('GET', '/v1/runs/{id}/compare', res);
    const cmp = res.json();
    const mine = await getResults<{ points: Array<{ accuracy: number }> }>(t, plain.id);
    const theirs = await getResults<{ points: Array<{ accuracy: number }> }>(t, production.id);
    expect(cmp.points[1].accuracy).toEqual({
      current: mine.points[1].accuracy,
      baseline: theirs.points[1].accuracy,
      delta: mine.points[1].accuracy - theirs.points[1].accuracy,
    });
    expect(cmp.nv[0].layer).toBe('logits');

    const other = await run({
      ...base(),
      modelId: plainId,
      transforms: [{ type: 'rotate', values: [0, 45] }],
    });
    const refused = await t.app.inject({
      method: 'GET',
      url: `/v1/runs/${other.id}/compare?baseline=${production.id}`,
      headers: t.auth,
    });
    expect(refused.statusCode).toBe(409);
    expect(refused.json().code).toBe('NOT_COMPARABLE');
  });

  it('filters runs by verdict', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/runs?verdict=PASS', headers: t.auth });
    expect(res.json().items.map((r: RunView) => r.id)).toEqual([production.id]);
    const none = await t.app.inject({ method: 'GET', url: '/v1/runs?verdict=NONE', headers: t.auth });
    expect(none.json().items.every((r: RunView) => r.verdict === null)).toBe(true);
  });
});
