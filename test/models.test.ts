import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import { apiKeyRepository } from '../src/store/apiKeys.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';
import { type MultipartPart, multipartBody } from './helpers/multipart.js';
import { encodeModel, FLOAT, tinyClassifier, valueInfo } from './helpers/onnxModels.js';

const FIXTURES = path.resolve(import.meta.dirname, 'fixtures');

let t: TestApp;
let plain: Buffer;
let rotaug: Buffer;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  t = await createTestApp();
  plain = await readFile(path.join(FIXTURES, 'fmnist-cnn-plain.onnx'));
  rotaug = await readFile(path.join(FIXTURES, 'fmnist-cnn-rotaug.onnx'));
});
afterAll(async () => t?.close());

function upload(parts: MultipartPart[], app: TestApp = t, headers: Record<string, string> = app.auth) {
  const { payload, headers: h } = multipartBody(parts);
  return app.app.inject({ method: 'POST', url: '/v1/models', payload, headers: { ...headers, ...h } });
}

const filePart = (data: Buffer, filename = 'model.onnx'): MultipartPart => ({ name: 'file', filename, data });

async function filesUnder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

const blobPath = (app: TestApp, sha: string) =>
  path.join(app.dataDir, 'blobs', 'sha256', sha.slice(0, 2), sha);

