// Image-folder archives (.zip, .tar, .tar.gz): one folder per class of PNG/JPEG/WebP images,
// optionally inside a single wrapper folder. Two passes over the archive:
//   1. scan: check every entry (safe name, type, count), read each image's header (size,
//      greyscale) with the pixel limit, and charge every unpacked byte to the budget;
//   2. decode: decode each image with sharp to the common size/channels and write it at its
//      rank in (class folder, path) code-point order, so the canonical file is in sorted order
//      whatever the order of the archive.
// Entries are held in memory one at a time (an image file is at most maxImageFileBytes) and are
// never written to disk under their own names.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tarStream from 'tar-stream';
import { CanonicalDatasetWriter, type CanonicalMeta } from './canonicalDataset.js';
import {
  checkDatasetShape,
  IngestError,
  type IngestLimits,
  invalid,
  isZlibError,
  pickError,
} from './errors.js';
import { decodeImage, probeImage } from './images.js';
import { buildClasses, type ClassInfo, LabelCounter, MAX_LABEL } from './labels.js';
import { compareCodePoints, hasImageExtension, isJunkPath, safeEntrySegments } from './paths.js';
import type { ByteBudget } from './streams.js';
import type { ZipArchive, ZipEntryInfo } from './zip.js';
import { zipError } from './zip.js';

const MiB = 1024 * 1024;

/**
 * Largest image file accepted inside an archive (8 bytes per allowed pixel, at least 16 MiB);
 * the total is bounded separately by the unpacked-bytes budget.
 */
export function maxImageFileBytes(limits: IngestLimits): number {
  return Math.max(16 * MiB, 8 * limits.maxImagePixels + MiB);
}

interface ScannedImage {
  /** Position of the entry in the archive (tar: ordinal; zip: index into the entry list). */
  key: number;
  name: string;
  segments: string[];
  width: number;
  height: number;
  grey: boolean;
}

/** What pass 1 collects, format-independent. */
class Scan {
  readonly images: ScannedImage[] = [];
  readonly dirs: string[][] = [];
  entries = 0;

  constructor(readonly limits: IngestLimits) {}

  countEntry(): void {
    this.entries++;
    if (this.entries > this.limits.maxArchiveEntries) {
      throw new IngestError(
        'TOO_MANY_ENTRIES',
        `the archive has more than ${this.limits.maxArchiveEntries} entries (MAX_ARCHIVE_ENTRIES)`,
      );
    }
  }

  /** 'image' when the entry's content is needed, else 'skip'. Records directories. */
  classify(segments: string[], isDirectory: boolean): 'image' | 'skip' {
    if (segments.length === 0 || isJunkPath(segments)) return 'skip';
    if (isDirectory) {
      this.dirs.push(segments);
      return 'skip';
    }
    if (!hasImageExtension(segments[segments.length - 1])) return 'skip';
    if (this.images.length >= this.limits.maxDatasetImages) {
      throw new IngestError(
        'TOO_MANY_IMAGES',
        `the archive has more than ${this.limits.maxDatasetImages} images (MAX_DATASET_IMAGES)`,
      );
    }
    return 'image';
  }

  async addImage(key: number, name: string, segments: string[], data: Buffer): Promise<void> {
    const probe = await probeImage(data, name, this.limits.maxImagePixels);
    this.images.push({ key, name, segments, width: probe.width, height: probe.height, grey: probe.grey });
  }
}

export interface ArchivePlan {
  classFolders: string[];
  /** Images in canonical order (class index, then path). */
  ordered: Array<ScannedImage & { label: number }>;
  width: number;
  height: number;
  channels: 1 | 3;
}

