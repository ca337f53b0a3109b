// Classifiers exported in other shapes than a plain [N, classes] float32 output, through the real
// API: each variant below computes the same logits as a reference linear model, so its run must
// give the reference's numbers (bit for bit where only the shape differs; to float32 rounding for
// a Softmax output, which the service must detect as probabilities). Models it cannot evaluate are
// refused at submission with a code. Also: transform parameters at the edge of what a graph can
// run give the answers their definition implies (a far translation = an image of fill values; a
// rotation by a huge angle = the rotation by its remainder).
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifierOutput } from '../src/domain/runSpec.js';
import { type OnnxDType, OnnxModelBuilder } from '../src/engine/onnxBuilder.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { submitRun, uploadIdxDataset, uploadModel, waitForRun } from './helpers/runs.js';

const S = 8;
const N = 12;
const K = 3;

interface Results {
  clean: { accuracy: number };
  points: Array<{ params: Record<string, unknown>; accuracy: number; consistency: number; ekld: number }>;
  ekld: { overall: number };
  nv: Array<{ layer: string; aggregation: string; nv: number | null; tv: number | null; sv: number | null }>;
}

type Variant =
  | 'plain'
  | 'n1k'
  | 'nk11'
  | 'label-first'
  | 'softmax'
  | 'fixed-batch'
  | 'float16-input'
  | 'feature-map';

/**
 * image [N,1,S,S] -> Flatten -> MatMul W -> "logits" [N,K], then the variant's ending. Layer names
 * are the same in every variant, so NV of "logits" can be compared across them.
 */
function model(variant: Variant): Uint8Array {
  const b = new OnnxModelBuilder({ opset: 17 });
  const inType: OnnxDType = variant === 'float16-input' ? 'float16' : 'float32';
  b.input('image', inType, ['N', 1, S, S]);
  let x = 'image';
  if (inType !== 'float32') {
    b.node('Cast', ['image'], ['image_f32'], { to: 1 });
    x = 'image_f32';
  }
  if (variant === 'fixed-batch') b.node('Reshape', [x, b.int64([1, -1])], ['flat']);
  else b.node('Flatten', [x], ['flat'], { axis: 1 });
  const W = new Float32Array(S * S * K);
  for (let p = 0; p < S * S; p++) for (let k = 0; k < K; k++) W[p * K + k] = Math.sin(p * 7 + k * 3) / 8;
  b.initializer('W', W, [S * S, K]);
  b.node('MatMul', ['flat', 'W'], ['logits']);
  switch (variant) {
    case 'n1k':
      b.node('Unsqueeze', ['logits', b.int64([1])], ['scores']);
      b.output('scores', 'float32', ['N', 1, K]);
      break;
    case 'nk11':
      b.node('Reshape', ['logits', b.int64([0, K, 1, 1])], ['scores']);
      b.output('scores', 'float32', ['N', K, 1, 1]);
      break;
    case 'label-first':
      // As scikit-learn converters emit: the predicted label first, the scores second.
      b.node('ArgMax', ['logits'], ['label'], { axis: 1, keepdims: 0 });
      b.output('label', 'int64', ['N']);
      b.output('logits', 'float32', ['N', K]);
      break;
    case 'softmax':
      b.node('Softmax', ['logits'], ['probs'], { axis: 1 });
      b.node('Identity', ['probs'], ['probabilities']);
      b.output('probabilities', 'float32', ['N', K]);
      break;
    case 'feature-map':
      b.node('Reshape', ['logits', b.int64([0, K, 1])], ['k1']);
      b.node('Concat', ['k1', 'k1'], ['scores'], { axis: 2 });
      b.output('scores', 'float32', ['N', K, 2]);
      break;
    default:
      b.output('logits', 'float32', variant === 'fixed-batch' ? [1, K] : ['N', K]);
  }
  return b.toBytes();
}

let t: TestApp;
let datasetId: string;

interface UploadedModel {
  id: string;
  outputs: Array<{ name: string }>;
  preprocessing: { outputIsProbability: boolean };
}

async function upload(variant: Variant) {
  const file = path.join(t.dataDir, `${variant}.onnx`);
  await writeFile(file, model(variant));
  return (await uploadModel(t, file, { name: variant })) as unknown as UploadedModel;
}

const SWEEP = [
  { type: 'rotate', values: [90, 180] },
  { type: 'brightness', values: [0.1] },
];

