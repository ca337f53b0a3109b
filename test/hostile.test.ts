// A corpus of hostile inputs (issue 6, point 3). Each one is refused with a 4xx problem+json and
// a stable code, and leaves the store exactly as it was: no row in any table, no queue job, no
// file under DATA_DIR/blobs or DATA_DIR/tmp. The service stays ready throughout. Then the inputs
// that look hostile but are legitimate: a model emitting NaN runs to the end and reports it, and
// names in any script are stored as given.
//
// Decision documented in openapi.yaml (POST /v1/runs): a model whose first output is not a
// float32 [N, classes] tensor is accepted at upload (a registry may hold it, e.g. to measure the
// NV of its layers), and refused at run submission with 422 UNSUPPORTED_OUTPUT, before anything
// is stored or queued.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { OnnxModelBuilder } from '../src/engine/onnxBuilder.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import {
  encodeImage,
  idxImages,
  idxLabels,
  npy,
  npz,
  pngHeaderOnly,
  tarFile,
  zipFile,
} from './helpers/datasetFiles.js';
import { type MultipartPart, multipartBody } from './helpers/multipart.js';
import { encodeModel, FLOAT, INT64, valueInfo } from './helpers/onnxModels.js';
import { FIXTURES, waitForRun } from './helpers/runs.js';

const MiB = 1024 * 1024;
const SIZE = 28;
const SAMPLES = 12;

let t: TestApp;
let modelId: string;
let datasetId: string;
let rank4OutputId: string;
let intOutputId: string;
let plainOnnx: Buffer;

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

const randomBytes = (n: number, seed: number) => {
  const rnd = prng(seed);
  return Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
};

/**
 * x [N,1,28,28] -> Flatten -> MatMul -> Add -> logits [N,10]. With `nanBelow`, Log(mean(x) - t)
 * is added to the logits: NaN for every image darker on average than t (e.g. rotated ones, whose
 * corners are black), finite for the others.
 */
function classifier(opts: { nanBelow?: number; output?: 'logits' | 'rank4' | 'int32' } = {}): Uint8Array {
  const rnd = prng(7);
  const b = new OnnxModelBuilder();
  b.input('x', 'float32', ['N', 1, SIZE, SIZE]);
  if (opts.output === 'rank4') {
    // A 1x1 convolution: [N,10,28,28], a feature map rather than one score per class.
    b.initializer(
      'W',
      Float32Array.from({ length: 10 }, () => rnd() - 0.5),
      [10, 1, 1, 1],
    );
    b.node('Conv', ['x', 'W'], ['maps']);
    b.output('maps', 'float32', ['N', 10, SIZE, SIZE]);
    return b.toBytes();
  }
  b.initializer(
    'W',
    Float32Array.from({ length: SIZE * SIZE * 10 }, () => rnd() - 0.5),
    [SIZE * SIZE, 10],
  );
  b.initializer(
    'B',
    Float32Array.from({ length: 10 }, () => rnd() - 0.5),
    [10],
  );
  b.node('Flatten', ['x'], ['flat'], { axis: 1 });
  b.node('MatMul', ['flat', 'W'], ['mm']);
  if (opts.output === 'int32') {
    b.node('Add', ['mm', 'B'], ['scores']);
    b.node('Cast', ['scores'], ['logits'], { to: 6 /* INT32 */ });
    b.output('logits', 'int32', ['N', 10]);
    return b.toBytes();
  }
  if (opts.nanBelow === undefined) {
    b.node('Add', ['mm', 'B'], ['logits']);
  } else {
    b.initializer('T', new Float32Array([opts.nanBelow]), [1]);
    b.node('Add', ['mm', 'B'], ['raw']);
    b.node('ReduceMean', ['flat'], ['mean'], { axes: [1], keepdims: 1 });
    b.node('Sub', ['mean', 'T'], ['shifted']);
    b.node('Log', ['shifted'], ['log']);
    b.node('Add', ['raw', 'log'], ['logits']);
  }
  b.output('logits', 'float32', ['N', 10]);
  return b.toBytes();
}

