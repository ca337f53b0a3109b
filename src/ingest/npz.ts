// NumPy arrays: an .npz (a zip of .npy files) with arrays `x` (uint8, or float32 in [0,1];
// [N,H,W] or [N,H,W,C], C in 1..4) and `y` (integer labels, [N]), or the same two arrays as a
// pair of .npy files (the `images` and `labels` parts). Both arrays are streamed into the
// canonical file, so memory does not depend on N.
import { CanonicalDatasetWriter, type CanonicalMeta } from './canonicalDataset.js';
import { checkDatasetShape, type IngestLimits, invalid, pickError } from './errors.js';
import { buildClasses, type ClassInfo, LabelCounter, labelOutOfRange, MAX_LABEL } from './labels.js';
import { type ByteBudget, ChunkReader, openMaybeGunzip, type PairIngestOptions } from './streams.js';
import { type ZipArchive, type ZipEntryInfo, zipError } from './zip.js';

export const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
const MAX_NPY_HEADER = 64 * 1024;

// ---- a parser for the Python literal in the .npy header (dicts, tuples, lists, str, int, bool)

type PyValue = string | number | boolean | null | PyValue[] | { [k: string]: PyValue };

class PyLiteralParser {
  private i = 0;
  constructor(private readonly s: string) {}

  parse(): PyValue {
    const v = this.value();
    this.ws();
    if (this.i !== this.s.length) throw new Error(`unexpected "${this.s.slice(this.i, this.i + 10)}"`);
    return v;
  }

  private ws() {
    while (this.i < this.s.length && /\s/.test(this.s[this.i])) this.i++;
  }

  private value(): PyValue {
    this.ws();
    const c = this.s[this.i];
    if (c === '{') return this.dict();
    if (c === '(') return this.seq('(', ')');
    if (c === '[') return this.seq('[', ']');
    if (c === "'" || c === '"') return this.str();
    const word = /^(True|False|None|-?\d+L?)/.exec(this.s.slice(this.i));
    if (!word) throw new Error(`unexpected "${this.s.slice(this.i, this.i + 10)}"`);
    this.i += word[0].length;
    if (word[0] === 'True') return true;
    if (word[0] === 'False') return false;
    if (word[0] === 'None') return null;
    const n = Number(word[0].replace('L', ''));
    if (!Number.isSafeInteger(n)) throw new Error(`integer ${word[0]} out of range`);
    return n;
  }

  private str(): string {
    const quote = this.s[this.i++];
    let out = '';
    while (this.i < this.s.length && this.s[this.i] !== quote) {
      if (this.s[this.i] === '\\') this.i++;
      out += this.s[this.i++];
    }
    if (this.s[this.i] !== quote) throw new Error('unterminated string');
    this.i++;
    return out;
  }

  private seq(open: string, close: string): PyValue[] {
    this.i++; // open
    const out: PyValue[] = [];
    for (;;) {
      this.ws();
      if (this.s[this.i] === close) {
        this.i++;
        return out;
      }
      out.push(this.value());
      this.ws();
      if (this.s[this.i] === ',') this.i++;
      else if (this.s[this.i] !== close) throw new Error(`expected "," or "${close}" after ${open}...`);
    }
  }

  private dict(): { [k: string]: PyValue } {
    this.i++;
    const out: { [k: string]: PyValue } = {};
    for (;;) {
      this.ws();
      if (this.s[this.i] === '}') {
        this.i++;
        return out;
      }
      const key = this.value();
      if (typeof key !== 'string') throw new Error('dict keys must be strings');
      this.ws();
      if (this.s[this.i++] !== ':') throw new Error('expected ":"');
      out[key] = this.value();
      this.ws();
      if (this.s[this.i] === ',') this.i++;
      else if (this.s[this.i] !== '}') throw new Error('expected "," or "}"');
    }
  }
}

export interface NpyHeader {
  descr: string;
  fortranOrder: boolean;
  shape: number[];
}

