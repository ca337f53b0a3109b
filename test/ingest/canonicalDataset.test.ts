import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CanonicalDatasetWriter,
  canonicalLayout,
  openCanonicalDataset,
} from '../../src/ingest/canonicalDataset.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'invds-test-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe('canonical dataset file', () => {
  it('has the documented layout: magic, header length, JSON header, aligned sections', async () => {
    const file = path.join(dir, 'a.invds');
    const w = await CanonicalDatasetWriter.create(file, {
      count: 3,
      height: 2,
      width: 2,
      channels: 1,
      dtype: 'uint8',
    });
    await w.writeSamples(0, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
    await w.writeLabels(0, new Int32Array([7, 8, 65535]));
    await w.finish();
    const bytes = await readFile(file);
    expect(bytes.toString('ascii', 0, 8)).toBe('INVDS001');
    const len = bytes.readUInt32LE(8);
    const header = JSON.parse(bytes.toString('utf8', 12, 12 + len));
    expect(header).toEqual({
      version: 1,
      count: 3,
      height: 2,
      width: 2,
      channels: 1,
      dtype: 'uint8',
      pixelsOffset: header.pixelsOffset,
      labelsOffset: header.labelsOffset,
    });
    expect(header.pixelsOffset % 8).toBe(0);
    expect(header.labelsOffset % 8).toBe(0);
    expect(header.pixelsOffset).toBeGreaterThanOrEqual(12 + len);
    expect([...bytes.subarray(header.pixelsOffset, header.pixelsOffset + 12)]).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ]);
    expect(header.labelsOffset).toBe(Math.ceil((header.pixelsOffset + 12) / 8) * 8);
    expect(bytes.readInt32LE(header.labelsOffset + 8)).toBe(65535);
    expect(bytes.length).toBe(header.labelsOffset + 12);
  });

  it('round-trips uint8 and float32 samples written out of order, with positioned reads', async () => {
    for (const dtype of ['uint8', 'float32'] as const) {
      const file = path.join(dir, `b-${dtype}.invds`);
      const shape = { count: 5, height: 3, width: 2, channels: 3, dtype };
      const per = 3 * 2 * 3;
      const all = dtype === 'uint8' ? new Uint8Array(5 * per) : new Float32Array(5 * per);
      for (let i = 0; i < all.length; i++) all[i] = dtype === 'uint8' ? (i * 7) % 256 : (i % 101) / 100;
      const w = await CanonicalDatasetWriter.create(file, shape);
      for (const s of [4, 0, 2, 1, 3]) await w.writeSamples(s, all.subarray(s * per, (s + 1) * per));
      await w.writeLabels(3, new Int32Array([3, 4]));
      await w.writeLabels(0, new Int32Array([0, 1, 2]));
      await w.finish();

      const ds = await openCanonicalDataset(file);
      expect(ds.meta).toMatchObject(shape);
      const batch = await ds.readSamples(1, 3);
      expect(batch.pixels).toBeInstanceOf(dtype === 'uint8' ? Uint8Array : Float32Array);
      expect([...batch.pixels]).toEqual([...all.subarray(per, 4 * per)]);
      expect([...batch.labels]).toEqual([1, 2, 3]);
      const tail = await ds.readSamples(4, 10);
      expect(tail.labels.length).toBe(1);
      expect([...(await ds.readLabels())]).toEqual([0, 1, 2, 3, 4]);
      await ds.close();
    }
  });

  it('refuses an incomplete file and removes it', async () => {
    const file = path.join(dir, 'c.invds');
    const w = await CanonicalDatasetWriter.create(file, {
      count: 2,
      height: 1,
      width: 1,
      channels: 1,
      dtype: 'uint8',
    });
    await w.writeSamples(0, new Uint8Array([1]));
    await expect(w.finish()).rejects.toThrow(/incomplete/);
    await expect(readFile(file)).rejects.toThrow();
  });

  it('rejects files that are not canonical datasets', async () => {
    const file = path.join(dir, 'd.invds');
    await writeFile(file, 'hello world, not a dataset');
    await expect(openCanonicalDataset(file)).rejects.toThrow(/bad magic/);
    const meta = canonicalLayout({ count: 1, height: 1, width: 1, channels: 1, dtype: 'uint8' });
    const w = await CanonicalDatasetWriter.create(path.join(dir, 'e.invds'), meta);
    await w.writeSamples(0, new Uint8Array([9]));
    await w.writeLabels(0, new Int32Array([1]));
    await w.finish();
    const bytes = await readFile(path.join(dir, 'e.invds'));
    await writeFile(file, bytes.subarray(0, bytes.length - 2));
    await expect(openCanonicalDataset(file)).rejects.toThrow(/header implies/);
  });
});
