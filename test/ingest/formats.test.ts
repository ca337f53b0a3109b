// The format readers on their own (no HTTP): pixels and labels land in the canonical file exactly.
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCanonicalDataset } from '../../src/ingest/canonicalDataset.js';
import { IngestError, type IngestLimits, ingestDataset, looksLikeTar } from '../../src/ingest/index.js';
import { parseNpyHeaderText } from '../../src/ingest/npz.js';
import { isJunkPath, safeEntrySegments } from '../../src/ingest/paths.js';
import { encodeImage, idxImages, idxLabels, npy, npz, tarFile, zipFile } from '../helpers/datasetFiles.js';

const limits: IngestLimits = {
  maxDatasetImages: 10_000,
  maxUncompressedBytes: 64 * 1024 * 1024,
  maxImagePixels: 4096 * 4096,
  maxArchiveEntries: 10_000,
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ingest-test-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

async function put(data: Buffer): Promise<string> {
  const p = path.join(dir, randomUUID());
  await writeFile(p, data);
  return p;
}

async function ingestFile(
  data: Buffer,
  opts: { filename?: string; classNames?: string[]; limits?: IngestLimits } = {},
) {
  const out = path.join(dir, `${randomUUID()}.invds`);
  const result = await ingestDataset({ kind: 'file', path: await put(data), filename: opts.filename }, out, {
    limits: opts.limits ?? limits,
    classNames: opts.classNames,
  });
  const ds = await openCanonicalDataset(out);
  const all = await ds.readSamples(0, ds.meta.count);
  await ds.close();
  return { result, ...all, out };
}

async function expectIngestError(promise: Promise<unknown>, code: string): Promise<IngestError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IngestError);
  expect((err as IngestError).code).toBe(code);
  return err as IngestError;
}

const FIXTURES = path.resolve(import.meta.dirname, '..', 'fixtures');

describe('IDX', () => {
  it('streams the Fashion-MNIST fixture (gzip) into the canonical file byte for byte', async () => {
    const out = path.join(dir, 'fmnist.invds');
    const imagesPath = path.join(FIXTURES, 'fmnist-test-1k-images-idx3-ubyte.gz');
    const labelsPath = path.join(FIXTURES, 'fmnist-test-1k-labels-idx1-ubyte.gz');
    const r = await ingestDataset({ kind: 'idx', imagesPath, labelsPath }, out, { limits });
    expect(r.format).toBe('idx');
    expect(r.meta).toMatchObject({ count: 1000, height: 28, width: 28, channels: 1, dtype: 'uint8' });
    const raw = gunzipSync(await readFile(imagesPath)).subarray(16);
    const labels = gunzipSync(await readFile(labelsPath)).subarray(8);
    const ds = await openCanonicalDataset(out);
    const all = await ds.readSamples(0, 1000);
    expect(Buffer.from(all.pixels.buffer).equals(raw)).toBe(true);
    expect([...all.labels]).toEqual([...labels]);
    await ds.close();
  });

  it('accepts [N,H,W,C] images (magic 0x00000804)', async () => {
    const head = Buffer.alloc(20);
    head.writeUInt32BE(0x00000804, 0);
    [2, 2, 1, 3].forEach((d, i) => {
      head.writeUInt32BE(d, 4 + 4 * i);
    });
    const pixels = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const out = path.join(dir, 'hwc.invds');
    const r = await ingestDataset(
      {
        kind: 'idx',
        imagesPath: await put(Buffer.concat([head, pixels])),
        labelsPath: await put(idxLabels([1, 0])),
      },
      out,
      { limits },
    );
    expect(r.meta).toMatchObject({ count: 2, height: 2, width: 1, channels: 3 });
    expect(r.classes).toEqual([
      { index: 0, name: '0', count: 1 },
      { index: 1, name: '1', count: 1 },
    ]);
  });

  it('rejects a file longer than its dims and a float IDX', async () => {
    const run = async (images: Buffer) =>
      ingestDataset(
        { kind: 'idx', imagesPath: await put(images), labelsPath: await put(idxLabels([0])) },
        path.join(dir, `${randomUUID()}.invds`),
        { limits },
      );
    const e1 = await expectIngestError(run(idxImages(1, 2, 2, Buffer.alloc(5))), 'INVALID_DATASET');
    expect(e1.message).toMatch(/longer/);
    const e2 = await expectIngestError(
      run(idxImages(1, 2, 2, Buffer.alloc(16), 0x00000d03)),
      'INVALID_DATASET',
    );
    expect(e2.message).toMatch(/float/);
  });
});