describe('POST /v1/models', () => {
  let created: Record<string, unknown>;

  it('stores the fixture (fields after the file) and reports its layers: 201', async () => {
    const res = await upload([
      filePart(plain, 'fmnist-cnn-plain.onnx'),
      { name: 'name', data: 'fmnist plain' },
      { name: 'version', data: '1.2.0' },
      { name: 'tags', data: 'fmnist, cnn,,baseline ' },
      {
        name: 'preprocessing',
        data: JSON.stringify({ mean: [0.286], std: [0.353], layout: 'NCHW', outputIsProbability: false }),
      },
    ]);
    expect(res.statusCode, res.body).toBe(201);
    expectMatchesSpec('POST', '/v1/models', res);
    created = res.json();
    expect(created).toMatchObject({
      sha256: sha256(plain),
      name: 'fmnist plain',
      version: '1.2.0',
      tags: ['fmnist', 'cnn', 'baseline'],
      sizeBytes: plain.length,
      opset: 13,
      inputs: [{ name: 'input', type: 'float32', shape: ['batch', 1, 28, 28] }],
      outputs: [{ name: 'logits', type: 'float32', shape: ['batch', 10] }],
      preprocessing: { mean: [0.286], std: [0.353], layout: 'NCHW', outputIsProbability: false },
    });
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(created.createdAt as string)).not.toBeNaN();
    const layers = created.layers as Array<{ name: string; opType: string; shape: unknown[] }>;
    expect(layers.map((l) => l.name)).toEqual([
      '/conv1/Conv_output_0',
      '/Relu_output_0',
      '/MaxPool_output_0',
      '/conv2/Conv_output_0',
      '/Relu_1_output_0',
      '/MaxPool_1_output_0',
      '/Flatten_output_0',
      '/fc1/Gemm_output_0',
      '/Relu_2_output_0',
      'logits',
    ]);
    expect(layers.find((l) => l.name === '/Relu_output_0')).toEqual({
      name: '/Relu_output_0',
      opType: 'Relu',
      shape: ['batch', 16, 28, 28],
      type: 'float32',
      measurable: true,
    });
    expect(layers.find((l) => l.name === '/Relu_1_output_0')?.shape).toEqual(['batch', 32, 14, 14]);
    expect(layers.find((l) => l.name === '/Relu_2_output_0')?.shape).toEqual(['batch', 128]);

    // The blob is in place, byte for byte, and nothing is left in tmp.
    const stored = await readFile(blobPath(t, sha256(plain)));
    expect(stored.equals(plain)).toBe(true);
    expect(await filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);
  });

  it('returns the existing model for the same bytes: 200, nothing new stored', async () => {
    const res = await upload([{ name: 'name', data: 'another name' }, filePart(plain, 'copy.onnx')]);
    expect(res.statusCode, res.body).toBe(200);
    expectMatchesSpec('POST', '/v1/models', res);
    expect(res.json()).toEqual(created);
    expect(await t.db.prisma.model.count({ where: { sha256: sha256(plain) } })).toBe(1);
    expect(await filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);
  });

  it('accepts fields before the file and fills preprocessing defaults from the input shape', async () => {
    const res = await upload([
      { name: 'tags', data: 'fmnist,rotaug' },
      { name: 'name', data: 'fmnist rotaug' },
      filePart(rotaug, 'fmnist-cnn-rotaug.onnx'),
    ]);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({
      sha256: sha256(rotaug),
      name: 'fmnist rotaug',
      version: null,
      tags: ['fmnist', 'rotaug'],
      preprocessing: { mean: [0], std: [1], layout: 'NCHW', outputIsProbability: false },
    });
  });

  it('names a model after its file; infers NHWC and 3 channels; takes preprocessing sent as application/json', async () => {
    const nhwc = encodeModel({
      input: [valueInfo('img', FLOAT, ['N', 8, 8, 3])],
      output: [valueInfo('y', FLOAT, ['N', 8, 8, 3])],
      node: [{ opType: 'Sigmoid', input: ['img'], output: ['y'] }],
    });
    const res = await upload([
      filePart(nhwc, 'dir/tiny-nhwc.ONNX'),
      { name: 'preprocessing', contentType: 'application/json', data: '{"outputIsProbability": true}' },
    ]);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({
      name: 'tiny-nhwc',
      tags: [],
      preprocessing: { mean: [0, 0, 0], std: [1, 1, 1], layout: 'NHWC', outputIsProbability: true },
      layers: [{ name: 'y', opType: 'Sigmoid', shape: ['N', 8, 8, 3], type: 'float32', measurable: true }],
    });
  });

  it('refuses an invalid model with 422 and leaves no row and no file', async () => {
    const before = await t.db.prisma.model.count();
    const blobsBefore = await filesUnder(path.join(t.dataDir, 'blobs'));
    const garbage = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919 + 13) % 256));
    for (const [bytes, code] of [
      [garbage, 'INVALID_MODEL'],
      [plain.subarray(0, 1000), 'INVALID_MODEL'],
      [Buffer.alloc(0), 'INVALID_MODEL'],
      [
        encodeModel({
          input: [valueInfo('x', FLOAT, ['N', 1, 2, 2])],
          output: [valueInfo('y', FLOAT)],
          initializer: [
            { name: 'w', dims: [1], dataType: FLOAT, externalData: [{ key: 'location', value: 'w.bin' }] },
          ],
          node: [{ opType: 'Mul', input: ['x', 'w'], output: ['y'] }],
        }),
        'EXTERNAL_DATA_UNSUPPORTED',
      ],
      [
        encodeModel({
          input: [valueInfo('x', FLOAT, ['N', 784])],
          output: [valueInfo('y', FLOAT)],
          node: [{ opType: 'Relu', input: ['x'], output: ['y'] }],
        }),
        'UNSUPPORTED_MODEL',
      ],
    ] as Array<[Buffer, string]>) {
      const res = await upload([filePart(bytes)]);
      expect(res.statusCode, res.body).toBe(422);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json()).toMatchObject({ status: 422, code });
      expectMatchesSpec('POST', '/v1/models', res);
    }
    expect(await t.db.prisma.model.count()).toBe(before);
    expect(await filesUnder(path.join(t.dataDir, 'blobs'))).toEqual(blobsBefore);
    expect(await filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);
  });

  it('validates fields: 400 for bad syntax, 422 when preprocessing does not fit the model', async () => {
    const tiny = tinyClassifier({ channels: 1, size: 4 });
    const cases: Array<[MultipartPart[], number, string, RegExp]> = [
      [[{ name: 'name', data: 'x' }], 400, 'VALIDATION_FAILED', /no "file" part/],
      [
        [filePart(tiny), { name: 'preprocessing', data: '{mean:' }],
        400,
        'VALIDATION_FAILED',
        /not valid JSON/,
      ],
      [
        [filePart(tiny), { name: 'preprocessing', data: '{"std":[0]}' }],
        400,
        'VALIDATION_FAILED',
        /std values must be > 0/,
      ],
      [
        [filePart(tiny), { name: 'preprocessing', data: '{"mean":[1e999]}' }],
        400,
        'VALIDATION_FAILED',
        /finite/,
      ],
      [
        [filePart(tiny), { name: 'preprocessing', data: '{"layout":"CHW"}' }],
        400,
        'VALIDATION_FAILED',
        /layout/,
      ],
      [
        [filePart(tiny), { name: 'preprocessing', data: '{"scale":2}' }],
        400,
        'VALIDATION_FAILED',
        /unknown property "scale"/,
      ],
      [
        [filePart(tiny), { name: 'preprocessing', data: '{"mean":[0.5,0.5,0.5]}' }],
        422,
        'INVALID_PREPROCESSING',
        /mean has 3 value\(s\) but input x NCHW \[N,1,4,4\] has 1 channel/,
      ],
      [
        [filePart(tiny), { name: 'preprocessing', contentType: 'application/json', data: '{oops' }],
        400,
        'VALIDATION_FAILED',
        /not valid JSON/,
      ],
      [[filePart(tiny), { name: 'colour', data: 'red' }], 400, 'VALIDATION_FAILED', /unknown field "colour"/],
      [[{ name: 'file', data: 'not a file part' }], 400, 'VALIDATION_FAILED', /must be a file part/],
      [[filePart(tiny), { name: 'name', data: '   ' }], 400, 'VALIDATION_FAILED', /must not be empty/],
      [[filePart(tiny), { name: 'name', data: 'a\u0000b' }], 400, 'VALIDATION_FAILED', /control characters/],
      [
        [filePart(tiny), { name: 'tags', data: 'ok,b\u0000d' }],
        400,
        'VALIDATION_FAILED',
        /control characters/,
      ],
      [
        [filePart(tiny), { name: 'name', data: 'a' }, { name: 'name', data: 'b' }],
        400,
        'VALIDATION_FAILED',
        /more than once/,
      ],
      [[filePart(tiny), filePart(tiny)], 400, 'VALIDATION_FAILED', /only one "file"/],
      [
        [{ name: 'weights', filename: 'w.onnx', data: tiny }],
        400,
        'VALIDATION_FAILED',
        /unexpected file part "weights"/,
      ],
    ];
    for (const [parts, status, code, detail] of cases) {
      const res = await upload(parts);
      expect(res.statusCode, res.body).toBe(status);
      expect(res.json()).toMatchObject({ status, code });
      expect(res.json().detail).toMatch(detail);
      expectMatchesSpec('POST', '/v1/models', res);
    }
    expect(await t.db.prisma.model.count({ where: { sha256: sha256(tiny) } })).toBe(0);
    expect(await filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);
  });

  it('answers 415 to non-multipart bodies and 400 to broken multipart, never 500', async () => {
    const json = await t.app.inject({
      method: 'POST',
      url: '/v1/models',
      headers: t.auth,
      payload: { file: 'abc' },
    });
    expect(json.statusCode).toBe(415);
    expect(json.json().code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expectMatchesSpec('POST', '/v1/models', json);

    const octet = await t.app.inject({
      method: 'POST',
      url: '/v1/models',
      headers: { ...t.auth, 'content-type': 'application/octet-stream' },
      payload: plain.subarray(0, 100),
    });
    expect(octet.statusCode).toBe(415);

    const { payload, headers } = multipartBody([filePart(plain)]);
    const cut = await t.app.inject({
      method: 'POST',
      url: '/v1/models',
      headers: { ...t.auth, ...headers },
      payload: payload.subarray(0, payload.length - 5000),
    });
    expect(cut.statusCode, cut.body).toBe(400);
    expect(cut.json().code).toBe('VALIDATION_FAILED');

    const noBoundary = await t.app.inject({
      method: 'POST',
      url: '/v1/models',
      headers: { ...t.auth, 'content-type': 'multipart/form-data' },
      payload: 'hello',
    });
    expect(noBoundary.statusCode, noBoundary.body).toBe(400);

    const empty = await t.app.inject({
      method: 'POST',
      url: '/v1/models',
      headers: { ...t.auth, ...headers },
      payload: '',
    });
    expect(empty.statusCode, empty.body).toBe(400);
    expect(await filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);
  });

  it('needs a key: 401 without one', async () => {
    const res = await upload([filePart(plain)], t, {});
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('UNAUTHORIZED');
    const list = await t.app.inject({ method: 'GET', url: '/v1/models' });
    expect(list.statusCode).toBe(401);
  });
});