/** Parses the dict literal of a .npy header, e.g. "{'descr': '<u1', 'fortran_order': False, 'shape': (3, 4), }". */
export function parseNpyHeaderText(text: string, what: string): NpyHeader {
  let v: PyValue;
  try {
    v = new PyLiteralParser(text.trim()).parse();
  } catch (err) {
    throw invalid(`${what}: bad .npy header (${(err as Error).message})`, what);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw invalid(`${what}: bad .npy header (not a dict)`, what);
  }
  const { descr, fortran_order: fortran, shape } = v;
  if (typeof descr !== 'string') {
    throw invalid(`${what}: dtype ${JSON.stringify(descr)} is a structured or unknown dtype`, what);
  }
  if (typeof fortran !== 'boolean') throw invalid(`${what}: bad .npy header (fortran_order)`, what);
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && d >= 0)) {
    throw invalid(`${what}: bad .npy header (shape)`, what);
  }
  return { descr, fortranOrder: fortran, shape: shape as number[] };
}

/** Reads the magic, version and header of a .npy stream; leaves the reader at the data. */
export async function readNpyHeader(reader: ChunkReader, what: string): Promise<NpyHeader> {
  const pre = await reader.readExact(8);
  if (!pre.subarray(0, 6).equals(NPY_MAGIC)) throw invalid(`${what}: not a .npy file (bad magic)`, what);
  const major = pre[6];
  let len: number;
  if (major === 1) {
    len = (await reader.readExact(2)).readUInt16LE(0);
  } else if (major === 2 || major === 3) {
    len = (await reader.readExact(4)).readUInt32LE(0);
  } else {
    throw invalid(`${what}: unsupported .npy version ${major}.${pre[7]}`, what);
  }
  if (len > MAX_NPY_HEADER) throw invalid(`${what}: bad .npy header (${len} bytes long)`, what);
  const text = (await reader.readExact(len)).toString(major === 3 ? 'utf8' : 'latin1');
  return parseNpyHeaderText(text, what);
}

export interface NpyDtype {
  kind: string;
  itemSize: number;
  byteOrder: '<' | '>' | '|' | '=';
}

export function parseDescr(descr: string, what: string): NpyDtype {
  const m = /^([<>|=]?)([a-zA-Z])(\d+)$/.exec(descr);
  if (!m) throw invalid(`${what}: unsupported dtype "${descr}"`, what);
  return { byteOrder: (m[1] || '=') as NpyDtype['byteOrder'], kind: m[2], itemSize: Number(m[3]) };
}

function checkLayout(h: NpyHeader, dt: NpyDtype, what: string) {
  if (h.fortranOrder) {
    throw invalid(`${what}: fortran_order arrays are not supported (save a C-order array)`, what);
  }
  if (dt.byteOrder === '>' && dt.itemSize > 1) {
    throw invalid(`${what}: big-endian dtype "${h.descr}" is not supported (use little-endian)`, what);
  }
}

/** The pixel array (`x` in an npz): uint8 or float32. */
function xDtype(h: NpyHeader, what: string): 'uint8' | 'float32' {
  if (h.descr.includes('O')) throw invalid(`${what}: object dtype "${h.descr}" is not supported`, what);
  const dt = parseDescr(h.descr, what);
  checkLayout(h, dt, what);
  if (dt.kind === 'u' && dt.itemSize === 1) return 'uint8';
  if (dt.kind === 'f' && dt.itemSize === 4) return 'float32';
  throw invalid(
    `${what}: dtype "${h.descr}" is not supported (${what} must be uint8, or float32 in [0,1])`,
    what,
  );
}

/** The label array (`y` in an npz): any integer dtype. */
function yDtype(h: NpyHeader, what: string): NpyDtype {
  if (h.descr.includes('O')) throw invalid(`${what}: object dtype "${h.descr}" is not supported`, what);
  const dt = parseDescr(h.descr, what);
  checkLayout(h, dt, what);
  if ((dt.kind === 'i' || dt.kind === 'u') && [1, 2, 4, 8].includes(dt.itemSize)) return dt;
  throw invalid(`${what}: dtype "${h.descr}" is not supported (labels must be integers)`, what);
}

