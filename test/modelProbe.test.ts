// What upload learns by running a model on zeros decides what a run may ask for, so that a run
// never fails for a reason that was knowable at submission: layers NV cannot be measured on
// (float16, not batch first) are left out of "all" and refused by name; a symbolic class dim is
// resolved; inputs too large, with a symbolic channel dim, or models that cannot run are refused.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './helpers/app.js';
import { multipartBody } from './helpers/multipart.js';
import {
  encodeModel,
  FLOAT,
  failingReshapeModel,
  floatTensor,
  int64Tensor,
  mixedLayersModel,
  reluModel,
  symbolicClassesModel,
  valueInfo,
} from './helpers/onnxModels.js';
import { getResults, submitRun, uploadIdxDataset, uploadModel, waitForRun } from './helpers/runs.js';

const S = 4;
const N = 24;

let t: TestApp;
let datasetId: string;
let twelveClasses: string;

async function upload(name: string, bytes: Uint8Array) {
  const file = path.join(t.dataDir, `${name}.onnx`);
  await writeFile(file, bytes);
  return uploadModel(t, file, { name });
}

/** POST /v1/models without expecting success. */
function uploadRaw(bytes: Uint8Array) {
  const { payload, headers } = multipartBody([
    { name: 'file', filename: 'raw.onnx', data: Buffer.from(bytes) },
  ]);
  return t.app.inject({ method: 'POST', url: '/v1/models', headers: { ...t.auth, ...headers }, payload });
}

function submit(body: Record<string, unknown>) {
  return t.app.inject({ method: 'POST', url: '/v1/runs', headers: t.auth, payload: body });
}

beforeAll(async () => {
  t = await createTestApp({}, { workers: true });
  const pixels = new Uint8Array(N * S * S).map((_, i) => (i * 37) % 256);
  datasetId = await uploadIdxDataset(t, {
    pixels,
    labels: Array.from({ length: N }, (_, i) => i % 4),
    size: S,
  });
  twelveClasses = await uploadIdxDataset(t, {
    pixels: pixels.map((p) => 255 - p),
    labels: Array.from({ length: N }, (_, i) => i % 12),
    size: S,
  });
});
afterAll(async () => t?.close());