describe('POST /v1/models over the size limit', () => {
  let small: TestApp;
  beforeAll(async () => {
    small = await createTestApp({ limits: { maxModelBytes: 1000 } as Config['limits'] });
  });
  afterAll(async () => small?.close());

  it('413 PAYLOAD_TOO_LARGE, no row, no file', async () => {
    const res = await upload([filePart(plain), { name: 'name', data: 'too big' }], small);
    expect(res.statusCode, res.body).toBe(413);
    expect(res.json()).toMatchObject({ status: 413, code: 'PAYLOAD_TOO_LARGE', limit: 1000 });
    expectMatchesSpec('POST', '/v1/models', res);
    expect(await small.db.prisma.model.count()).toBe(0);
    expect(await filesUnder(path.join(small.dataDir, 'tmp'))).toEqual([]);
    expect(await filesUnder(path.join(small.dataDir, 'blobs'))).toEqual([]);

    // A model under the limit still goes through.
    const tiny = tinyClassifier();
    expect(tiny.length).toBeLessThan(1000);
    const ok = await upload([filePart(tiny)], small);
    expect(ok.statusCode, ok.body).toBe(201);
  });
});

describe('GET /v1/models', () => {
  let app: TestApp;
  const ids: string[] = [];
  beforeAll(async () => {
    app = await createTestApp();
    for (const [i, channels] of [1, 3, 1].entries()) {
      const res = await upload(
        [
          filePart(tinyClassifier({ channels, size: 4 + i })),
          { name: 'name', data: i === 1 ? 'odd one' : 'tiny' },
          { name: 'tags', data: i === 2 ? 'a,b' : 'a' },
        ],
        app,
      );
      expect(res.statusCode, res.body).toBe(201);
      ids.push(res.json().id);
    }
  });
  afterAll(async () => app?.close());

  it('pages newest first with a cursor (limit 2 over 3 models)', async () => {
    const first = await app.app.inject({ method: 'GET', url: '/v1/models?limit=2', headers: app.auth });
    expect(first.statusCode).toBe(200);
    expectMatchesSpec('GET', '/v1/models', first);
    const page1 = first.json();
    expect(page1.items).toHaveLength(2);
    expect(typeof page1.nextCursor).toBe('string');

    const second = await app.app.inject({
      method: 'GET',
      url: `/v1/models?limit=2&cursor=${encodeURIComponent(page1.nextCursor)}`,
      headers: app.auth,
    });
    expect(second.statusCode).toBe(200);
    expectMatchesSpec('GET', '/v1/models', second);
    const page2 = second.json();
    expect(page2.items).toHaveLength(1);
    expect(page2.nextCursor).toBeNull();

    const seen = [...page1.items, ...page2.items].map((m: { id: string }) => m.id);
    expect(seen).toEqual([...ids].reverse());
    // Items have the same shape as GET one.
    expect(page1.items[0].layers).toEqual([
      { name: 'r', opType: 'Relu', shape: ['N', 1, 6, 6], type: 'float32', measurable: true },
      { name: 'p', opType: 'GlobalAveragePool', shape: ['N', 1, 1, 1], type: 'float32', measurable: true },
      { name: 'y', opType: 'Flatten', shape: ['N', 1], type: 'float32', measurable: true },
    ]);
  });

  it('filters by name and by tag', async () => {
    const byName = await app.app.inject({
      method: 'GET',
      url: '/v1/models?name=odd%20one',
      headers: app.auth,
    });
    expect(byName.json().items.map((m: { id: string }) => m.id)).toEqual([ids[1]]);
    const byTag = await app.app.inject({ method: 'GET', url: '/v1/models?tag=b', headers: app.auth });
    expect(byTag.json().items.map((m: { id: string }) => m.id)).toEqual([ids[2]]);
    const none = await app.app.inject({ method: 'GET', url: '/v1/models?tag=zzz', headers: app.auth });
    expect(none.json()).toEqual({ items: [], nextCursor: null });
  });

  it('rejects bad paging parameters with 400', async () => {
    for (const q of [
      'limit=0',
      'limit=201',
      'limit=abc',
      'cursor=bm9wZQ',
      'colour=red',
      'name=a%00b',
      'tag=%00',
    ]) {
      const res = await app.app.inject({ method: 'GET', url: `/v1/models?${q}`, headers: app.auth });
      expect(res.statusCode, q).toBe(400);
      expect(res.json().code, q).toMatch(/^(VALIDATION_FAILED|INVALID_CURSOR)$/);
      expectMatchesSpec('GET', '/v1/models', res);
    }
  });
});