const MAX_LABEL_BIG = BigInt(MAX_LABEL);

/**
 * Reads one little-endian integer label. A 64-bit value outside [0, 65535] is refused here, with
 * its exact value (a Number could not hold every int64); smaller ones are checked by LabelCounter.
 */
function readLabel(buf: Buffer, off: number, dt: NpyDtype, what: string, index: number): number {
  const signed = dt.kind === 'i';
  switch (dt.itemSize) {
    case 1:
      return signed ? buf.readInt8(off) : buf.readUInt8(off);
    case 2:
      return signed ? buf.readInt16LE(off) : buf.readUInt16LE(off);
    case 4:
      return signed ? buf.readInt32LE(off) : buf.readUInt32LE(off);
    default: {
      const v = signed ? buf.readBigInt64LE(off) : buf.readBigUInt64LE(off);
      if (v < 0n || v > MAX_LABEL_BIG) throw labelOutOfRange(v, `${what}[${index}]`);
      return Number(v);
    }
  }
}

export interface NpzIngestResult {
  meta: CanonicalMeta;
  classes: ClassInfo[];
}

/**
 * The shared core of the npz and the .npy-pair paths: a pixel array and a label array, each a
 * .npy stream (`x`/`y` inside an npz, the `images`/`labels` parts of a pair), streamed into the
 * canonical file. `names` name the arrays in messages and in `entry`. On failure the canonical
 * file is removed and the error is thrown as it is (the caller maps it).
 */
async function ingestNpyArrays(opts: {
  xs: ChunkReader;
  ys: ChunkReader;
  names: { x: string; y: string };
  outPath: string;
  limits: IngestLimits;
  classNames?: readonly string[];
}): Promise<NpzIngestResult> {
  const { xs, ys } = opts;
  const { x: xn, y: yn } = opts.names;
  let writer: CanonicalDatasetWriter | null = null;
  try {
    const xh = await readNpyHeader(xs, xn);
    const yh = await readNpyHeader(ys, yn);
    const dtype = xDtype(xh, xn);
    const ydt = yDtype(yh, yn);
    if (xh.shape.length !== 3 && xh.shape.length !== 4) {
      throw invalid(`${xn}: shape (${xh.shape.join(', ')}) is not [N,H,W] or [N,H,W,C]`, xn);
    }
    if (yh.shape.length !== 1) throw invalid(`${yn}: shape (${yh.shape.join(', ')}) is not [N]`, yn);
    const [count, height, width] = xh.shape;
    const channels = xh.shape.length === 4 ? xh.shape[3] : 1;
    if (yh.shape[0] !== count) throw invalid(`${xn} holds ${count} images but ${yn} ${yh.shape[0]} labels`);
    checkDatasetShape(
      { count, height, width, channels, bytesPerValue: dtype === 'float32' ? 4 : 1 },
      opts.limits,
      xn,
    );

    writer = await CanonicalDatasetWriter.create(opts.outPath, { count, height, width, channels, dtype });
    const expected = writer.pixelSectionBytes;
    let offset = 0;
    let carry: Buffer = Buffer.alloc(0);
    for await (const chunk of xs.rest()) {
      if (offset + carry.length + chunk.length > expected) {
        throw invalid(`${xn}: more data than its shape (${xh.shape.join(', ')}) holds`, xn);
      }
      if (dtype === 'uint8') {
        await writer.writePixelBytes(offset, chunk);
        offset += chunk.length;
        continue;
      }
      const data = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      const whole = data.length - (data.length % 4);
      // Copy into an aligned Float32Array to check the range, then write those bytes.
      const values = new Float32Array(whole / 4);
      new Uint8Array(values.buffer).set(data.subarray(0, whole));
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (!(v >= 0 && v <= 1)) {
          throw invalid(`${xn}: float32 value ${v} at flat index ${offset / 4 + i} is outside [0, 1]`, xn);
        }
      }
      await writer.writePixelBytes(offset, new Uint8Array(values.buffer));
      offset += whole;
      carry = Buffer.from(data.subarray(whole));
    }
    if (offset + carry.length < expected) {
      throw invalid(`${xn}: truncated: ${offset + carry.length} of ${expected} data bytes`, xn);
    }

    const counter = new LabelCounter();
    const size = ydt.itemSize;
    let index = 0;
    carry = Buffer.alloc(0);
    for await (const chunk of ys.rest()) {
      const data = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      const n = Math.floor(data.length / size);
      if (index + n > count) throw invalid(`${yn}: more data than its shape (${count}) holds`, yn);
      const batch = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const label = readLabel(data, i * size, ydt, yn, index + i);
        counter.add(label, `${yn}[${index + i}]`);
        batch[i] = label;
      }
      await writer.writeLabels(index, batch);
      index += n;
      carry = Buffer.from(data.subarray(n * size));
    }
    if (index < count || carry.length > 0) throw invalid(`${yn}: truncated: ${index} of ${count} labels`, yn);

    const classes = buildClasses(counter, opts.classNames);
    const meta = await writer.finish();
    writer = null;
    return { meta, classes };
  } catch (err) {
    await writer?.abort();
    throw err;
  }
}