/** Class folders, sorted order, common size and channels from what pass 1 saw. */
export function planArchive(scan: { images: ScannedImage[]; dirs: string[][] }): ArchivePlan {
  const { images } = scan;
  if (images.length === 0) {
    throw invalid('the archive holds no PNG/JPEG/WebP images in class folders (<class>/<image>)');
  }
  const loose = images.find((i) => i.segments.length === 1);
  if (loose) throw invalid(`image "${loose.name}" is not inside a class folder`, loose.name);
  let prefix: string[];
  if (images.every((i) => i.segments.length === 2)) {
    prefix = [];
  } else if (images.every((i) => i.segments.length === 3 && i.segments[0] === images[0].segments[0])) {
    prefix = [images[0].segments[0]];
  } else {
    const odd =
      images.find((i) => i.segments.length > 3) ??
      images.find((i) => i.segments.length !== images[0].segments.length) ??
      images[0];
    throw invalid(
      `expected images at <class>/<image> or <folder>/<class>/<image> for every image; found "${odd.name}"`,
      odd.name,
    );
  }
  const depth = prefix.length;
  const folders = new Set(images.map((i) => i.segments[depth]));
  // Empty class folders count too when the archive lists them, so indices follow the folder list.
  for (const d of scan.dirs) {
    if (d.length === depth + 1 && prefix.every((p, k) => d[k] === p)) folders.add(d[depth]);
  }
  const classFolders = [...folders].sort(compareCodePoints);
  if (classFolders.length > MAX_LABEL + 1) {
    throw invalid(`the archive has ${classFolders.length} class folders, more than ${MAX_LABEL + 1}`);
  }
  const index = new Map(classFolders.map((f, i) => [f, i]));
  const ordered = images
    .map((i) => ({ ...i, label: index.get(i.segments[depth]) ?? 0 }))
    .sort((a, b) => a.label - b.label || compareCodePoints(a.segments.join('/'), b.segments.join('/')));
  const first = ordered[0];
  return {
    classFolders,
    ordered,
    width: first.width,
    height: first.height,
    channels: images.every((i) => i.grey) ? 1 : 3,
  };
}

// ---- zip

async function scanZip(zip: ZipArchive, entries: ZipEntryInfo[], scan: Scan, budget: ByteBudget) {
  const cap = maxImageFileBytes(scan.limits);
  for (let key = 0; key < entries.length; key++) {
    const e = entries[key];
    scan.countEntry();
    if (scan.classify(e.segments, e.isDirectory) !== 'image') continue;
    const data = await zip.readAll(e, cap, () => fileTooLarge(e.name, cap), budget);
    await scan.addImage(key, e.name, e.segments, data);
  }
}

// ---- tar

function tarError(err: unknown): unknown {
  if (err instanceof IngestError) return err;
  if (isZlibError(err)) return invalid(`the archive's gzip data is corrupt: ${(err as Error).message}`);
  const code = (err as { code?: unknown } | null)?.code;
  if (err instanceof Error && typeof code === 'string' && /^E[A-Z]/.test(code)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return invalid(`not a valid tar archive: ${message}`);
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _chunk of stream) {
    // discard
  }
}

async function readEntry(stream: AsyncIterable<Buffer>, size: number, name: string): Promise<Buffer> {
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for await (const chunk of stream) {
    if (at + chunk.length > size) throw invalid(`tar entry "${name}" is longer than its header says`, name);
    chunk.copy(out, at);
    at += chunk.length;
  }
  if (at !== size) throw invalid(`tar entry "${name}" is truncated`, name);
  return out;
}

/**
 * Calls `visit` for every tar entry in order with a checked, safe name. Symlinks and hard links
 * are refused (ARCHIVE_PATH_UNSAFE), as are devices and FIFOs. `visit` must consume the stream.
 */
async function forEachTarEntry(
  path: string,
  gzip: boolean,
  budget: ByteBudget | undefined,
  visit: (
    e: { key: number; name: string; segments: string[]; isDirectory: boolean; size: number },
    stream: AsyncIterable<Buffer>,
  ) => Promise<void>,
): Promise<void> {
  const noop = () => undefined;
  const file = createReadStream(path, { highWaterMark: 256 * 1024 });
  const stages: Array<NodeJS.ReadWriteStream> = [];
  if (gzip) stages.push(createGunzip({ chunkSize: 64 * 1024 }));
  if (budget) stages.push(budget.meter());
  const source: Readable = stages.length ? (pipeline([file, ...stages], noop) as unknown as Readable) : file;
  const extract = tarStream.extract();
  let sourceError: unknown = null;
  source.on('error', (err) => {
    sourceError = err;
    extract.destroy(err);
  });
  source.pipe(extract);
  let key = 0;
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const name = h.name;
      const segments = safeEntrySegments(name);
      if (h.type === 'symlink' || h.type === 'link') {
        throw new IngestError(
          'ARCHIVE_PATH_UNSAFE',
          `archive entry "${name}" is a ${h.type === 'link' ? 'hard link' : 'symbolic link'} (to "${h.linkname ?? ''}")`,
          name,
        );
      }
      const isDirectory = h.type === 'directory';
      if (!isDirectory && h.type !== 'file' && h.type !== 'contiguous-file') {
        throw invalid(`archive entry "${name}" is a ${h.type ?? 'special file'}, not a file or folder`, name);
      }
      await visit(
        { key: key++, name, segments, isDirectory, size: h.size ?? 0 },
        entry as AsyncIterable<Buffer>,
      );
    }
  } catch (err) {
    source.destroy();
    extract.destroy();
    throw tarError(pickError('tar', err, sourceError));
  }
  if (sourceError) throw tarError(sourceError);
}