describe('layers normalized variance cannot be measured on', () => {
  let modelId: string;
  beforeAll(async () => {
    modelId = (await upload('mixed', mixedLayersModel())).id;
  });

  it('are listed with measurable false and a reason', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/v1/models/${modelId}`, headers: t.auth });
    const layers = res.json().layers as Array<{ name: string; measurable: boolean; reason?: string }>;
    expect(layers.filter((l) => l.measurable).map((l) => l.name)).toEqual(['r', 'h32', 'y']);
    expect(layers.filter((l) => !l.measurable).map((l) => l.name)).toEqual(['h', 't', 'f', 'm']);
    const reason = (name: string) => layers.find((l) => l.name === name)?.reason;
    expect(reason('h')).toMatch(/float16 tensor/);
    for (const name of ['t', 'f', 'm']) expect(reason(name)).toMatch(/first dimension is not the batch/);
  });

  it('"all" (the default) measures the others, and the run succeeds', async () => {
    const { id } = await submitRun(t, {
      modelId,
      datasetId,
      transforms: [{ type: 'rotate', values: [90, 180] }],
    });
    const done = await waitForRun(t, id, 60_000);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const results = await getResults<{ nv: Array<{ layer: string; nv: number | null }> }>(t, id);
    expect([...new Set(results.nv.map((l) => l.layer))]).toEqual(['r', 'h32', 'y']);
    // h32 is r through float16: the same statistics to float16 precision.
    const nvOf = (layer: string) => results.nv.find((l) => l.layer === layer)?.nv as number;
    expect(nvOf('h32')).toBeCloseTo(nvOf('r'), 2);
  });

  it('named explicitly: 422 LAYER_NOT_MEASURABLE, nothing queued', async () => {
    for (const layer of ['h', 't', 'f', 'm']) {
      const res = await submit({
        modelId,
        datasetId,
        transforms: [{ type: 'rotate', values: [90, 180] }],
        nv: { layers: ['r', layer] },
      });
      expect(res.statusCode, res.body).toBe(422);
      expect(res.json().code).toBe('LAYER_NOT_MEASURABLE');
      expect(res.json().detail).toContain(JSON.stringify(layer));
    }
  });
});

describe('a symbolic batch that only runs with batch 1', () => {
  it('is recorded as batch 1 and its runs succeed one image at a time', async () => {
    const model = await upload(
      'batch-of-one',
      encodeModel({
        input: [valueInfo('x', FLOAT, ['N', 1, S, S])],
        output: [valueInfo('y', FLOAT, ['N', 4])],
        initializer: [
          floatTensor(
            'w',
            [16, 4],
            Array.from({ length: 64 }, (_, i) => ((i * 7) % 5) - 2),
          ),
          int64Tensor('one', [2], [1, 4]),
        ],
        node: [
          { opType: 'Flatten', input: ['x'], output: ['v'] },
          { opType: 'MatMul', input: ['v', 'w'], output: ['l'] },
          { opType: 'Reshape', input: ['l', 'one'], output: ['y'] },
        ],
      }),
    );
    const res = await t.app.inject({ method: 'GET', url: `/v1/models/${model.id}`, headers: t.auth });
    expect(res.json().inputs[0].shape).toEqual([1, 1, S, S]);
    const { id } = await submitRun(t, {
      modelId: model.id,
      datasetId,
      transforms: [{ type: 'rotate', values: [90, 180] }],
      metrics: ['accuracy', 'ekld'],
    });
    const done = await waitForRun(t, id, 60_000);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect((await getResults<{ samples: number }>(t, id)).samples).toBe(N);
  });
});

describe('refused at submission or upload, never after 202', () => {
  it('a symbolic class dim is resolved at upload: fewer classes than the dataset is 422', async () => {
    const model = await upload('symbolic-k', symbolicClassesModel(0.01));
    const res = await submit({
      modelId: model.id,
      datasetId: twelveClasses,
      transforms: [{ type: 'rotate', values: [90] }],
      metrics: ['accuracy'],
    });
    expect(res.statusCode, res.body).toBe(422);
    expect(res.json().code).toBe('OUTPUT_CLASSES_MISMATCH');
  });

  it('a model input above MAX_IMAGE_PIXELS is 422 INPUT_TOO_LARGE even with resize', async () => {
    const model = await upload(
      'huge-input',
      encodeModel({
        input: [valueInfo('x', FLOAT, ['N', 1, 5000, 5000])],
        output: [valueInfo('y', FLOAT, ['N', 4])],
        node: [
          { opType: 'GlobalAveragePool', input: ['x'], output: ['p'] },
          { opType: 'Flatten', input: ['p'], output: ['q'] },
          {
            opType: 'Concat',
            input: ['q', 'q', 'q', 'q'],
            output: ['y'],
            attribute: [{ name: 'axis', type: 2, i: 1 }],
          },
        ],
      }),
    );
    const res = await submit({
      modelId: model.id,
      datasetId,
      resize: true,
      transforms: [{ type: 'rotate', values: [90] }],
      metrics: ['accuracy'],
    });
    expect(res.statusCode, res.body).toBe(422);
    expect(res.json().code).toBe('INPUT_TOO_LARGE');
  });

  it('upload refuses a symbolic channel dim, a 0-sized dim, and a model that cannot run', async () => {
    const cases: Array<[Uint8Array, string, RegExp]> = [
      [reluModel(['N', 'C', 28, 28]), 'UNSUPPORTED_MODEL', /channel dimension/],
      [reluModel(['N', 28, 28, 'C']), 'UNSUPPORTED_MODEL', /channel dimension/],
      [reluModel(['N', 1, 0, 0]), 'UNSUPPORTED_MODEL', /size 0/],
      [failingReshapeModel(), 'INVALID_MODEL', /cannot run the model/],
    ];
    for (const [bytes, code, detail] of cases) {
      const res = await uploadRaw(bytes);
      expect(res.statusCode, res.body).toBe(422);
      expect(res.json().code).toBe(code);
      expect(res.json().detail).toMatch(detail);
    }
  });
});