describe('npz', () => {
  it('reads uint8 [N,H,W] with int64 labels', async () => {
    const x = Buffer.from(Array.from({ length: 3 * 2 * 2 }, (_, i) => i * 10));
    const y = Buffer.alloc(24);
    [2, 0, 2].forEach((v, i) => {
      y.writeBigInt64LE(BigInt(v), 8 * i);
    });
    const r = await ingestFile(npz({ x: npy('|u1', [3, 2, 2], x), y: npy('<i8', [3], y) }));
    expect(r.result.format).toBe('npz');
    expect(r.result.meta).toMatchObject({ count: 3, height: 2, width: 2, channels: 1, dtype: 'uint8' });
    expect([...r.pixels]).toEqual([...x]);
    expect([...r.labels]).toEqual([2, 0, 2]);
    expect(r.result.classes.map((c) => c.count)).toEqual([1, 0, 2]);
  });

  it('keeps float32 [N,H,W,C] as float32 (stored entries)', async () => {
    const values = new Float32Array(2 * 2 * 2 * 3).map((_, i) => i / 23);
    const y = Buffer.from(new Uint16Array([1, 0]).buffer);
    const r = await ingestFile(
      npz({ x: npy('<f4', [2, 2, 2, 3], Buffer.from(values.buffer)), y: npy('<u2', [2], y) }, 'store'),
      { classNames: ['a', 'b'] },
    );
    expect(r.result.meta).toMatchObject({ count: 2, height: 2, width: 2, channels: 3, dtype: 'float32' });
    expect(r.pixels).toBeInstanceOf(Float32Array);
    expect([...r.pixels]).toEqual([...values]);
    expect(r.result.classes).toEqual([
      { index: 0, name: 'a', count: 1 },
      { index: 1, name: 'b', count: 1 },
    ]);
  });

  it('reads a .npy pair (images + labels) into the same canonical file as the npz', async () => {
    const values = new Float32Array(2 * 3 * 2 * 4).map((_, i) => i / 47);
    const x = npy('<f4', [2, 3, 2, 4], Buffer.from(values.buffer));
    const y = npy('<i4', [2], Buffer.from(new Int32Array([1, 1]).buffer));
    const viaNpz = await ingestFile(npz({ x, y }));
    const out = path.join(dir, `${randomUUID()}.invds`);
    const pair = await ingestDataset(
      { kind: 'idx', imagesPath: await put(x), labelsPath: await put(y) },
      out,
      {
        limits,
      },
    );
    expect(pair).toEqual(viaNpz.result);
    expect(pair.meta).toMatchObject({ count: 2, height: 3, width: 2, channels: 4, dtype: 'float32' });
    expect((await readFile(out)).equals(await readFile(viaNpz.out))).toBe(true);
  });

  it('refuses bad dtypes and layouts with a reason', async () => {
    const y = npy('|u1', [1], Buffer.from([0]));
    const cases: Array<[Buffer, RegExp]> = [
      [npy('<f8', [1, 1, 1], Buffer.alloc(8)), /float64|<f8/],
      [npy('>f4', [1, 1, 1], Buffer.alloc(4)), /big-endian/],
      [npy('|O', [1, 1, 1], Buffer.alloc(8)), /object/],
      [npy('|u1', [1, 1, 1], Buffer.alloc(1), { fortran: true }), /fortran/],
      [npy('|u1', [1, 1], Buffer.alloc(1)), /shape/],
      [npy('|u1', [1, 2, 2], Buffer.alloc(3)), /truncated/],
      [npy('<f4', [1, 1, 1], Buffer.from(new Float32Array([1.5]).buffer)), /outside \[0, 1\]/],
      [npy('<f4', [1, 1, 1], Buffer.from(new Float32Array([Number.NaN]).buffer)), /NaN/],
      [Buffer.from('not an npy at all'), /magic/],
    ];
    for (const [x, reason] of cases) {
      const err = await expectIngestError(ingestFile(npz({ x, y })), 'INVALID_DATASET');
      expect(err.message).toMatch(reason);
    }
    const bool = await expectIngestError(
      ingestFile(npz({ x: npy('|u1', [1, 1, 1], Buffer.alloc(1)), y: npy('|b1', [1], Buffer.from([1])) })),
      'INVALID_DATASET',
    );
    expect(bool.message).toMatch(/integers/);
    const missing = await expectIngestError(
      ingestFile(npz({ x: npy('|u1', [1, 1, 1], Buffer.alloc(1)) }), { filename: 'a.npz' }),
      'INVALID_DATASET',
    );
    expect(missing.message).toMatch(/"x" and "y"/);
  });

  it('parses npy header literals', () => {
    expect(
      parseNpyHeaderText("{'descr': '<u1', 'fortran_order': False, 'shape': (3, 28, 28), }", 'x'),
    ).toEqual({
      descr: '<u1',
      fortranOrder: false,
      shape: [3, 28, 28],
    });
    expect(parseNpyHeaderText("{'descr':'<i8','fortran_order':True,'shape':(5,)}", 'y').shape).toEqual([5]);
    expect(() =>
      parseNpyHeaderText("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", 'x'),
    ).toThrow(/structured/);
    expect(() => parseNpyHeaderText("{'descr': '<u1', 'shape': (1,", 'x')).toThrow(/bad .npy header/);
  });
});

