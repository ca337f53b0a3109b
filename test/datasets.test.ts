// /v1/datasets end to end: every format, dedup, listing, deletion, hostile input (each a 4xx
// problem that leaves no row and no file), and a >= 100 MiB IDX upload with bounded memory.
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { openCanonicalDataset } from '../src/ingest/canonicalDataset.js';
import { apiKeyRepository } from '../src/store/apiKeys.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';
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
import { FIXTURES, FMNIST_CLASSES } from './helpers/fixtures.js';
import { type MultipartPart, multipartBody } from './helpers/multipart.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let t: TestApp;
let imagesGz: Buffer;
let labelsGz: Buffer;

beforeAll(async () => {
  const defaults = loadConfig({});
  t = await createTestApp({
    limits: {
      ...defaults.limits,
      maxDatasetBytes: 8 * MiB,
      maxDatasetImages: 1500,
      maxUncompressedBytes: 4 * MiB,
      maxArchiveEntries: 50,
    },
  });
  imagesGz = await readFile(path.join(FIXTURES, 'fmnist-test-1k-images-idx3-ubyte.gz'));
  labelsGz = await readFile(path.join(FIXTURES, 'fmnist-test-1k-labels-idx1-ubyte.gz'));
});
afterAll(async () => t?.close());

function post(parts: MultipartPart[], headers: Record<string, string> = t.auth) {
  const { payload, headers: h } = multipartBody(parts);
  return t.app.inject({ method: 'POST', url: '/v1/datasets', payload, headers: { ...h, ...headers } });
}

const idxParts = (images: Buffer, labels: Buffer, extra: MultipartPart[] = []): MultipartPart[] => [
  { name: 'images', filename: 'images-idx3-ubyte', data: images },
  { name: 'labels', filename: 'labels-idx1-ubyte', data: labels },
  ...extra,
];
const fileParts = (data: Buffer, filename = 'data.zip', extra: MultipartPart[] = []): MultipartPart[] => [
  { name: 'file', filename, data },
  ...extra,
];

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    let entries: Array<import('node:fs').Dirent>;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(path.relative(t.dataDir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

async function storeState() {
  return {
    rows: await t.db.prisma.dataset.count(),
    blobs: await filesUnder(path.join(t.dataDir, 'blobs')),
    tmp: await filesUnder(path.join(t.dataDir, 'tmp')),
  };
}

/** Posts, expects a problem with this status and code, and checks nothing was left behind. */
async function expectRejected(parts: MultipartPart[], status: number, code: string, entry?: string) {
  const before = await storeState();
  expect(before.tmp).toEqual([]);
  const res = await post(parts);
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = res.json();
  expect(body).toMatchObject({ status, code });
  expect(body.detail).toEqual(expect.any(String));
  if (entry !== undefined) expect(body.entry).toBe(entry);
  expectMatchesSpec('POST', '/v1/datasets', res);
  expect(await storeState()).toEqual(before);
  return body as { detail: string; entry?: string; [extra: string]: unknown };
}

const px = (n: number, seed: number) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + seed * 11) % 256));

/** Labels as little-endian int64 (bigints for values a Number cannot hold). */
const int64 = (values: Array<number | bigint>) => {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => {
    b.writeBigInt64LE(BigInt(v), 8 * i);
  });
  return b;
};
/** The images + labels parts of a .npy pair (the same fields as an IDX pair). */
const npyParts = (x: Buffer, y: Buffer, extra: MultipartPart[] = []): MultipartPart[] => [
  { name: 'images', filename: 'train-x.npy', data: x },
  { name: 'labels', filename: 'train-y.npy', data: y },
  ...extra,
];

