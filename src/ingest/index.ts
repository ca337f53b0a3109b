// ingestDataset: an uploaded dataset (already streamed to temp files) -> a canonical file.
// The format is detected from magic bytes, never from the file name alone:
//   images + labels pair: IDX files, or .npy files (\x93NUMPY, read as an npz's x.npy/y.npy)
//   | zip (PK..) with x.npy/y.npy -> npz | other zip | tar | gzip'd tar.
import { rm } from 'node:fs/promises';
import { ingestImageArchive } from './archive.js';
import type { CanonicalMeta } from './canonicalDataset.js';
import { IngestError, type IngestLimits } from './errors.js';
import { ingestIdx } from './idx.js';
import type { ClassInfo } from './labels.js';
import { ingestNpyPair, ingestNpz, NPY_MAGIC } from './npz.js';
import { ByteBudget, ChunkReader, isGzip, openMaybeGunzip, readHead } from './streams.js';
import { ZipArchive } from './zip.js';

export type { CanonicalDataset, CanonicalMeta, SampleBatch } from './canonicalDataset.js';
export { CanonicalDatasetWriter, openCanonicalDataset } from './canonicalDataset.js';
export { IngestError, type IngestErrorCode, type IngestLimits } from './errors.js';
export type { ClassInfo } from './labels.js';

export type DatasetFormat = 'idx' | 'zip' | 'tar' | 'npz';

/**
 * `idx`: an images + labels pair, IDX files or .npy files (told apart by their content), each raw
 * or gzip. `file`: one archive or npz.
 */
export type IngestSource =
  | { kind: 'idx'; imagesPath: string; labelsPath: string }
  | { kind: 'file'; path: string; filename?: string };

export interface IngestOptions {
  limits: IngestLimits;
  /** Class names by index; every label must be below its length. */
  classNames?: readonly string[];
}

export interface IngestResult {
  format: DatasetFormat;
  meta: CanonicalMeta;
  classes: ClassInfo[];
}

/** A tar header block: "ustar" magic, or a valid header checksum (old V7 tar), or all zeros (empty). */
export function looksLikeTar(block: Buffer): boolean {
  if (block.length < 512) return false;
  if (block.toString('ascii', 257, 262) === 'ustar') return true;
  if (block.subarray(0, 512).every((b) => b === 0)) return true;
  const stored = Number.parseInt(
    block
      .toString('ascii', 148, 156)
      .replace(/[\0 ]+$/g, '')
      .trim(),
    8,
  );
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return sum === stored;
}

type Detected = 'zip' | 'tar' | 'tgz';

async function detect(path: string): Promise<Detected> {
  const head = await readHead(path, 512);
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5)) {
    return 'zip';
  }
  if (isGzip(head)) {
    const reader = new ChunkReader(await openMaybeGunzip(path), 'the gzip file');
    try {
      const block = await reader.readExact(512).catch(() => Buffer.alloc(0));
      if (looksLikeTar(block)) return 'tgz';
    } finally {
      await reader.close().catch(() => undefined);
    }
    throw new IngestError(
      'UNSUPPORTED_DATASET_FORMAT',
      'the file is gzip-compressed but not a tar archive; send IDX files as the "images" and "labels" fields',
    );
  }
  if (looksLikeTar(head)) return 'tar';
  if (head.subarray(0, 6).equals(NPY_MAGIC)) {
    throw new IngestError(
      'UNSUPPORTED_DATASET_FORMAT',
      'a single .npy file is not a dataset; send the images and labels arrays as the "images" and "labels" fields, or one .npz holding arrays "x" and "y"',
    );
  }
  if (head.length >= 4 && head.readUInt32BE(0) === 0x00000803) {
    throw new IngestError(
      'UNSUPPORTED_DATASET_FORMAT',
      'this looks like an IDX images file; send it as "images" with its labels as "labels"',
    );
  }
  throw new IngestError(
    'UNSUPPORTED_DATASET_FORMAT',
    'the file is not a zip, tar, tar.gz or npz archive (detected by its first bytes)',
  );
}