describe('image archives', () => {
  const px = (n: number, seed: number) =>
    Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 17) % 256));

  it('zip of greyscale PNGs: classes in sorted order, samples sorted, pixels exact', async () => {
    const a0 = px(12, 1);
    const a1 = px(12, 2);
    const b0 = px(12, 3);
    const zip = zipFile([
      { name: 'zebra/', dir: true },
      { name: 'zebra/2.png', data: await encodeImage(b0, 4, 3, 1, 'png') },
      { name: 'apple/b.png', data: await encodeImage(a1, 4, 3, 1, 'png') },
      { name: 'apple/a.png', data: await encodeImage(a0, 4, 3, 1, 'png') },
      { name: 'apple/.DS_Store', data: Buffer.from('junk') },
      { name: '__MACOSX/apple/._a.png', data: Buffer.from('junk') },
      { name: 'apple/notes.txt', data: Buffer.from('not an image') },
      { name: 'empty/', dir: true },
    ]);
    const r = await ingestFile(zip);
    expect(r.result.format).toBe('zip');
    expect(r.result.meta).toMatchObject({ count: 3, height: 3, width: 4, channels: 1, dtype: 'uint8' });
    expect(r.result.classes).toEqual([
      { index: 0, name: 'apple', count: 2 },
      { index: 1, name: 'empty', count: 0 },
      { index: 2, name: 'zebra', count: 1 },
    ]);
    expect(Buffer.from(r.pixels.buffer).equals(Buffer.concat([a0, a1, b0]))).toBe(true);
    expect([...r.labels]).toEqual([0, 0, 2]);
  });

  it('tar.gz with a wrapper folder, RGB + grey + JPEG + WebP, sizes differing -> resized to the first', async () => {
    const rgb = px(4 * 4 * 3, 5);
    const tgz = await tarFile(
      [
        { name: 'data/', type: 'directory' },
        { name: 'data/cat/', type: 'directory' },
        { name: 'data/cat/01.png', data: await encodeImage(rgb, 4, 4, 3, 'png') },
        { name: 'data/cat/02.jpg', data: await encodeImage(px(8 * 6 * 3, 6), 8, 6, 3, 'jpeg') },
        { name: 'data/dog/01.webp', data: await encodeImage(px(4 * 4, 7), 4, 4, 1, 'webp') },
        { name: 'data/dog/Thumbs.db', data: Buffer.from('junk') },
      ],
      true,
    );
    const r = await ingestFile(tgz, { classNames: ['Cat', 'Dog', 'Bird'] });
    expect(r.result.format).toBe('tar');
    expect(r.result.meta).toMatchObject({ count: 3, height: 4, width: 4, channels: 3 });
    expect(r.result.classes).toEqual([
      { index: 0, name: 'Cat', count: 2 },
      { index: 1, name: 'Dog', count: 1 },
      { index: 2, name: 'Bird', count: 0 },
    ]);
    expect(Buffer.from(r.pixels.buffer, 0, 48).equals(rgb)).toBe(true);
    // The lossless greyscale WebP becomes R=G=B.
    const grey = px(16, 7);
    const third = Buffer.from(r.pixels.buffer, 96, 48);
    for (let i = 0; i < 16; i++)
      expect([third[3 * i], third[3 * i + 1], third[3 * i + 2]]).toEqual(Array(3).fill(grey[i]));
    expect([...r.labels]).toEqual([0, 0, 1]);
  });

  it('plain tar, and transparency flattened onto black', async () => {
    const rgba = Buffer.from([255, 0, 0, 0, 0, 255, 0, 255, 0, 0, 255, 128, 10, 20, 30, 255]);
    const tar = await tarFile([{ name: 'x/a.png', data: await encodeImage(rgba, 2, 2, 4, 'png') }]);
    expect(looksLikeTar(tar)).toBe(true);
    const r = await ingestFile(tar);
    expect(r.result.meta.channels).toBe(3);
    expect([...r.pixels]).toEqual([0, 0, 0, 0, 255, 0, 0, 0, 128, 10, 20, 30]);
  });

  it('refuses layouts that are not one folder per class', async () => {
    const png = await encodeImage(px(4, 1), 2, 2, 1, 'png');
    const loose = await expectIngestError(
      ingestFile(zipFile([{ name: 'a.png', data: png }])),
      'INVALID_DATASET',
    );
    expect(loose.entry).toBe('a.png');
    await expectIngestError(
      ingestFile(
        zipFile([
          { name: 'a/b.png', data: png },
          { name: 'a/b/c/d.png', data: png },
        ]),
      ),
      'INVALID_DATASET',
    );
    await expectIngestError(ingestFile(zipFile([{ name: 'a/readme.txt', data: png }])), 'INVALID_DATASET');
  });

  it('checks entry names', () => {
    expect(safeEntrySegments('./a//b/c.png')).toEqual(['a', 'b', 'c.png']);
    for (const bad of ['../x.png', 'a/../../x.png', '/etc/passwd', 'C:/x.png', 'a\\..\\..\\x.png']) {
      expect(() => safeEntrySegments(bad)).toThrow(/archive entry/);
    }
    expect(isJunkPath(['__MACOSX', 'a', '._b.png'])).toBe(true);
    expect(isJunkPath(['a', 'Thumbs.db'])).toBe(true);
    expect(isJunkPath(['a', 'b.png'])).toBe(false);
  });

  it('leaves no output file when it fails', async () => {
    const out = path.join(dir, 'never.invds');
    await expect(
      ingestDataset(
        { kind: 'file', path: await put(zipFile([{ name: 'a/b.png', data: Buffer.from('xx') }])) },
        out,
        {
          limits,
        },
      ),
    ).rejects.toBeInstanceOf(IngestError);
    await expect(stat(out)).rejects.toThrow();
  });
});