describe('POST /v1/datasets: formats', () => {
  let fmnistId: string;
  let fmnistBlob: string;

  it('ingests the Fashion-MNIST IDX pair (gzip) exactly', async () => {
    const res = await post(
      idxParts(imagesGz, labelsGz, [
        { name: 'name', data: 'fmnist-1k' },
        { name: 'classNames', data: JSON.stringify(FMNIST_CLASSES) },
      ]),
    );
    expect(res.statusCode, res.body).toBe(201);
    expectMatchesSpec('POST', '/v1/datasets', res);
    const d = res.json();
    const rawImages = gunzipSync(imagesGz);
    const rawLabels = gunzipSync(labelsGz).subarray(8);
    const counts = new Array(10).fill(0);
    for (const l of rawLabels) counts[l]++;
    expect(d).toMatchObject({
      name: 'fmnist-1k',
      format: 'idx',
      count: 1000,
      width: 28,
      height: 28,
      channels: 1,
      dtype: 'uint8',
      sha256: sha256(`${sha256(imagesGz)}:${sha256(labelsGz)}`),
    });
    expect(d.classes).toEqual(FMNIST_CLASSES.map((name, index) => ({ index, name, count: counts[index] })));
    expect(counts.reduce((a, b) => a + b)).toBe(1000);

    const blobPath = t.blobs.pathOf(d.blobSha256);
    expect(sha256(await readFile(blobPath))).toBe(d.blobSha256);
    expect((await stat(blobPath)).size).toBe(d.sizeBytes);
    const ds = await openCanonicalDataset(blobPath);
    expect(ds.meta).toMatchObject({ count: 1000, height: 28, width: 28, channels: 1, dtype: 'uint8' });
    for (const i of [0, 1, 500, 999]) {
      const s = await ds.readSamples(i, 1);
      const expected = rawImages.subarray(16 + i * 784, 16 + (i + 1) * 784);
      expect(Buffer.from(s.pixels.buffer).equals(expected)).toBe(true);
      expect(s.labels[0]).toBe(rawLabels[i]);
    }
    expect([...(await ds.readLabels())]).toEqual([...rawLabels]);
    await ds.close();
    fmnistId = d.id;
    fmnistBlob = d.blobSha256;
  });

  it('returns the existing dataset (200) for the same upload', async () => {
    const res = await post(idxParts(imagesGz, labelsGz));
    expect(res.statusCode).toBe(200);
    expectMatchesSpec('POST', '/v1/datasets', res);
    expect(res.json().id).toBe(fmnistId);
    expect((await storeState()).tmp).toEqual([]);
  });

  it('the same upload with other classNames: 409 DATASET_EXISTS; invalid ones: the first-upload 422', async () => {
    const names = (n: string[]) => ({ name: 'classNames', data: JSON.stringify(n) });
    const same = await post(
      idxParts(imagesGz, labelsGz, [names(FMNIST_CLASSES), { name: 'name', data: 'x' }]),
    );
    expect(same.statusCode, same.body).toBe(200);
    expect(same.json()).toMatchObject({ id: fmnistId, name: 'fmnist-1k' });

    const other = FMNIST_CLASSES.map((n) => n.toUpperCase());
    const conflict = await expectRejected(
      idxParts(imagesGz, labelsGz, [names(other)]),
      409,
      'DATASET_EXISTS',
    );
    expect(conflict).toMatchObject({ datasetId: fmnistId });
    expect(conflict.detail).toMatch(/same bytes .* other class names/);
    // More names than classes would be valid, but differ too.
    await expectRejected(
      idxParts(imagesGz, labelsGz, [names([...FMNIST_CLASSES, 'extra'])]),
      409,
      'DATASET_EXISTS',
    );
    // 1 name for 10 labels: exactly what a first upload of these bytes answers.
    const invalid = await expectRejected(
      idxParts(imagesGz, labelsGz, [names(['only'])]),
      422,
      'INVALID_DATASET',
    );
    expect(invalid.detail).toBe('label 9 is out of range for 1 class names (classNames)');

    const got = await t.app.inject({ method: 'GET', url: `/v1/datasets/${fmnistId}`, headers: t.auth });
    expect(got.json().classes.map((c: { name: string }) => c.name)).toEqual(FMNIST_CLASSES);
  });

  it('accepts the same IDX pair uncompressed: a new dataset sharing the canonical blob', async () => {
    const res = await post(idxParts(gunzipSync(imagesGz), gunzipSync(labelsGz)));
    expect(res.statusCode, res.body).toBe(201);
    const d = res.json();
    expect(d.id).not.toBe(fmnistId);
    expect(d).toMatchObject({
      format: 'idx',
      count: 1000,
      blobSha256: fmnistBlob,
      name: 'images-idx3-ubyte',
    });
    expect(d.classes.map((c: { name: string }) => c.name)).toEqual([
      '0',
      '1',
      '2',
      '3',
      '4',
      '5',
      '6',
      '7',
      '8',
      '9',
    ]);

    // Deleting one keeps the shared blob; deleting the other removes it.
    const del = await t.app.inject({ method: 'DELETE', url: `/v1/datasets/${d.id}`, headers: t.auth });
    expect(del.statusCode).toBe(204);
    expect(await t.blobs.has(fmnistBlob)).toBe(true);
    const gone = await t.app.inject({ method: 'GET', url: `/v1/datasets/${d.id}`, headers: t.auth });
    expect(gone.statusCode).toBe(404);
  });

  it('ingests a zip of RGB PNG/JPEG/WebP images of differing sizes (resized to the first)', async () => {
    const first = px(6 * 5 * 3, 1);
    const zip = zipFile([
      { name: 'cats/a.png', data: await encodeImage(first, 6, 5, 3, 'png') },
      { name: 'cats/b.jpg', data: await encodeImage(px(12 * 10 * 3, 2), 12, 10, 3, 'jpeg') },
      { name: 'dogs/', dir: true },
      { name: 'dogs/c.webp', data: await encodeImage(px(3 * 3 * 3, 3), 3, 3, 3, 'webp') },
      { name: 'dogs/.DS_Store', data: Buffer.from('junk') },
      { name: '__MACOSX/dogs/._c.webp', data: Buffer.from('junk') },
    ]);
    // Fields after the file part work too.
    const res = await post(fileParts(zip, 'pets.zip', [{ name: 'name', data: 'pets' }]));
    expect(res.statusCode, res.body).toBe(201);
    expectMatchesSpec('POST', '/v1/datasets', res);
    const d = res.json();
    expect(d).toMatchObject({
      format: 'zip',
      name: 'pets',
      count: 3,
      width: 6,
      height: 5,
      channels: 3,
      sha256: sha256(zip),
    });
    expect(d.classes).toEqual([
      { index: 0, name: 'cats', count: 2 },
      { index: 1, name: 'dogs', count: 1 },
    ]);
    const ds = await openCanonicalDataset(t.blobs.pathOf(d.blobSha256));
    const s = await ds.readSamples(0, 3);
    expect(Buffer.from(s.pixels.buffer, 0, 90).equals(first)).toBe(true);
    expect([...s.labels]).toEqual([0, 0, 1]);
    await ds.close();
  });

  it('ingests a tar.gz with a wrapper folder of greyscale images (default name from the file)', async () => {
    const tgz = await tarFile(
      [
        { name: 'mnist-ish/', type: 'directory' },
        { name: 'mnist-ish/7/x1.png', data: await encodeImage(px(16, 4), 4, 4, 1, 'png') },
        { name: 'mnist-ish/3/x2.png', data: await encodeImage(px(16, 5), 4, 4, 1, 'png') },
        { name: 'mnist-ish/3/x3.png', data: await encodeImage(px(16, 6), 4, 4, 1, 'png') },
      ],
      true,
    );
    const res = await post(fileParts(tgz, 'mnist-ish.tar.gz'));
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({
      format: 'tar',
      name: 'mnist-ish',
      count: 3,
      width: 4,
      height: 4,
      channels: 1,
      classes: [
        { index: 0, name: '3', count: 2 },
        { index: 1, name: '7', count: 1 },
      ],
    });
  });

  it('ingests an npz (float32 x, int64 y)', async () => {
    const x = new Float32Array(4 * 3 * 3).map((_, i) => (i % 10) / 10);
    const y = Buffer.alloc(32);
    [0, 2, 2, 1].forEach((v, i) => {
      y.writeBigInt64LE(BigInt(v), 8 * i);
    });
    const file = npz({ x: npy('<f4', [4, 3, 3], Buffer.from(x.buffer)), y: npy('<i8', [4], y) });
    const res = await post(
      fileParts(file, 'arrays.npz', [{ name: 'classNames', data: '["a","b","c","d"]' }]),
    );
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({
      format: 'npz',
      count: 4,
      width: 3,
      height: 3,
      channels: 1,
      dtype: 'float32',
      classes: [
        { index: 0, name: 'a', count: 1 },
        { index: 1, name: 'b', count: 1 },
        { index: 2, name: 'c', count: 2 },
        { index: 3, name: 'd', count: 0 },
      ],
    });
    const ds = await openCanonicalDataset(t.blobs.pathOf(res.json().blobSha256));
    expect([...(await ds.readSamples(0, 4)).pixels]).toEqual([...x]);
    await ds.close();
  });

  it('ingests a .npy pair (uint8 [N,H,W], int64 labels) exactly as the same arrays in an npz', async () => {
    const pixels = px(5 * 3 * 4, 7);
    const x = npy('|u1', [5, 3, 4], pixels);
    const y = npy('<i8', [5], int64([2, 0, 2, 1, 2]));
    const viaNpz = await post(fileParts(npz({ x, y }), 'arrays.npz'));
    expect(viaNpz.statusCode, viaNpz.body).toBe(201);
    const res = await post(npyParts(x, y));
    expect(res.statusCode, res.body).toBe(201);
    expectMatchesSpec('POST', '/v1/datasets', res);
    const d = res.json();
    expect(d).toMatchObject({
      format: 'npz',
      name: 'train-x',
      count: 5,
      width: 4,
      height: 3,
      channels: 1,
      dtype: 'uint8',
      sha256: sha256(`${sha256(x)}:${sha256(y)}`),
      classes: [
        { index: 0, name: '0', count: 1 },
        { index: 1, name: '1', count: 1 },
        { index: 2, name: '2', count: 3 },
      ],
    });
    // The same canonical file (so the same decoded pixels and labels) as the npz.
    expect(d.id).not.toBe(viaNpz.json().id);
    expect(d.blobSha256).toBe(viaNpz.json().blobSha256);
    expect(d.classes).toEqual(viaNpz.json().classes);
    const ds = await openCanonicalDataset(t.blobs.pathOf(d.blobSha256));
    const s = await ds.readSamples(0, 5);
    expect(Buffer.from(s.pixels.buffer).equals(pixels)).toBe(true);
    expect([...s.labels]).toEqual([2, 0, 2, 1, 2]);
    await ds.close();
    // Told apart by content: IDX-like file names and gzip change nothing.
    const gz = await post(idxParts(gzipSync(x), gzipSync(y)));
    expect(gz.statusCode, gz.body).toBe(201);
    expect(gz.json()).toMatchObject({ format: 'npz', count: 5, blobSha256: d.blobSha256 });
  });

  it('ingests a .npy pair (float32 [N,H,W,C], uint8 labels) exactly as the same arrays in an npz', async () => {
    const values = new Float32Array(3 * 2 * 2 * 3).map((_, i) => (i % 7) / 7);
    const x = npy('<f4', [3, 2, 2, 3], Buffer.from(values.buffer));
    const y = npy('|u1', [3], Buffer.from([1, 0, 1]));
    const classNames = { name: 'classNames', data: '["cat","dog","fox"]' };
    const viaNpz = await post(fileParts(npz({ x, y }, 'store'), 'f.npz', [classNames]));
    expect(viaNpz.statusCode, viaNpz.body).toBe(201);
    const res = await post(npyParts(x, y, [classNames, { name: 'name', data: 'float-pair' }]));
    expect(res.statusCode, res.body).toBe(201);
    expectMatchesSpec('POST', '/v1/datasets', res);
    const d = res.json();
    expect(d).toMatchObject({
      format: 'npz',
      name: 'float-pair',
      count: 3,
      width: 2,
      height: 2,
      channels: 3,
      dtype: 'float32',
      classes: [
        { index: 0, name: 'cat', count: 1 },
        { index: 1, name: 'dog', count: 2 },
        { index: 2, name: 'fox', count: 0 },
      ],
    });
    expect(d.blobSha256).toBe(viaNpz.json().blobSha256);
    const ds = await openCanonicalDataset(t.blobs.pathOf(d.blobSha256));
    const s = await ds.readSamples(0, 3);
    expect([...s.pixels]).toEqual([...values]);
    expect([...s.labels]).toEqual([1, 0, 1]);
    await ds.close();
  });
});