async function run(modelId: string, extra: Record<string, unknown> = {}): Promise<Results> {
  const { id } = await submitRun(t, {
    modelId,
    datasetId,
    transforms: SWEEP,
    nv: { layers: ['logits'], aggregation: ['none'] },
    ...extra,
  });
  const done = await waitForRun(t, id, 60_000);
  expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
  const res = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}/results`, headers: t.auth });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as Results;
}

beforeAll(async () => {
  t = await createTestApp({}, { workers: true });
  let seed = 11;
  const pixels = Buffer.alloc(N * S * S);
  for (let i = 0; i < pixels.length; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    pixels[i] = seed % 256;
  }
  datasetId = await uploadIdxDataset(t, {
    pixels,
    labels: Array.from({ length: N }, (_, i) => i % K),
    size: S,
  });
}, 60_000);
afterAll(async () => t?.close());

describe('classifierOutput (which output holds the scores)', () => {
  const out = (name: string, type: string, shape: Array<number | string | null> | null) => ({
    name,
    type,
    shape,
  });
  it('takes [N,K] and [N,K] with extra dims of size 1; K null when not known', () => {
    expect(classifierOutput([out('y', 'float32', ['N', 10])])).toEqual({
      output: out('y', 'float32', ['N', 10]),
      classes: 10,
    });
    expect(classifierOutput([out('y', 'float32', ['N', 1, 10])])?.classes).toBe(10);
    expect(classifierOutput([out('y', 'float32', ['N', 10, 1, 1])])?.classes).toBe(10);
    expect(classifierOutput([out('y', 'float32', ['N', 'classes'])])?.classes).toBeNull();
    expect(classifierOutput([out('y', 'unknown', null)])?.classes).toBeNull();
    expect(classifierOutput([out('y', 'float32', ['N', 1])])?.classes).toBe(1);
  });
  it('skips outputs that are no score vector for a later one that is; null when none is', () => {
    const scores = out('probs', 'float32', ['N', 4]);
    expect(classifierOutput([out('label', 'int64', ['N']), scores])?.output).toEqual(scores);
    expect(classifierOutput([out('map', 'float32', ['N', 4, 2]), scores])?.output).toEqual(scores);
    expect(classifierOutput([out('map', 'float32', ['N', 4, 2])])).toBeNull();
    expect(classifierOutput([out('v', 'float32', ['N'])])).toBeNull();
    expect(classifierOutput([])).toBeNull();
  });
});

describe('score outputs of other shapes give the numbers of the plain model', () => {
  let reference: Results;
  beforeAll(async () => {
    reference = await run((await upload('plain')).id);
    // Guard against a vacuous comparison: the sweep changes predictions and scores.
    expect(reference.ekld.overall).toBeGreaterThan(0);
    expect(reference.nv[0].nv).toBeGreaterThan(0);
  }, 60_000);

  for (const variant of ['n1k', 'nk11', 'label-first', 'fixed-batch'] as const) {
    it(`${variant}: the same results, bit for bit`, async () => {
      const m = await upload(variant);
      expect(m.preprocessing.outputIsProbability).toBe(false);
      expect(await run(m.id)).toEqual(reference);
    });
  }

  it('a Softmax output is detected as probabilities at upload, and the eKLD matches the logits', async () => {
    const m = await upload('softmax');
    expect(m.preprocessing.outputIsProbability).toBe(true);
    const r = await run(m.id, { nv: undefined, metrics: ['accuracy', 'ekld'] });
    expect(r.points.map((p) => [p.accuracy, p.consistency])).toEqual(
      reference.points.map((p) => [p.accuracy, p.consistency]),
    );
    expect(r.ekld.overall).toBeCloseTo(reference.ekld.overall, 5);
    for (const [j, p] of r.points.entries()) expect(p.ekld).toBeCloseTo(reference.points[j].ekld, 5);
  });

  it('outputIsProbability given at upload wins over the detection', async () => {
    const file = path.join(t.dataDir, 'softmax-told.onnx');
    // Other bytes than the detected upload (a new producer name), so it is a model of its own.
    const b = model('softmax');
    const bytes = Buffer.concat([Buffer.from(b), Buffer.from([0x1a, 0x01, 0x78])]);
    await writeFile(file, bytes);
    const m = (await uploadModel(t, file, {
      preprocessing: JSON.stringify({ outputIsProbability: false }),
    })) as unknown as UploadedModel;
    expect(m.preprocessing.outputIsProbability).toBe(false);
  });
});

describe('models that cannot be evaluated are refused at submission, with nothing stored', () => {
  async function refusal(variant: Variant) {
    const m = await upload(variant);
    const before = await t.db.pool.query('SELECT count(*)::int AS n FROM runs');
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: t.auth,
      payload: { modelId: m.id, datasetId, transforms: SWEEP },
    });
    const after = await t.db.pool.query('SELECT count(*)::int AS n FROM runs');
    expect(after.rows[0].n).toBe(before.rows[0].n);
    return { status: res.statusCode, body: res.json() as { code: string; detail: string } };
  }

  it('a float16 input: 422 UNSUPPORTED_MODEL naming the input type', async () => {
    const r = await refusal('float16-input');
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('UNSUPPORTED_MODEL');
    expect(r.body.detail).toMatch(/image is float16/);
  });

  it('no output is a score vector ([N,K,2]): 422 UNSUPPORTED_OUTPUT with the shape', async () => {
    const r = await refusal('feature-map');
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('UNSUPPORTED_OUTPUT');
    expect(r.body.detail).toMatch(/\[N,3,2\]/);
  });
});

describe('transform parameters at the edge of what a graph can run', () => {
  it('translations far outside the image all give the image of fill values; huge angles their remainder', async () => {
    const m = await upload('plain');
    const { id } = await submitRun(t, {
      modelId: m.id,
      datasetId,
      metrics: ['accuracy', 'ekld'],
      transforms: [
        {
          type: 'translate',
          values: [
            [100, 0],
            [1e6, 0],
            [1e300, -1e300],
          ],
        },
        { type: 'rotate', values: [90, 450, -270, 1e300, 1e300 % 360] },
      ],
    });
    const done = await waitForRun(t, id, 60_000);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const r = (
      await t.app.inject({ method: 'GET', url: `/v1/runs/${id}/results`, headers: t.auth })
    ).json() as Results;
    const stats = r.points.map((p) => [p.accuracy, p.consistency, p.ekld]);
    // The three translations: every pixel reads the fill value 0.
    expect(stats[1]).toEqual(stats[0]);
    expect(stats[2]).toEqual(stats[0]);
    expect(r.points[0].ekld).toBeGreaterThan(0);
    // 90 = 450 = -270 exactly (a permutation); 1e300 degrees = its remainder modulo 360.
    expect(stats[4]).toEqual(stats[3]);
    expect(stats[5]).toEqual(stats[3]);
    expect(stats[6]).toEqual(stats[7]);
    expect(Number.isFinite(r.points[6].ekld)).toBe(true);
  });
});
