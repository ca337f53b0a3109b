// The canonical stored form of a dataset: decoded once at upload, read by the evaluation
// engine with positioned reads (never the whole file in memory).
//
// Layout (all integers little-endian):
//   bytes 0..7   ASCII magic "INVDS001"
//   bytes 8..11  uint32 L: length of the UTF-8 JSON header that follows
//   bytes 12..   header {"version":1,"count":N,"height":H,"width":W,"channels":C,
//                        "dtype":"uint8"|"float32","pixelsOffset":P,"labelsOffset":Q}
//   byte P       pixels: N samples of H x W x C (HWC, row-major); uint8 0..255 or float32 in [0,1]
//   byte Q       labels: N x int32
// P and Q are multiples of 8; the bytes between sections are zero; the file ends at Q + 4N.

import { type FileHandle, open, rm } from 'node:fs/promises';
import os from 'node:os';

export const CANONICAL_MAGIC = 'INVDS001';
const MAX_HEADER_BYTES = 64 * 1024;

export type PixelDtype = 'uint8' | 'float32';

export interface CanonicalShape {
  count: number;
  height: number;
  width: number;
  channels: number;
  dtype: PixelDtype;
}

export interface CanonicalMeta extends CanonicalShape {
  version: 1;
  /** Byte offset of the first pixel (multiple of 8). */
  pixelsOffset: number;
  /** Byte offset of the first label (multiple of 8). */
  labelsOffset: number;
}

export interface SampleBatch {
  /** count x H x W x C values, HWC per sample; Float32Array when meta.dtype is float32. */
  pixels: Uint8Array | Float32Array;
  labels: Int32Array;
}

const align8 = (n: number) => Math.ceil(n / 8) * 8;

export function bytesPerValue(dtype: PixelDtype): number {
  return dtype === 'float32' ? 4 : 1;
}

/** Bytes of one sample's pixels. */
export function sampleBytes(shape: CanonicalShape): number {
  return shape.height * shape.width * shape.channels * bytesPerValue(shape.dtype);
}

function assertLittleEndianHost() {
  if (os.endianness() !== 'LE') throw new Error('the canonical dataset format needs a little-endian host');
}

function headerJson(meta: CanonicalMeta): string {
  return JSON.stringify({
    version: meta.version,
    count: meta.count,
    height: meta.height,
    width: meta.width,
    channels: meta.channels,
    dtype: meta.dtype,
    pixelsOffset: meta.pixelsOffset,
    labelsOffset: meta.labelsOffset,
  });
}

/** Offsets for a shape. The header's length depends on the offsets' digits, so iterate to a fixpoint. */
export function canonicalLayout(shape: CanonicalShape): CanonicalMeta {
  const pixelBytes = shape.count * sampleBytes(shape);
  let meta: CanonicalMeta = { version: 1, ...shape, pixelsOffset: 0, labelsOffset: 0 };
  for (let i = 0; i < 5; i++) {
    const headerLen = Buffer.byteLength(headerJson(meta), 'utf8');
    const pixelsOffset = align8(12 + headerLen);
    const labelsOffset = align8(pixelsOffset + pixelBytes);
    if (pixelsOffset === meta.pixelsOffset && labelsOffset === meta.labelsOffset) return meta;
    meta = { ...meta, pixelsOffset, labelsOffset };
  }
  return meta;
}

/** Total file size of a canonical dataset with this layout. */
export function canonicalFileSize(meta: CanonicalMeta): number {
  return meta.labelsOffset + 4 * meta.count;
}