describe('GET and DELETE /v1/models/{id}', () => {
  it('gets one model; 404 for unknown and malformed ids', async () => {
    const posted = await upload([filePart(tinyClassifier({ size: 9 }), 'get-me.onnx')]);
    expect(posted.statusCode).toBe(201);
    const res = await t.app.inject({ method: 'GET', url: `/v1/models/${posted.json().id}`, headers: t.auth });
    expect(res.statusCode).toBe(200);
    expectMatchesSpec('GET', '/v1/models/{id}', res);
    expect(res.json()).toEqual(posted.json());

    for (const id of [randomUUID(), 'not-a-uuid', '1', "'; drop table models; --", 'x'.repeat(90), '%00']) {
      const missing = await t.app.inject({
        method: 'GET',
        url: `/v1/models/${encodeURIComponent(id)}`,
        headers: t.auth,
      });
      expect(missing.statusCode, id).toBe(404);
      expect(missing.json().code).toBe('NOT_FOUND');
      expectMatchesSpec('GET', '/v1/models/{id}', missing);
    }
  });

  it('deletes a model and its blob: 204, then 404', async () => {
    const bytes = tinyClassifier({ size: 10 });
    const posted = await upload([filePart(bytes)]);
    expect(posted.statusCode).toBe(201);
    const { id, sha256: sha } = posted.json();
    expect(existsSync(blobPath(t, sha))).toBe(true);

    const del = await t.app.inject({ method: 'DELETE', url: `/v1/models/${id}`, headers: t.auth });
    expect(del.statusCode).toBe(204);
    expect(del.body).toBe('');
    expectMatchesSpec('DELETE', '/v1/models/{id}', del);
    expect(existsSync(blobPath(t, sha))).toBe(false);
    expect(await t.db.prisma.model.count({ where: { id } })).toBe(0);

    const again = await t.app.inject({ method: 'DELETE', url: `/v1/models/${id}`, headers: t.auth });
    expect(again.statusCode).toBe(404);
    expectMatchesSpec('DELETE', '/v1/models/{id}', again);
    const get = await t.app.inject({ method: 'GET', url: `/v1/models/${id}`, headers: t.auth });
    expect(get.statusCode).toBe(404);

    // Uploading the same bytes again after deletion stores them afresh.
    const reposted = await upload([filePart(bytes)]);
    expect(reposted.statusCode).toBe(201);
    expect(reposted.json().id).not.toBe(id);
    expect(existsSync(blobPath(t, sha))).toBe(true);
  });

  it('needs the admin scope to delete: 403 with a write key', async () => {
    const posted = await upload([filePart(tinyClassifier({ size: 11 }))]);
    const { key } = await apiKeyRepository(t.db.prisma).create('writer', ['write']);
    const res = await t.app.inject({
      method: 'DELETE',
      url: `/v1/models/${posted.json().id}`,
      headers: { authorization: `Bearer ${key}` },
    });
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('INSUFFICIENT_SCOPE');
    expectMatchesSpec('DELETE', '/v1/models/{id}', res);
  });

  it('409 MODEL_IN_USE while a run references the model', async () => {
    const posted = await upload([filePart(tinyClassifier({ size: 12 }))]);
    const model = posted.json();
    const dataset = await t.db.prisma.dataset.create({
      data: {
        id: randomUUID(),
        sha256: 'd'.repeat(64),
        name: 'd',
        format: 'idx',
        count: 1,
        width: 12,
        height: 12,
        channels: 1,
        dtype: 'uint8',
        classes: [],
        blobSha256: 'e'.repeat(64),
        sizeBytes: 1n,
      },
    });
    const run = await t.db.prisma.run.create({
      data: { id: randomUUID(), modelId: model.id, datasetId: dataset.id, request: {} },
    });
    const res = await t.app.inject({ method: 'DELETE', url: `/v1/models/${model.id}`, headers: t.auth });
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('MODEL_IN_USE');
    expectMatchesSpec('DELETE', '/v1/models/{id}', res);
    expect(existsSync(blobPath(t, model.sha256))).toBe(true);

    await t.db.prisma.run.delete({ where: { id: run.id } });
    const ok = await t.app.inject({ method: 'DELETE', url: `/v1/models/${model.id}`, headers: t.auth });
    expect(ok.statusCode).toBe(204);
  });
});