async function scanTar(path: string, gzip: boolean, scan: Scan, budget: ByteBudget) {
  const cap = maxImageFileBytes(scan.limits);
  await forEachTarEntry(path, gzip, budget, async (e, stream) => {
    scan.countEntry();
    if (scan.classify(e.segments, e.isDirectory) !== 'image') return drain(stream);
    if (e.size > cap) throw fileTooLarge(e.name, cap);
    const data = await readEntry(stream, e.size, e.name);
    await scan.addImage(e.key, e.name, e.segments, data);
  });
}

// ---- shared

function fileTooLarge(name: string, cap: number): IngestError {
  return new IngestError('IMAGE_TOO_LARGE', `image file "${name}" is larger than ${cap} bytes`, name);
}

export interface ArchiveIngestResult {
  meta: CanonicalMeta;
  classes: ClassInfo[];
}

export type ArchiveSource =
  | { kind: 'zip'; zip: ZipArchive; entries: ZipEntryInfo[] }
  | { kind: 'tar'; path: string; gzip: boolean };

export async function ingestImageArchive(opts: {
  source: ArchiveSource;
  outPath: string;
  limits: IngestLimits;
  budget: ByteBudget;
  classNames?: readonly string[];
}): Promise<ArchiveIngestResult> {
  const { source, limits } = opts;
  const scan = new Scan(limits);
  if (source.kind === 'zip') await scanZip(source.zip, source.entries, scan, opts.budget);
  else await scanTar(source.path, source.gzip, scan, opts.budget);

  const plan = planArchive(scan);
  const { ordered, width, height, channels } = plan;
  checkDatasetShape({ count: ordered.length, height, width, channels, bytesPerValue: 1 }, limits, 'archive');
  if (opts.classNames && opts.classNames.length < plan.classFolders.length) {
    throw invalid(
      `classNames has ${opts.classNames.length} names but the archive has ${plan.classFolders.length} class folders`,
    );
  }
  const counter = new LabelCounter();
  const labels = new Int32Array(ordered.length);
  ordered.forEach((img, rank) => {
    labels[rank] = img.label;
    counter.add(img.label, img.name);
  });
  const classes = buildClasses(counter, opts.classNames, plan.classFolders);

  const writer = await CanonicalDatasetWriter.create(opts.outPath, {
    count: ordered.length,
    height,
    width,
    channels,
    dtype: 'uint8',
  });
  try {
    const target = { width, height, channels };
    const cap = maxImageFileBytes(limits);
    const decodeAt = async (rank: number, data: Buffer) => {
      const img = ordered[rank];
      const pixels = await decodeImage(data, img.name, img, target, limits.maxImagePixels);
      await writer.writeSamples(rank, pixels);
    };
    if (source.kind === 'zip') {
      for (let rank = 0; rank < ordered.length; rank++) {
        const e = source.entries[ordered[rank].key];
        await decodeAt(rank, await source.zip.readAll(e, cap, () => fileTooLarge(e.name, cap)));
      }
    } else {
      const rankOf = new Map(ordered.map((img, rank) => [img.key, rank]));
      await forEachTarEntry(source.path, source.gzip, undefined, async (e, stream) => {
        const rank = rankOf.get(e.key);
        if (rank === undefined) return drain(stream);
        await decodeAt(rank, await readEntry(stream, e.size, e.name));
      });
    }
    await writer.writeLabels(0, labels);
    const meta = await writer.finish();
    return { meta, classes };
  } catch (err) {
    await writer.abort();
    throw source.kind === 'zip' ? zipError(err) : tarError(err);
  }
}