function bytesOf(data: Uint8Array | Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Writes a canonical file of known shape with positioned writes, so samples can arrive in any
 * order (streamed IDX/npz bytes, or archive entries placed at their sorted rank). The file is
 * sized up front; finish() checks that every pixel and label byte was written exactly once in total.
 */
export class CanonicalDatasetWriter {
  private pixelBytesWritten = 0;
  private labelsWritten = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    readonly meta: CanonicalMeta,
    private readonly fh: FileHandle,
  ) {}

  static async create(path: string, shape: CanonicalShape): Promise<CanonicalDatasetWriter> {
    assertLittleEndianHost();
    for (const k of ['count', 'height', 'width', 'channels'] as const) {
      if (!Number.isSafeInteger(shape[k]) || shape[k] < (k === 'count' ? 0 : 1)) {
        throw new Error(`invalid canonical shape: ${k}=${shape[k]}`);
      }
    }
    const meta = canonicalLayout(shape);
    const fh = await open(path, 'wx');
    try {
      const header = Buffer.from(headerJson(meta), 'utf8');
      const prefix = Buffer.alloc(12);
      prefix.write(CANONICAL_MAGIC, 0, 'ascii');
      prefix.writeUInt32LE(header.length, 8);
      await fh.truncate(canonicalFileSize(meta));
      await fh.write(Buffer.concat([prefix, header]), 0, 12 + header.length, 0);
    } catch (err) {
      await fh.close();
      await rm(path, { force: true });
      throw err;
    }
    return new CanonicalDatasetWriter(path, meta, fh);
  }

  get sampleBytes(): number {
    return sampleBytes(this.meta);
  }

  get pixelSectionBytes(): number {
    return this.meta.count * this.sampleBytes;
  }

  private async writeAt(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, position + done);
      done += bytesWritten;
    }
  }

  /** Raw pixel bytes at a byte offset inside the pixel section (for streamed sources). */
  async writePixelBytes(offset: number, data: Uint8Array): Promise<void> {
    if (offset < 0 || offset + data.length > this.pixelSectionBytes) {
      throw new RangeError(`pixel bytes ${offset}+${data.length} outside the pixel section`);
    }
    await this.writeAt(data, this.meta.pixelsOffset + offset);
    this.pixelBytesWritten += data.length;
  }

  /** Whole samples starting at sample index `start`. */
  async writeSamples(start: number, pixels: Uint8Array | Float32Array): Promise<void> {
    const expected = this.meta.dtype === 'float32' ? Float32Array : Uint8Array;
    if (!(pixels instanceof expected)) throw new TypeError(`pixels must be ${expected.name}`);
    if (pixels.byteLength % this.sampleBytes !== 0) throw new RangeError('not a whole number of samples');
    await this.writePixelBytes(start * this.sampleBytes, bytesOf(pixels));
  }

  async writeLabels(start: number, labels: Int32Array): Promise<void> {
    if (start < 0 || start + labels.length > this.meta.count) {
      throw new RangeError(`labels ${start}+${labels.length} outside 0..${this.meta.count}`);
    }
    await this.writeAt(bytesOf(labels), this.meta.labelsOffset + 4 * start);
    this.labelsWritten += labels.length;
  }

  /** Flushes and closes; throws if not every sample and label was written. */
  async finish(): Promise<CanonicalMeta> {
    if (this.pixelBytesWritten !== this.pixelSectionBytes || this.labelsWritten !== this.meta.count) {
      await this.abort();
      throw new Error(
        `canonical dataset incomplete: ${this.pixelBytesWritten}/${this.pixelSectionBytes} pixel bytes, ` +
          `${this.labelsWritten}/${this.meta.count} labels`,
      );
    }
    this.closed = true;
    await this.fh.sync();
    await this.fh.close();
    return this.meta;
  }

  /** Closes and removes the file (idempotent). */
  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.fh.close().catch(() => undefined);
    }
    await rm(this.path, { force: true });
  }
}

export interface CanonicalDataset {
  readonly path: string;
  readonly meta: CanonicalMeta;
  /** Samples [start, start+count) with their labels; count is clipped to the end of the dataset. */
  readSamples(start: number, count: number): Promise<SampleBatch>;
  /** All N labels (4N bytes). */
  readLabels(): Promise<Int32Array>;
  close(): Promise<void>;
}

export class CanonicalFormatError extends Error {}