function uploadModel(bytes: Uint8Array, fields: MultipartPart[] = [], filename = 'model.onnx') {
  const { payload, headers } = multipartBody([
    ...fields,
    { name: 'file', filename, data: Buffer.from(bytes) },
  ]);
  return t.app.inject({ method: 'POST', url: '/v1/models', headers: { ...t.auth, ...headers }, payload });
}

function uploadDataset(parts: MultipartPart[]) {
  const { payload, headers } = multipartBody(parts);
  return t.app.inject({ method: 'POST', url: '/v1/datasets', headers: { ...t.auth, ...headers }, payload });
}

const idx = (images: Buffer, labels: Buffer, extra: MultipartPart[] = []): MultipartPart[] => [
  { name: 'images', filename: 'images-idx3-ubyte', data: images },
  { name: 'labels', filename: 'labels-idx1-ubyte', data: labels },
  ...extra,
];
const archive = (data: Buffer, filename = 'data.zip', extra: MultipartPart[] = []): MultipartPart[] => [
  { name: 'file', filename, data },
  ...extra,
];

function syntheticIdx(): { images: Buffer; labels: Buffer } {
  const rnd = prng(28);
  const pixels = Buffer.from(Array.from({ length: SAMPLES * SIZE * SIZE }, () => Math.floor(rnd() * 256)));
  return {
    images: idxImages(SAMPLES, SIZE, SIZE, pixels),
    labels: idxLabels(Array.from({ length: SAMPLES }, (_, i) => i % 10)),
  };
}

const postJson = (url: string, payload: unknown) =>
  t.app.inject({
    method: 'POST',
    url,
    headers: { ...t.auth, 'content-type': 'application/json' },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });

const run = (extra: Record<string, unknown> = {}) => ({
  modelId,
  datasetId,
  transforms: [{ type: 'rotate', values: [90] }],
  metrics: ['accuracy'],
  ...extra,
});

async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => !e.isDirectory())
      .map((e) => path.relative(t.dataDir, path.join(e.parentPath, e.name)))
      .sort();
  } catch {
    return [];
  }
}

/** Every row and every file the service could have left behind. */
async function storeState() {
  const { rows } = await t.db.pool.query(
    `SELECT (SELECT count(*)::int FROM models) AS models, (SELECT count(*)::int FROM datasets) AS datasets,
            (SELECT count(*)::int FROM runs) AS runs, (SELECT count(*)::int FROM run_shards) AS shards,
            (SELECT count(*)::int FROM api_keys) AS keys, (SELECT count(*)::int FROM webhooks) AS webhooks,
            (SELECT count(*)::int FROM pgboss.job) AS jobs`,
  );
  return {
    ...rows[0],
    blobs: await filesUnder(path.join(t.dataDir, 'blobs')),
    tmp: await filesUnder(path.join(t.dataDir, 'tmp')),
  };
}

interface HostileCase {
  name: string;
  send: () => Promise<LightMyRequestResponse>;
  status: number;
  code: string;
  /** The refusal must come this fast (ms), e.g. a sweep that must be counted, not expanded. */
  within?: number;
}

