// ingestDataset: an uploaded dataset (already streamed to temp files) -> a canonical file.
// The format is detected from magic bytes, never from the file name alone:
//   IDX pair (two files) | zip (PK..) with x.npy/y.npy -> npz | other zip | tar | gzip'd tar.
import { rm } from 'node:fs/promises';
import { ingestImageArchive } from './archive.js';
import type { CanonicalMeta } from './canonicalDataset.js';
import { IngestError, type IngestLimits } from './errors.js';
import { ingestIdx } from './idx.js';
import type { ClassInfo } from './labels.js';
import { ingestNpz } from './npz.js';
import { ByteBudget, ChunkReader, isGzip, openMaybeGunzip, readHead } from './streams.js';
import { ZipArchive } from './zip.js';

export type { CanonicalDataset, CanonicalMeta, SampleBatch } from './canonicalDataset.js';
export { CanonicalDatasetWriter, openCanonicalDataset } from './canonicalDataset.js';
export { IngestError, type IngestErrorCode, type IngestLimits } from './errors.js';
export type { ClassInfo } from './labels.js';

export type DatasetFormat = 'idx' | 'zip' | 'tar' | 'npz';

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

const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);

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
      'a bare .npy file is not accepted; send an .npz holding arrays "x" and "y"',
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