/** An .npz: the zip entries `x.npy` (pixels) and `y.npy` (labels). */
export async function ingestNpz(opts: {
  zip: ZipArchive;
  entries: ZipEntryInfo[];
  outPath: string;
  limits: IngestLimits;
  budget: ByteBudget;
  classNames?: readonly string[];
}): Promise<NpzIngestResult> {
  const find = (name: string) => opts.entries.find((e) => !e.isDirectory && e.segments.join('/') === name);
  const xEntry = find('x.npy');
  const yEntry = find('y.npy');
  if (!xEntry || !yEntry) {
    throw invalid(
      `the .npz must contain arrays "x" and "y" (found: ${
        opts.entries
          .filter((e) => e.name.endsWith('.npy'))
          .map((e) => e.name.replace(/\.npy$/, ''))
          .join(', ') || 'none'
      })`,
    );
  }
  const xs = new ChunkReader(await opts.zip.openStream(xEntry, opts.budget), 'x');
  try {
    const ys = new ChunkReader(await opts.zip.openStream(yEntry, opts.budget), 'y');
    try {
      return await ingestNpyArrays({ ...opts, xs, ys, names: { x: 'x', y: 'y' } });
    } finally {
      await ys.close().catch(() => undefined);
    }
  } catch (err) {
    throw zipError(pickError('npz', err));
  } finally {
    await xs.close().catch(() => undefined);
  }
}

/**
 * A pair of .npy files sent as the `images` and `labels` parts (each raw or gzip): read exactly
 * as an npz's `x.npy` and `y.npy` (same dtype, shape and label rules, limits and error codes),
 * with the part names in messages and `entry`. Both are streamed; gunzipped bytes are charged
 * to the budget as for an IDX pair.
 */
export async function ingestNpyPair(opts: PairIngestOptions): Promise<NpzIngestResult> {
  const xs = new ChunkReader(await openMaybeGunzip(opts.imagesPath, opts.budget, 'images'), 'images');
  try {
    const ys = new ChunkReader(await openMaybeGunzip(opts.labelsPath, opts.budget, 'labels'), 'labels');
    try {
      return await ingestNpyArrays({ ...opts, xs, ys, names: { x: 'images', y: 'labels' } });
    } finally {
      await ys.close().catch(() => undefined);
    }
  } catch (err) {
    throw pickError('npy', err);
  } finally {
    await xs.close().catch(() => undefined);
  }
}