const isNpy = (head: Buffer) => head.length >= 6 && head.subarray(0, 6).equals(NPY_MAGIC);
/** What readIdxHeader accepts at all: the first two bytes of an IDX magic are zero. */
const isIdx = (head: Buffer) => head.length >= 4 && head[0] === 0 && head[1] === 0;

/** The first n bytes of a pair file's content (gunzipped when it is gzip); fewer if unreadable. */
async function contentHead(path: string, n: number): Promise<Buffer> {
  const head = await readHead(path, n);
  if (!isGzip(head)) return head;
  const reader = new ChunkReader(await openMaybeGunzip(path), 'the gzip file');
  try {
    return await reader.readExact(n).catch(() => Buffer.alloc(0));
  } finally {
    await reader.close().catch(() => undefined);
  }
}

/**
 * An images + labels pair is read as .npy arrays when either part starts with the .npy magic
 * (the other one then fails as "not a .npy file" unless it is one), else as IDX. An IDX file
 * paired with a .npy array is refused as UNSUPPORTED_DATASET_FORMAT.
 */
async function detectPair(imagesPath: string, labelsPath: string): Promise<'idx' | 'npy'> {
  const [images, labels] = await Promise.all([contentHead(imagesPath, 6), contentHead(labelsPath, 6)]);
  if (isNpy(images) && isNpy(labels)) return 'npy';
  if ((isNpy(images) && isIdx(labels)) || (isIdx(images) && isNpy(labels))) {
    const [npy, idx] = isNpy(images) ? ['images', 'labels'] : ['labels', 'images'];
    throw new IngestError(
      'UNSUPPORTED_DATASET_FORMAT',
      `"${npy}" is a .npy array but "${idx}" is an IDX file; send both parts as .npy arrays or both as IDX files`,
    );
  }
  return isNpy(images) || isNpy(labels) ? 'npy' : 'idx';
}

/**
 * Reads the source, checks it against the limits and writes the canonical file at `outPath`
 * (which must not exist). On any failure `outPath` does not exist afterwards and an
 * IngestError (4xx-worthy) or a server-side error is thrown.
 */
export async function ingestDataset(
  source: IngestSource,
  outPath: string,
  options: IngestOptions,
): Promise<IngestResult> {
  const { limits, classNames } = options;
  const budget = new ByteBudget(limits.maxUncompressedBytes);
  try {
    if (source.kind === 'idx') {
      if ((await detectPair(source.imagesPath, source.labelsPath)) === 'npy') {
        const r = await ingestNpyPair({ ...source, outPath, limits, budget, classNames });
        return { format: 'npz', ...r };
      }
      const r = await ingestIdx({ ...source, outPath, limits, budget, classNames });
      return { format: 'idx', ...r };
    }
    const kind = await detect(source.path);
    if (kind === 'tar' || kind === 'tgz') {
      const r = await ingestImageArchive({
        source: { kind: 'tar', path: source.path, gzip: kind === 'tgz' },
        outPath,
        limits,
        budget,
        classNames,
      });
      return { format: 'tar', ...r };
    }
    const zip = await ZipArchive.open(source.path);
    try {
      const entries = await zip.entries(limits);
      const topLevel = entries
        .filter((e) => !e.isDirectory && e.segments.length === 1)
        .map((e) => e.segments[0]);
      const isNpz =
        topLevel.includes('x.npy') || topLevel.includes('y.npy') || /\.npz$/i.test(source.filename ?? '');
      if (isNpz) {
        const r = await ingestNpz({ zip, entries, outPath, limits, budget, classNames });
        return { format: 'npz', ...r };
      }
      const r = await ingestImageArchive({
        source: { kind: 'zip', zip, entries },
        outPath,
        limits,
        budget,
        classNames,
      });
      return { format: 'zip', ...r };
    } finally {
      zip.close();
    }
  } catch (err) {
    await rm(outPath, { force: true });
    throw err;
  }
}