function parseMeta(json: unknown, fileSize: number): CanonicalMeta {
  const fail = (why: string): never => {
    throw new CanonicalFormatError(`not a canonical dataset: ${why}`);
  };
  if (typeof json !== 'object' || json === null) return fail('header is not an object');
  const h = json as Record<string, unknown>;
  if (h.version !== 1) fail(`unsupported version ${String(h.version)}`);
  const ints = ['count', 'height', 'width', 'channels', 'pixelsOffset', 'labelsOffset'] as const;
  for (const k of ints) {
    const v = h[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`bad ${k}`);
  }
  if (h.dtype !== 'uint8' && h.dtype !== 'float32') fail(`bad dtype ${String(h.dtype)}`);
  const meta: CanonicalMeta = {
    version: 1,
    count: h.count as number,
    height: h.height as number,
    width: h.width as number,
    channels: h.channels as number,
    dtype: h.dtype as PixelDtype,
    pixelsOffset: h.pixelsOffset as number,
    labelsOffset: h.labelsOffset as number,
  };
  if (meta.pixelsOffset % 8 !== 0 || meta.labelsOffset % 8 !== 0) fail('offsets not aligned to 8');
  if (meta.height < 1 || meta.width < 1 || meta.channels < 1) fail('empty sample shape');
  if (meta.labelsOffset < meta.pixelsOffset + meta.count * sampleBytes(meta)) fail('sections overlap');
  if (canonicalFileSize(meta) !== fileSize) {
    fail(`file is ${fileSize} bytes, header implies ${canonicalFileSize(meta)}`);
  }
  return meta;
}

async function readExactly(fh: FileHandle, target: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await fh.read(target, done, target.length - done, position + done);
    if (bytesRead === 0) throw new CanonicalFormatError('unexpected end of canonical dataset file');
    done += bytesRead;
  }
}

/** Reads the header of a canonical dataset file (magic, JSON, offsets, size) without loading it. */
export async function openCanonicalDataset(path: string): Promise<CanonicalDataset> {
  assertLittleEndianHost();
  const fh = await open(path, 'r');
  let meta: CanonicalMeta;
  try {
    const { size } = await fh.stat();
    const prefix = Buffer.alloc(12);
    if (size < 12) throw new CanonicalFormatError('not a canonical dataset: file too short');
    await readExactly(fh, prefix, 0);
    if (prefix.toString('ascii', 0, 8) !== CANONICAL_MAGIC) {
      throw new CanonicalFormatError('not a canonical dataset: bad magic');
    }
    const len = prefix.readUInt32LE(8);
    if (len > MAX_HEADER_BYTES || 12 + len > size) {
      throw new CanonicalFormatError('not a canonical dataset: bad header length');
    }
    const header = Buffer.alloc(len);
    await readExactly(fh, header, 12);
    let json: unknown;
    try {
      json = JSON.parse(header.toString('utf8'));
    } catch {
      throw new CanonicalFormatError('not a canonical dataset: header is not JSON');
    }
    meta = parseMeta(json, size);
  } catch (err) {
    await fh.close();
    throw err;
  }
  const perSample = sampleBytes(meta);
  let closed = false;
  const ensureOpen = () => {
    if (closed) throw new Error('canonical dataset is closed');
  };

  return {
    path,
    meta,
    async readSamples(start: number, count: number): Promise<SampleBatch> {
      ensureOpen();
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 0) {
        throw new RangeError(`invalid sample range ${start}+${count}`);
      }
      const n = Math.max(0, Math.min(count, meta.count - start));
      const pixelBuf = new ArrayBuffer(n * perSample);
      await readExactly(fh, new Uint8Array(pixelBuf), meta.pixelsOffset + start * perSample);
      const labelBuf = new ArrayBuffer(n * 4);
      await readExactly(fh, new Uint8Array(labelBuf), meta.labelsOffset + start * 4);
      return {
        pixels: meta.dtype === 'float32' ? new Float32Array(pixelBuf) : new Uint8Array(pixelBuf),
        labels: new Int32Array(labelBuf),
      };
    },
    async readLabels(): Promise<Int32Array> {
      ensureOpen();
      const buf = new ArrayBuffer(meta.count * 4);
      await readExactly(fh, new Uint8Array(buf), meta.labelsOffset);
      return new Int32Array(buf);
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await fh.close();
    },
  };
}