const cases: HostileCase[] = [
  // ---- models
  {
    name: 'random bytes as a model',
    send: () => uploadModel(randomBytes(64 * 1024, 1)),
    status: 422,
    code: 'INVALID_MODEL',
  },
  {
    name: 'a truncated ONNX file (the first 40% of a real model)',
    send: () => uploadModel(plainOnnx.subarray(0, Math.floor(plainOnnx.length * 0.4))),
    status: 422,
    code: 'INVALID_MODEL',
  },
  {
    name: 'a real model cut 10 bytes short',
    send: () => uploadModel(plainOnnx.subarray(0, plainOnnx.length - 10)),
    status: 422,
    code: 'INVALID_MODEL',
  },
  {
    name: 'an empty model file',
    send: () => uploadModel(new Uint8Array(0)),
    status: 422,
    code: 'INVALID_MODEL',
  },
  {
    name: 'ONNX whose weights are external data (a path to another file)',
    send: () =>
      uploadModel(
        encodeModel({
          input: [valueInfo('x', FLOAT, ['N', 1, 2, 2])],
          output: [valueInfo('y', FLOAT)],
          initializer: [
            {
              name: 'w',
              dims: [1],
              dataType: FLOAT,
              dataLocation: 1,
              externalData: [{ key: 'location', value: '../../../../etc/passwd' }],
            },
          ],
          node: [{ opType: 'Mul', input: ['x', 'w'], output: ['y'] }],
        }),
      ),
    status: 422,
    code: 'EXTERNAL_DATA_UNSUPPORTED',
  },
  {
    name: 'ONNX with two inputs',
    send: () =>
      uploadModel(
        encodeModel({
          input: [valueInfo('a', FLOAT, ['N', 1, 4, 4]), valueInfo('b', FLOAT, ['N', 1, 4, 4])],
          output: [valueInfo('y', FLOAT, ['N', 1, 4, 4])],
          node: [{ opType: 'Add', input: ['a', 'b'], output: ['y'] }],
        }),
      ),
    status: 422,
    code: 'UNSUPPORTED_MODEL',
  },
  {
    name: 'ONNX with an int64 input',
    send: () =>
      uploadModel(
        encodeModel({
          input: [valueInfo('x', INT64, ['N', 1, 4, 4])],
          output: [valueInfo('y', INT64, ['N', 1, 4, 4])],
          node: [{ opType: 'Neg', input: ['x'], output: ['y'] }],
        }),
      ),
    status: 422,
    code: 'UNSUPPORTED_MODEL',
  },
  {
    name: 'a model name over 200 characters',
    send: () => uploadModel(classifier(), [{ name: 'name', data: 'm'.repeat(201) }]),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'a model name with a NUL byte',
    send: () => uploadModel(classifier(), [{ name: 'name', data: 'evil\u0000name' }]),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'a thousand model tags',
    send: () =>
      uploadModel(classifier(), [
        { name: 'tags', data: Array.from({ length: 1000 }, (_, i) => `t${i}`).join(',') },
      ]),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  // ---- datasets
  {
    name: 'random bytes as a dataset archive',
    send: () => uploadDataset(archive(randomBytes(64 * 1024, 2))),
    status: 422,
    code: 'UNSUPPORTED_DATASET_FORMAT',
  },
  {
    name: 'zip-slip: an entry named ../../evil.png',
    send: async () => {
      const png = await encodeImage(randomBytes(16, 3), 4, 4, 1, 'png');
      return uploadDataset(
        archive(
          zipFile([
            { name: 'cls/ok.png', data: png },
            { name: '../../evil.png', data: png },
          ]),
        ),
      );
    },
    status: 422,
    code: 'ARCHIVE_PATH_UNSAFE',
  },
  {
    name: 'an absolute path in a zip',
    send: async () => {
      const png = await encodeImage(randomBytes(16, 4), 4, 4, 1, 'png');
      return uploadDataset(archive(zipFile([{ name: '/tmp/cls/evil.png', data: png }])));
    },
    status: 422,
    code: 'ARCHIVE_PATH_UNSAFE',
  },
  {
    name: 'an absolute path in a tar.gz',
    send: async () => {
      const png = await encodeImage(randomBytes(16, 5), 4, 4, 1, 'png');
      return uploadDataset(archive(await tarFile([{ name: '/tmp/cls/evil.png', data: png }], true), 'd.tgz'));
    },
    status: 422,
    code: 'ARCHIVE_PATH_UNSAFE',
  },
  {
    name: 'a zip bomb (10 MiB of zeros in 10 KiB, headers claiming 100 bytes)',
    send: () =>
      uploadDataset(
        archive(zipFile([{ name: 'cls/bomb.png', data: Buffer.alloc(10 * MiB), declaredSize: 100 }])),
      ),
    status: 422,
    code: 'UNCOMPRESSED_TOO_LARGE',
  },
  {
    name: 'a gzip bomb as IDX images (a valid header, 10 MB of pixels)',
    send: () =>
      uploadDataset(
        idx(
          gzipSync(idxImages(1000, 100, 100, Buffer.alloc(1000 * 100 * 100))),
          idxLabels(new Array(1000).fill(0)),
        ),
      ),
    status: 422,
    code: 'UNCOMPRESSED_TOO_LARGE',
  },
  {
    name: 'an image claiming 100000 x 100000 pixels',
    send: async () =>
      uploadDataset(
        archive(
          zipFile([
            { name: 'a/ok.png', data: await encodeImage(randomBytes(16, 6), 4, 4, 1, 'png') },
            { name: 'a/huge.png', data: pngHeaderOnly(100_000, 100_000) },
          ]),
        ),
      ),
    status: 422,
    code: 'IMAGE_TOO_LARGE',
  },
  {
    name: 'IDX with 3 images and 2 labels',
    send: () => uploadDataset(idx(idxImages(3, 2, 2, Buffer.alloc(12)), idxLabels([0, 1]))),
    status: 422,
    code: 'INVALID_DATASET',
  },
  {
    name: 'IDX images with the labels magic number',
    send: () => uploadDataset(idx(idxImages(3, 2, 2, Buffer.alloc(12), 0x00000801), idxLabels([0, 1, 2]))),
    status: 422,
    code: 'INVALID_DATASET',
  },
  {
    name: 'IDX labels beyond the class names given',
    send: () =>
      uploadDataset(
        idx(idxImages(3, 2, 2, Buffer.alloc(12)), idxLabels([0, 9, 1]), [
          { name: 'classNames', data: '["a","b"]' },
        ]),
      ),
    status: 422,
    code: 'INVALID_DATASET',
  },
  {
    name: 'npz labels that are negative',
    send: () =>
      uploadDataset(
        archive(
          npz({ x: npy('|u1', [2, 1, 1], Buffer.from([1, 2])), y: npy('|i1', [2], Buffer.from([0, 0xff])) }),
          'd.npz',
        ),
      ),
    status: 422,
    code: 'INVALID_DATASET',
  },
  {
    name: 'a dataset name with a NUL byte',
    send: () =>
      uploadDataset(idx(syntheticIdx().images, syntheticIdx().labels, [{ name: 'name', data: 'a\u0000b' }])),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'a dataset name over 200 characters',
    send: () =>
      uploadDataset(
        idx(syntheticIdx().images, syntheticIdx().labels, [{ name: 'name', data: 'd'.repeat(201) }]),
      ),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'class names with control characters',
    send: () =>
      uploadDataset(
        idx(syntheticIdx().images, syntheticIdx().labels, [
          { name: 'classNames', data: JSON.stringify(['a\u0000', ...'bcdefghij']) },
        ]),
      ),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: '70,000 class names',
    send: () =>
      uploadDataset(
        idx(syntheticIdx().images, syntheticIdx().labels, [
          {
            name: 'classNames',
            data: JSON.stringify(Array.from({ length: 70_000 }, (_, i) => i.toString(36))),
          },
        ]),
      ),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  // ---- runs: JSON bodies
  {
    name: 'wrong types: modelId a number, transforms an object',
    send: () => postJson('/v1/runs', { ...run(), modelId: 42, transforms: { type: 'rotate' } }),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'limit as a string',
    send: () => postJson('/v1/runs', run({ limit: '10' })),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'a negative limit',
    send: () => postJson('/v1/runs', run({ limit: -1 })),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'an unknown field',
    send: () => postJson('/v1/runs', run({ priority: 'urgent' })),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: '10^6 tags (4 MB of JSON)',
    send: () => postJson('/v1/runs', run({ tags: new Array(1_000_000).fill('a') })),
    status: 413,
    code: 'PAYLOAD_TOO_LARGE',
  },
  {
    name: '10^6 transform values',
    send: () =>
      postJson('/v1/runs', run({ transforms: [{ type: 'rotate', values: new Array(1_000_000).fill(1) }] })),
    status: 413,
    code: 'PAYLOAD_TOO_LARGE',
  },
  {
    name: '200,000 transform values (within the body limit, above MAX_RUN_POINTS)',
    send: () =>
      postJson('/v1/runs', run({ transforms: [{ type: 'rotate', values: new Array(200_000).fill(1) }] })),
    status: 422,
    code: 'SWEEP_TOO_LARGE',
  },
  {
    name: '33 tags',
    send: () => postJson('/v1/runs', run({ tags: Array.from({ length: 33 }, (_, i) => `t${i}`) })),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: '10,001 NV layers',
    send: () => postJson('/v1/runs', run({ metrics: ['nv'], nv: { layers: new Array(10_001).fill('x') } })),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'a sweep of 10^9 points (a range)',
    send: () =>
      postJson('/v1/runs', run({ transforms: [{ type: 'rotate', range: { from: 0, to: 1e9, step: 1 } }] })),
    status: 422,
    code: 'SWEEP_TOO_LARGE',
    within: 1000,
  },
  {
    name: 'a sweep of 10^9 points (a grid of three 1000-value families)',
    send: () => {
      const k = Array.from({ length: 1000 }, (_, i) => i / 1000);
      return postJson(
        '/v1/runs',
        run({
          transforms: [
            {
              type: 'grid',
              of: [
                { type: 'rotate', values: k },
                { type: 'scale', values: k.map((v) => v + 0.5) },
                { type: 'brightness', values: k },
              ],
            },
          ],
        }),
      );
    },
    status: 422,
    code: 'SWEEP_TOO_LARGE',
    within: 1000,
  },
  {
    name: 'a sweep of 10^9 random samples',
    send: () =>
      postJson(
        '/v1/runs',
        run({ transforms: [{ type: 'gaussian_noise', uniform: { min: 0, max: 1 }, samples: 1e9, seed: 1 }] }),
      ),
    status: 422,
    code: 'SWEEP_TOO_LARGE',
    within: 1000,
  },
  {
    name: 'an infinite transform value (1e999)',
    send: () =>
      postJson(
        '/v1/runs',
        `{"modelId":"${modelId}","datasetId":"${datasetId}","transforms":[{"type":"rotate","values":[1e999]}]}`,
      ),
    status: 422,
    code: 'INVALID_SWEEP',
  },
  {
    name: 'transform values nested 100,000 arrays deep',
    send: () =>
      postJson(
        '/v1/runs',
        `{"modelId":"${modelId}","datasetId":"${datasetId}","transforms":[{"type":"rotate","values":${'['.repeat(100_000)}${']'.repeat(100_000)}}]}`,
      ),
    status: 422,
    code: 'INVALID_SWEEP',
  },
  {
    name: 'a __proto__ key (prototype pollution)',
    send: () => postJson('/v1/runs', `{"__proto__":{"isAdmin":true},"modelId":"${modelId}"}`),
    status: 400,
    code: 'INVALID_JSON',
  },
  {
    name: 'a run name over 200 characters',
    send: () => postJson('/v1/runs', run({ name: 'n'.repeat(201) })),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'a run name with a NUL byte',
    send: () => postJson('/v1/runs', run({ name: 'a\u0000b' })),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'a run on a model whose output is a feature map [N,10,28,28]',
    send: () => postJson('/v1/runs', run({ modelId: rank4OutputId })),
    status: 422,
    code: 'UNSUPPORTED_OUTPUT',
  },
  {
    name: 'a run on a model whose output is int32',
    send: () => postJson('/v1/runs', run({ modelId: intOutputId })),
    status: 422,
    code: 'UNSUPPORTED_OUTPUT',
  },
  // ---- queries and other bodies
  {
    name: 'a negative page limit',
    send: () => t.app.inject({ method: 'GET', url: '/v1/runs?limit=-5', headers: t.auth }),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'a NUL byte in a tag filter',
    send: () => t.app.inject({ method: 'GET', url: '/v1/runs?tag=a%00b', headers: t.auth }),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'an API key name with a NUL byte',
    send: () => postJson('/v1/api-keys', { name: 'ci\u0000', scopes: ['read'] }),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'a webhook to a file: URL',
    send: () =>
      postJson('/v1/webhooks', {
        url: 'file:///etc/passwd',
        secret: 'a-long-secret',
        events: ['run.failed'],
      }),
    status: 422,
    code: 'INVALID_WEBHOOK_URL',
  },
];

beforeAll(async () => {
  const defaults = loadConfig({});
  t = await createTestApp(
    {
      limits: {
        ...defaults.limits,
        maxDatasetBytes: 16 * MiB,
        maxDatasetImages: 1500,
        maxUncompressedBytes: 4 * MiB,
        maxArchiveEntries: 50,
      },
    },
    { workers: true },
  );
  plainOnnx = await readFile(path.join(FIXTURES, 'fmnist-cnn-plain.onnx'));
  const upload = async (bytes: Uint8Array, name: string) => {
    const res = await uploadModel(bytes, [{ name: 'name', data: name }]);
    expect(res.statusCode, res.body).toBe(201);
    return (res.json() as { id: string }).id;
  };
  modelId = await upload(classifier(), 'linear');
  rank4OutputId = await upload(classifier({ output: 'rank4' }), 'feature-map');
  intOutputId = await upload(classifier({ output: 'int32' }), 'int-scores');
  const { images, labels } = syntheticIdx();
  const ds = await uploadDataset(idx(images, labels, [{ name: 'name', data: 'synthetic' }]));
  expect(ds.statusCode, ds.body).toBe(201);
  datasetId = (ds.json() as { id: string }).id;
}, 120_000);
afterAll(async () => t?.close());

describe('hostile inputs: 4xx problem+json with a code, nothing left behind', () => {
  it('has a corpus of at least 25 inputs', () => {
    expect(cases.length).toBeGreaterThanOrEqual(25);
  });

  it.each(cases)('$name -> $status $code', async (c) => {
    const before = await storeState();
    expect(before.tmp).toEqual([]);
    const started = performance.now();
    const res = await c.send();
    const took = performance.now() - started;
    expect(res.statusCode, res.body).toBe(c.status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = res.json() as { status: number; code: string; detail: string };
    expect(body).toMatchObject({ status: c.status, code: c.code });
    expect(body.detail).toEqual(expect.any(String));
    if (c.within !== undefined) expect(took).toBeLessThan(c.within);
    expect(await storeState()).toEqual(before);
  });

  it('the service is still ready', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    expect((await storeState()).tmp).toEqual([]);
  });
});

describe('hostile-looking but legitimate inputs', () => {
  it('a model that emits NaN for some images: the run succeeds, reports the NaN as null and counts it', async () => {
    const up = await uploadModel(classifier({ nanBelow: 0.45 }), [{ name: 'name', data: 'nan-model' }]);
    expect(up.statusCode, up.body).toBe(201);
    const nanModel = (up.json() as { id: string }).id;
    const res = await postJson('/v1/runs', {
      modelId: nanModel,
      datasetId,
      // Random pixels average about 0.5 (finite); rotated by 45 degrees, the black corners pull the
      // mean under 0.45 (NaN).
      transforms: [{ type: 'rotate', values: [0, 45] }],
      metrics: ['accuracy', 'ekld', 'nv'],
      nv: { layers: ['logits', 'mm'] },
    });
    expect(res.statusCode, res.body).toBe(202);
    const done = await waitForRun(t, (res.json() as { id: string }).id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const results = await t.app.inject({
      method: 'GET',
      url: `/v1/runs/${done.id}/results`,
      headers: t.auth,
    });
    expect(results.statusCode).toBe(200);
    const r = results.json() as {
      samples: number;
      nonFiniteSamples: number;
      points: Array<{ params: Record<string, number>; accuracy: number | null; ekld: number | null }>;
      ekld: { overall: number | null };
      nv: Array<{ layer: string; nv: number | null; finite: number; total: number }>;
    };
    expect(r.samples).toBe(SAMPLES);
    expect(r.nonFiniteSamples).toBe(SAMPLES);
    const [clean, rotated] = r.points;
    expect(clean.ekld).toEqual(expect.any(Number));
    expect(rotated.ekld).toBeNull();
    expect(rotated.accuracy).toBe(0);
    expect(r.ekld.overall).toBeNull();
    const logits = r.nv.find((l) => l.layer === 'logits');
    const mm = r.nv.find((l) => l.layer === 'mm');
    // NaN activations are neither finite nor infinite: the layer has no NV.
    expect(logits?.finite).toBe(0);
    expect(logits?.nv).toBeNull();
    // The layer before the NaN is untouched.
    expect(mm?.nv).toEqual(expect.any(Number));
    // The engine is healthy: a normal run on the same pool succeeds.
    const next = await postJson('/v1/runs', run());
    expect(next.statusCode, next.body).toBe(202);
    expect((await waitForRun(t, (next.json() as { id: string }).id)).status).toBe('succeeded');
  });

  it('names in any script (emoji, RTL, combining marks) are stored and returned as given', async () => {
    const names = ['模型 🚀 v2', 'مرحبا بالعالم', 'e\u0301te\u0301 — Ω≈ç√', '👩‍👩‍👧‍👦'.repeat(10)];
    for (const [i, name] of names.entries()) {
      const res = await postJson('/v1/runs', run({ name, tags: i === 0 ? [name] : [] }));
      expect(res.statusCode, res.body).toBe(202);
      const id = (res.json() as { id: string }).id;
      const got = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}`, headers: t.auth });
      expect(got.json()).toMatchObject({ name });
      await t.app.inject({ method: 'POST', url: `/v1/runs/${id}/cancel`, headers: t.auth });
    }
    const model = await uploadModel(classifier({ nanBelow: -1 }), [{ name: 'name', data: names[0] }]);
    expect(model.statusCode, model.body).toBe(201);
    expect(model.json()).toMatchObject({ name: names[0] });
    const ds = await uploadDataset(
      idx(idxImages(2, 2, 2, Buffer.alloc(8, 1)), idxLabels([0, 1]), [
        { name: 'name', data: names[1] },
        { name: 'classNames', data: JSON.stringify([names[2], names[3]]) },
      ]),
    );
    expect(ds.statusCode, ds.body).toBe(201);
    expect(ds.json()).toMatchObject({ name: names[1], classes: [{ name: names[2] }, { name: names[3] }] });
    const tag = encodeURIComponent(names[0]);
    const listed = await t.app.inject({ method: 'GET', url: `/v1/runs?tag=${tag}`, headers: t.auth });
    expect(listed.statusCode).toBe(200);
    expect((listed.json() as { items: unknown[] }).items).toHaveLength(1);
  });

  it('control characters in an uploaded file name are dropped from the default name', async () => {
    const ds = await uploadDataset([
      { name: 'images', filename: 'evil\u0000na\u0007me.gz', data: idxImages(1, 2, 2, Buffer.alloc(4, 9)) },
      { name: 'labels', filename: 'labels', data: idxLabels([0]) },
    ]);
    expect(ds.statusCode, ds.body).toBe(201);
    expect(ds.json()).toMatchObject({ name: 'evilname' });
    const model = await uploadModel(classifier({ nanBelow: -2 }), [], 'bad\u0000name.onnx');
    expect(model.statusCode, model.body).toBe(201);
    expect(model.json()).toMatchObject({ name: 'badname' });
  });

  it('the service is still ready and left no temp file', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    expect((await storeState()).tmp).toEqual([]);
  });
});