describe('POST /v1/datasets: the same bytes with classNames', () => {
  const names = (n: string[]): MultipartPart => ({ name: 'classNames', data: JSON.stringify(n) });
  const classNamesOf = async (id: string) =>
    (await t.app.inject({ method: 'GET', url: `/v1/datasets/${id}`, headers: t.auth }))
      .json()
      .classes.map((c: { name: string }) => c.name);

  it('.npy pair stored with 5 names for labels 0..2: 3 other names are valid (409), 2 are not (422)', async () => {
    const x = npy('|u1', [4, 1, 2], px(8, 3));
    const y = npy('<i8', [4], int64([0, 2, 1, 0]));
    const first = await post(npyParts(x, y, [names(['a', 'b', 'c', 'd', 'e'])]));
    expect(first.statusCode, first.body).toBe(201);
    const { id } = first.json();

    for (const extra of [[], [names(['a', 'b', 'c', 'd', 'e'])]]) {
      const again = await post(npyParts(x, y, extra));
      expect(again.statusCode, again.body).toBe(200);
      expectMatchesSpec('POST', '/v1/datasets', again);
      expect(again.json()).toEqual(first.json());
    }
    for (const other of [
      ['a', 'b', 'c'],
      ['a', 'b', 'c', 'd', 'E'],
      ['a', 'b', 'c', 'd', 'e', 'f'],
    ]) {
      const body = await expectRejected(npyParts(x, y, [names(other)]), 409, 'DATASET_EXISTS');
      expect(body.datasetId).toBe(id);
      expect(body.detail).toContain(id);
    }
    const invalid = await expectRejected(npyParts(x, y, [names(['a', 'b'])]), 422, 'INVALID_DATASET');
    expect(invalid.detail).toBe('label 2 is out of range for 2 class names (classNames)');
    expect(await classNamesOf(id)).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('archive: fewer names than class folders is the first-upload 422, even with empty folders', async () => {
    const png = await encodeImage(px(4, 1), 2, 2, 1, 'png');
    const zip = zipFile([
      { name: 'ant/1.png', data: png },
      { name: 'bee/2.png', data: png },
      { name: 'cow/', dir: true },
    ]);
    const first = await post(fileParts(zip, 'farm.zip'));
    expect(first.statusCode, first.body).toBe(201);
    expect(first.json().classes.map((c: { name: string }) => c.name)).toEqual(['ant', 'bee', 'cow']);
    const invalid = await expectRejected(
      fileParts(zip, 'farm.zip', [names(['A', 'B'])]),
      422,
      'INVALID_DATASET',
    );
    expect(invalid.detail).toBe('classNames has 2 names but the archive has 3 class folders');
    const conflict = await expectRejected(
      fileParts(zip, 'farm.zip', [names(['A', 'B', 'C'])]),
      409,
      'DATASET_EXISTS',
    );
    expect(conflict.datasetId).toBe(first.json().id);
    const same = await post(fileParts(zip, 'farm.zip', [names(['ant', 'bee', 'cow'])]));
    expect(same.statusCode).toBe(200);
    expect(same.json().id).toBe(first.json().id);
    expect(await classNamesOf(first.json().id)).toEqual(['ant', 'bee', 'cow']);
  });
});

describe('GET and DELETE /v1/datasets', () => {
  it('lists newest first with cursor pagination and a name filter', async () => {
    const all = await t.app.inject({ method: 'GET', url: '/v1/datasets?limit=200', headers: t.auth });
    expect(all.statusCode).toBe(200);
    expectMatchesSpec('GET', '/v1/datasets', all);
    const items = all.json().items as Array<{ id: string; createdAt: string }>;
    expect(items.length).toBeGreaterThanOrEqual(4);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/datasets?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = await t.app.inject({ method: 'GET', url, headers: t.auth });
      expect(page.statusCode).toBe(200);
      expectMatchesSpec('GET', '/v1/datasets', page);
      seen.push(...page.json().items.map((i: { id: string }) => i.id));
      cursor = page.json().nextCursor;
    } while (cursor);
    expect(seen).toEqual(items.map((i) => i.id));
    const byName = await t.app.inject({ method: 'GET', url: '/v1/datasets?name=fmnist-1k', headers: t.auth });
    expect(byName.json().items.map((i: { name: string }) => i.name)).toEqual(['fmnist-1k']);
    const bad = await t.app.inject({ method: 'GET', url: '/v1/datasets?cursor=nope', headers: t.auth });
    expect(bad.statusCode).toBe(400);
    const badLimit = await t.app.inject({ method: 'GET', url: '/v1/datasets?limit=0', headers: t.auth });
    expect(badLimit.statusCode).toBe(400);
    expect(badLimit.json().code).toBe('VALIDATION_FAILED');
  });

  it('gets one; unknown and malformed ids are 404', async () => {
    const [first] = (await t.app.inject({ method: 'GET', url: '/v1/datasets', headers: t.auth })).json()
      .items;
    const one = await t.app.inject({ method: 'GET', url: `/v1/datasets/${first.id}`, headers: t.auth });
    expect(one.statusCode).toBe(200);
    expectMatchesSpec('GET', '/v1/datasets/{id}', one);
    expect(one.json()).toEqual(first);
    for (const id of [randomUUID(), 'not-a-uuid', '%27%3B--', '1']) {
      const res = await t.app.inject({ method: 'GET', url: `/v1/datasets/${id}`, headers: t.auth });
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe('NOT_FOUND');
      expectMatchesSpec('GET', '/v1/datasets/{id}', res);
      const del = await t.app.inject({ method: 'DELETE', url: `/v1/datasets/${id}`, headers: t.auth });
      expect(del.statusCode).toBe(404);
    }
  });

  it('needs a key, the write scope to upload and the admin scope to delete', async () => {
    const keys = apiKeyRepository(t.db.prisma);
    const reader = (await keys.create('reader', ['read'])).key;
    const writer = (await keys.create('writer', ['write'])).key;
    const noKey = await t.app.inject({ method: 'GET', url: '/v1/datasets' });
    expect(noKey.statusCode).toBe(401);
    const readOk = await t.app.inject({
      method: 'GET',
      url: '/v1/datasets',
      headers: { authorization: `Bearer ${reader}` },
    });
    expect(readOk.statusCode).toBe(200);
    const upload = await post(idxParts(imagesGz, labelsGz), { authorization: `Bearer ${reader}` });
    expect(upload.statusCode).toBe(403);
    const [first] = readOk.json().items;
    const del = await t.app.inject({
      method: 'DELETE',
      url: `/v1/datasets/${first.id}`,
      headers: { authorization: `Bearer ${writer}` },
    });
    expect(del.statusCode).toBe(403);
    expectMatchesSpec('DELETE', '/v1/datasets/{id}', del);
  });

  it('refuses to delete a dataset a run uses (409), then deletes it and its blob', async () => {
    const res = await post(idxParts(idxImages(2, 1, 1, Buffer.from([1, 2])), idxLabels([0, 1])));
    expect(res.statusCode).toBe(201);
    const d = res.json();
    const model = await t.db.prisma.model.create({
      data: {
        id: randomUUID(),
        sha256: sha256(randomUUID()),
        name: 'm',
        sizeBytes: 1n,
        inputs: [],
        outputs: [],
        layers: [],
        preprocessing: {},
      },
    });
    const run = await t.db.prisma.run.create({
      data: { id: randomUUID(), modelId: model.id, datasetId: d.id, request: {} },
    });
    const busy = await t.app.inject({ method: 'DELETE', url: `/v1/datasets/${d.id}`, headers: t.auth });
    expect(busy.statusCode).toBe(409);
    expect(busy.json().code).toBe('DATASET_IN_USE');
    expectMatchesSpec('DELETE', '/v1/datasets/{id}', busy);
    expect(await t.blobs.has(d.blobSha256)).toBe(true);

    await t.db.prisma.run.delete({ where: { id: run.id } });
    await t.db.prisma.model.delete({ where: { id: model.id } });
    const del = await t.app.inject({ method: 'DELETE', url: `/v1/datasets/${d.id}`, headers: t.auth });
    expect(del.statusCode).toBe(204);
    expectMatchesSpec('DELETE', '/v1/datasets/{id}', del);
    expect(await t.blobs.has(d.blobSha256)).toBe(false);
  });
});

describe('POST /v1/datasets: bad and hostile input', () => {
  const png = () => encodeImage(px(16, 9), 4, 4, 1, 'png');

  it('zip-slip names, absolute paths and symlinks: ARCHIVE_PATH_UNSAFE', async () => {
    const ok = await png();
    for (const name of ['../evil.png', 'cls/../../evil.png', '/etc/cls/evil.png', 'cls\\..\\..\\evil.png']) {
      const zip = zipFile([
        { name: 'cls/good.png', data: ok },
        { name, data: ok },
      ]);
      const body = await expectRejected(fileParts(zip), 422, 'ARCHIVE_PATH_UNSAFE');
      expect(body.entry).toBeDefined();
    }
    await expectRejected(
      fileParts(zipFile([{ name: 'cls/link.png', data: Buffer.from('/etc/passwd'), symlink: true }])),
      422,
      'ARCHIVE_PATH_UNSAFE',
      'cls/link.png',
    );
    const tarSlip = await tarFile([{ name: '../x/evil.png', data: ok }]);
    await expectRejected(fileParts(tarSlip, 'd.tar'), 422, 'ARCHIVE_PATH_UNSAFE', '../x/evil.png');
    for (const type of ['symlink', 'link'] as const) {
      const tar = await tarFile([
        { name: 'cls/a.png', data: ok },
        { name: 'cls/b.png', type, linkname: '/etc/passwd' },
      ]);
      await expectRejected(fileParts(tar, 'd.tar'), 422, 'ARCHIVE_PATH_UNSAFE', 'cls/b.png');
    }
  });

  it('zip and tar.gz bombs: UNCOMPRESSED_TOO_LARGE, counting actual inflated bytes', async () => {
    const zeros = Buffer.alloc(10 * MiB);
    await expectRejected(
      fileParts(zipFile([{ name: 'cls/bomb.png', data: zeros }])),
      422,
      'UNCOMPRESSED_TOO_LARGE',
    );
    // Headers claiming 100 bytes do not help: the inflated bytes are counted.
    const lying = zipFile([{ name: 'cls/bomb.png', data: zeros, declaredSize: 100 }]);
    expect(lying.length).toBeLessThan(MiB);
    await expectRejected(fileParts(lying), 422, 'UNCOMPRESSED_TOO_LARGE', 'cls/bomb.png');
    const tgz = await tarFile([{ name: 'cls/bomb.png', data: zeros }], true);
    await expectRejected(fileParts(tgz, 'd.tgz'), 422, 'UNCOMPRESSED_TOO_LARGE');
    // An npz whose x would decode past the limit.
    const big = npz({
      x: npy('|u1', [5, 1024, 1024], Buffer.alloc(5 * MiB)),
      y: npy('|u1', [5], Buffer.alloc(5)),
    });
    await expectRejected(fileParts(big, 'x.npz'), 422, 'UNCOMPRESSED_TOO_LARGE');
  });

  it('an image header claiming 100000x100000 pixels: IMAGE_TOO_LARGE before decoding', async () => {
    const zip = zipFile([
      { name: 'a/ok.png', data: await png() },
      { name: 'a/huge.png', data: pngHeaderOnly(100_000, 100_000) },
    ]);
    const body = await expectRejected(fileParts(zip), 422, 'IMAGE_TOO_LARGE', 'a/huge.png');
    expect(body.detail).toMatch(/100000x100000/);
  });

  it('corrupt and truncated images: INVALID_DATASET naming the entry', async () => {
    await expectRejected(
      fileParts(
        zipFile([
          { name: 'a/ok.png', data: await png() },
          { name: 'b/bad.png', data: Buffer.from('garbage') },
        ]),
      ),
      422,
      'INVALID_DATASET',
      'b/bad.png',
    );
    // A valid header but cut pixel data: found only when decoding (second pass).
    const big = await encodeImage(px(64 * 64 * 3, 1), 64, 64, 3, 'png');
    const tar = await tarFile([
      { name: 'a/ok.png', data: await encodeImage(px(64 * 64 * 3, 2), 64, 64, 3, 'png') },
      { name: 'b/cut.png', data: big.subarray(0, Math.floor(big.length / 2)) },
    ]);
    await expectRejected(fileParts(tar, 'd.tar'), 422, 'INVALID_DATASET', 'b/cut.png');
  });

  it('IDX: count mismatch, wrong magic, truncated files, labels beyond classNames, empty', async () => {
    const images = idxImages(3, 2, 2, Buffer.alloc(12));
    const mismatch = await expectRejected(idxParts(images, idxLabels([0, 1])), 422, 'INVALID_DATASET');
    expect(mismatch.detail).toMatch(/3 images .* 2 labels/);
    const magic = await expectRejected(
      idxParts(idxImages(3, 2, 2, Buffer.alloc(12), 0x00000801), idxLabels([0, 1, 2])),
      422,
      'INVALID_DATASET',
    );
    expect(magic.detail).toMatch(/magic/);
    await expectRejected(
      idxParts(Buffer.from('hello, world'), idxLabels([0])),
      422,
      'INVALID_DATASET',
      'images',
    );
    const truncated = await expectRejected(
      idxParts(idxImages(3, 2, 2, Buffer.alloc(11)), idxLabels([0, 1, 2])),
      422,
      'INVALID_DATASET',
    );
    expect(truncated.detail).toMatch(/truncated/);
    await expectRejected(
      idxParts(gzipSync(images).subarray(0, 20), idxLabels([0, 1, 2])),
      422,
      'INVALID_DATASET',
    );
    const range = await expectRejected(
      idxParts(idxImages(3, 2, 2, Buffer.alloc(12)), idxLabels([0, 4, 1]), [
        { name: 'classNames', data: '["a","b","c"]' },
      ]),
      422,
      'INVALID_DATASET',
    );
    expect(range.detail).toMatch(/label 4 is out of range for 3 class names/);
    await expectRejected(
      idxParts(idxImages(0, 2, 2, Buffer.alloc(0)), idxLabels([])),
      422,
      'INVALID_DATASET',
    );
    await expectRejected(
      fileParts(zipFile([{ name: 'a/.DS_Store', data: Buffer.from('x') }])),
      422,
      'INVALID_DATASET',
    );
  });

  it('npz: labels out of range and bad headers', async () => {
    const x = npy('|u1', [2, 1, 1], Buffer.from([1, 2]));
    const y = Buffer.alloc(8);
    y.writeInt32LE(70_000, 4);
    await expectRejected(fileParts(npz({ x, y: npy('<i4', [2], y) }), 'a.npz'), 422, 'INVALID_DATASET');
    const neg = Buffer.from([0, 0xff]);
    await expectRejected(fileParts(npz({ x, y: npy('|i1', [2], neg) }), 'a.npz'), 422, 'INVALID_DATASET');
    await expectRejected(
      fileParts(
        npz({ x: Buffer.from('\x93NUMPY\x01\x00\x05\x00{bad}'), y: npy('|u1', [2], Buffer.alloc(2)) }),
      ),
      422,
      'INVALID_DATASET',
      'x',
    );
  });

  it('npz: a 64-bit label out of range is reported with its real value', async () => {
    const x = npy('|u1', [2, 1, 1], Buffer.from([1, 2]));
    const big = await expectRejected(
      fileParts(npz({ x, y: npy('<i8', [2], int64([0, 2 ** 40])) }), 'a.npz'),
      422,
      'INVALID_DATASET',
    );
    expect(big.detail).toBe('y[1]: label 1099511627776 is not an integer in [0, 65535]');
    const max = Buffer.alloc(16, 0xff);
    const huge = await expectRejected(
      fileParts(npz({ x, y: npy('<u8', [2], max) }), 'a.npz'),
      422,
      'INVALID_DATASET',
    );
    expect(huge.detail).toBe('y[0]: label 18446744073709551615 is not an integer in [0, 65535]');
    const negative = await expectRejected(
      npyParts(x, npy('<i8', [2], int64([1, -(2n ** 62n)]))),
      422,
      'INVALID_DATASET',
    );
    expect(negative.detail).toBe('labels[1]: label -4611686018427387904 is not an integer in [0, 65535]');
  });

  it('.npy pair: the npz rules, limits and codes, naming the part; IDX mixed with .npy is refused', async () => {
    const x = npy('|u1', [3, 2, 2], Buffer.alloc(12));
    const y = npy('|u1', [3], Buffer.from([0, 1, 2]));
    // Mixed pairs, either way round, gzip or not.
    const idxX = idxImages(3, 2, 2, Buffer.alloc(12));
    const idxY = idxLabels([0, 1, 2]);
    for (const parts of [npyParts(x, idxY), npyParts(idxX, y), npyParts(gzipSync(idxX), gzipSync(y))]) {
      const mixed = await expectRejected(parts, 422, 'UNSUPPORTED_DATASET_FORMAT');
      expect(mixed.detail).toMatch(/is a \.npy array but .* is an IDX file/);
    }
    const cases: Array<[MultipartPart[], string, RegExp, string | undefined]> = [
      [
        npyParts(Buffer.from('\x93NUMPY\x01\x00\x05\x00{bad}', 'latin1'), y),
        'INVALID_DATASET',
        /bad .npy header/,
        'images',
      ],
      [npyParts(x, Buffer.from('garbage, not an array')), 'INVALID_DATASET', /not a .npy file/, 'labels'],
      [
        npyParts(x, npy('|u1', [2], Buffer.from([0, 1]))),
        'INVALID_DATASET',
        /3 images but labels 2 labels/,
        undefined,
      ],
      [npyParts(npy('|u1', [3, 2, 2], Buffer.alloc(11)), y), 'INVALID_DATASET', /truncated/, 'images'],
      [npyParts(x, npy('|u1', [3], Buffer.from([0, 1]))), 'INVALID_DATASET', /truncated/, 'labels'],
      [npyParts(npy('<f8', [3, 2, 2], Buffer.alloc(96)), y), 'INVALID_DATASET', /<f8/, 'images'],
      [
        npyParts(
          npy('<f4', [1, 1, 1], Buffer.from(new Float32Array([2]).buffer)),
          npy('|u1', [1], Buffer.from([0])),
        ),
        'INVALID_DATASET',
        /outside \[0, 1\]/,
        'images',
      ],
      [npyParts(x, npy('|b1', [3], Buffer.from([1, 0, 1]))), 'INVALID_DATASET', /integers/, 'labels'],
      [npyParts(x, npy('|i1', [3], Buffer.from([0, 0xff, 1]))), 'INVALID_DATASET', /label -1 /, undefined],
      [
        npyParts(x, y, [{ name: 'classNames', data: '["a","b"]' }]),
        'INVALID_DATASET',
        /label 2 is out of range for 2 class names/,
        undefined,
      ],
      [
        npyParts(gzipSync(x).subarray(0, 30), y),
        'INVALID_DATASET',
        /corrupt compressed data|truncated/,
        undefined,
      ],
      [
        npyParts(npy('|u1', [1501, 1, 1], Buffer.alloc(1501)), npy('|u1', [1501], Buffer.alloc(1501))),
        'TOO_MANY_IMAGES',
        /MAX_DATASET_IMAGES/,
        'images',
      ],
      [
        npyParts(npy('|u1', [5, 1024, 1024], Buffer.alloc(5 * MiB)), npy('|u1', [5], Buffer.alloc(5))),
        'UNCOMPRESSED_TOO_LARGE',
        /MAX_UNCOMPRESSED_BYTES/,
        'images',
      ],
    ];
    for (const [parts, code, detail, entry] of cases) {
      const body = await expectRejected(parts, 422, code, entry);
      expect(body.detail).toMatch(detail);
    }
    // A gzip'd array that unpacks past MAX_UNCOMPRESSED_BYTES is cut off while unpacking.
    const bomb = npy('|u1', [64, 256, 256], Buffer.alloc(4 * MiB));
    await expectRejected(
      npyParts(gzipSync(bomb), gzipSync(npy('|u1', [64], Buffer.alloc(64)))),
      422,
      'UNCOMPRESSED_TOO_LARGE',
    );
  });

  it('too many images, too many entries', async () => {
    await expectRejected(
      idxParts(idxImages(1501, 1, 1, Buffer.alloc(1501)), idxLabels(new Array(1501).fill(0))),
      422,
      'TOO_MANY_IMAGES',
    );
    const many = Array.from({ length: 60 }, (_, i) => ({ name: `c${i}/`, dir: true }));
    await expectRejected(fileParts(zipFile(many)), 422, 'TOO_MANY_ENTRIES');
    const tarMany = await tarFile(
      Array.from({ length: 60 }, (_, i) => ({ name: `c${i}/`, type: 'directory' as const })),
    );
    await expectRejected(fileParts(tarMany, 'd.tar'), 422, 'TOO_MANY_ENTRIES');
  });

  it('unsupported formats', async () => {
    await expectRejected(
      fileParts(Buffer.from('just some text, no archive'), 'd.zip'),
      422,
      'UNSUPPORTED_DATASET_FORMAT',
    );
    await expectRejected(
      fileParts(gzipSync(Buffer.from('not a tar')), 'd.tgz'),
      422,
      'UNSUPPORTED_DATASET_FORMAT',
    );
    await expectRejected(
      fileParts(npy('|u1', [1, 1, 1], Buffer.alloc(1)), 'x.npy'),
      422,
      'UNSUPPORTED_DATASET_FORMAT',
    );
    await expectRejected(fileParts(Buffer.alloc(0), 'empty.zip'), 422, 'UNSUPPORTED_DATASET_FORMAT');
  });

  it('an upload over MAX_DATASET_BYTES: 413', async () => {
    for (const parts of [
      fileParts(Buffer.alloc(9 * MiB, 7)),
      idxParts(Buffer.alloc(5 * MiB), Buffer.alloc(5 * MiB)),
    ]) {
      const body = await expectRejected(parts, 413, 'PAYLOAD_TOO_LARGE');
      expect(body.detail).toContain('MAX_DATASET_BYTES');
    }
  });

  it('malformed requests: 400/415, never 500', async () => {
    const ok = idxLabels([0]);
    await expectRejected([], 400, 'VALIDATION_FAILED');
    await expectRejected([{ name: 'images', filename: 'i', data: ok }], 400, 'VALIDATION_FAILED');
    await expectRejected(
      [...idxParts(ok, ok), { name: 'file', filename: 'a.zip', data: ok }],
      413,
      'PAYLOAD_TOO_LARGE',
    );
    await expectRejected(
      [
        { name: 'file', filename: 'a.zip', data: ok },
        { name: 'images', filename: 'i', data: ok },
      ],
      400,
      'VALIDATION_FAILED',
    );
    await expectRejected(
      fileParts(ok, 'a.zip', [{ name: 'classNames', data: '{"a":1}' }]),
      400,
      'VALIDATION_FAILED',
    );
    await expectRejected(
      fileParts(ok, 'a.zip', [{ name: 'classNames', data: '[1,2' }]),
      400,
      'VALIDATION_FAILED',
    );
    await expectRejected(fileParts(ok, 'a.zip', [{ name: 'colour', data: 'red' }]), 400, 'VALIDATION_FAILED');
    await expectRejected(fileParts(ok, 'a.zip', [{ name: 'name', data: '   ' }]), 400, 'VALIDATION_FAILED');
    await expectRejected([{ name: 'file', data: 'not a file part' }], 400, 'VALIDATION_FAILED');
    await expectRejected([{ name: 'other', filename: 'x', data: ok }], 400, 'VALIDATION_FAILED');
    const json = await t.app.inject({
      method: 'POST',
      url: '/v1/datasets',
      headers: { ...t.auth, 'content-type': 'application/json' },
      payload: '{}',
    });
    expect(json.statusCode).toBe(415);
    const broken = await t.app.inject({
      method: 'POST',
      url: '/v1/datasets',
      headers: { ...t.auth, 'content-type': 'multipart/form-data; boundary=xyz' },
      payload: '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
    });
    expect(broken.statusCode).toBe(400);
    expect(broken.json().code).toBe('INVALID_MULTIPART');
    expectMatchesSpec('POST', '/v1/datasets', broken);
    expect((await storeState()).tmp).toEqual([]);
  });
});

describe('streaming a >= 100 MiB IDX upload', () => {
  let big: TestApp;
  let dir: string;
  beforeAll(async () => {
    big = await createTestApp();
    dir = await mkdtemp(path.join(os.tmpdir(), 'idx-big-'));
  });
  afterAll(async () => {
    await big?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function writeStreamed(
    file: string,
    header: Buffer,
    total: number,
    fill: (chunk: Buffer, offset: number) => void,
  ) {
    const out = createWriteStream(file);
    const write = (b: Buffer) =>
      new Promise<void>((resolve, reject) => {
        out.write(b, (err) => (err ? reject(err) : resolve()));
      });
    await write(header);
    const chunk = Buffer.alloc(MiB);
    for (let offset = 0; offset < total; offset += chunk.length) {
      const n = Math.min(chunk.length, total - offset);
      fill(chunk, offset);
      await write(Buffer.from(chunk.subarray(0, n)));
    }
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
  }

  it('keeps the server RSS within 64 MB of its baseline', { timeout: 120_000 }, async () => {
    const count = 134_000; // x 784 bytes = 105 MB > 100 MiB
    const imagesPath = path.join(dir, 'images-idx3-ubyte');
    const labelsPath = path.join(dir, 'labels-idx1-ubyte');
    const imgHead = idxImages(count, 28, 28, Buffer.alloc(0));
    await writeStreamed(imagesPath, imgHead, count * 784, (c, off) => {
      for (let i = 0; i < c.length; i++) c[i] = (off + i) % 251;
    });
    const labelHead = Buffer.alloc(8);
    labelHead.writeUInt32BE(0x00000801, 0);
    labelHead.writeUInt32BE(count, 4);
    await writeStreamed(labelsPath, labelHead, count, (c, off) => {
      for (let i = 0; i < c.length; i++) c[i] = (off + i) % 10;
    });
    expect((await stat(imagesPath)).size).toBeGreaterThanOrEqual(100 * MiB);

    await big.app.listen({ port: 0, host: '127.0.0.1' });
    const address = big.app.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;

    (globalThis as { gc?: () => void }).gc?.();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    let samples = 0;
    const timer = setInterval(() => {
      samples++;
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    const started = Date.now();
    const { code, stdout, stderr } = await new Promise<{
      code: number | null;
      stdout: string;
      stderr: string;
    }>((resolve, reject) => {
      const child = spawn('curl', [
        '-sS',
        '-F',
        `images=@${imagesPath}`,
        '-F',
        `labels=@${labelsPath}`,
        '-F',
        'name=big-idx',
        '-H',
        `authorization: Bearer ${big.adminKey}`,
        `http://127.0.0.1:${port}/v1/datasets`,
      ]);
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      child.on('error', reject);
      child.on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
    });
    clearInterval(timer);
    peak = Math.max(peak, process.memoryUsage().rss);
    const seconds = (Date.now() - started) / 1000;
    expect(code, stderr).toBe(0);
    const body = JSON.parse(stdout);
    expect(body, stdout).toMatchObject({
      format: 'idx',
      count,
      width: 28,
      height: 28,
      channels: 1,
      name: 'big-idx',
    });
    const growth = (peak - baseline) / MiB;
    console.log(
      `100 MiB IDX upload: ${seconds.toFixed(1)} s, RSS growth ${growth.toFixed(1)} MiB (${samples} samples)`,
    );
    expect(growth).toBeLessThan(64);
    // The sampler really ran while the server was busy with the upload.
    expect(samples).toBeGreaterThanOrEqual(10);
    const row = await big.db.prisma.dataset.findUnique({ where: { id: body.id } });
    expect(row?.count).toBe(count);
    expect(body.classes.map((c: { count: number }) => c.count).reduce((a: number, b: number) => a + b)).toBe(
      count,
    );
    // Spot-check the canonical file against the generator.
    const ds = await openCanonicalDataset(big.blobs.pathOf(body.blobSha256));
    const s = await ds.readSamples(count - 1, 1);
    const base = (count - 1) * 784;
    expect(s.pixels[0]).toBe(base % 251);
    expect(s.pixels[783]).toBe((base + 783) % 251);
    expect(s.labels[0]).toBe((count - 1) % 10);
    await ds.close();
    expect(await readdir(path.join(big.dataDir, 'tmp'))).toEqual([]);
  });
});
