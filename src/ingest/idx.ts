// IDX (the MNIST format): an images file (magic 0x00000803, unsigned bytes, dims [N,H,W], or
// 0x00000804 with [N,H,W,C]) and a labels file (0x00000801, [N]), each raw or gzip. Both are
// streamed from their temp files straight into the canonical file; memory does not depend on N.
import { CanonicalDatasetWriter, type CanonicalMeta } from './canonicalDataset.js';
import { checkDatasetShape, invalid, pickError } from './errors.js';
import { buildClasses, type ClassInfo, LabelCounter } from './labels.js';
import { ChunkReader, openMaybeGunzip, type PairIngestOptions } from './streams.js';

const UBYTE = 0x08;
const TYPE_NAMES: Record<number, string> = {
  8: 'unsigned byte',
  9: 'signed byte',
  11: 'short',
  12: 'int',
  13: 'float',
  14: 'double',
};

/** Parses the IDX magic and dims; `allowedDims` lists the accepted ranks. */
export async function readIdxHeader(
  reader: ChunkReader,
  what: string,
  allowedDims: readonly number[],
): Promise<number[]> {
  const magic = await reader.readExact(4);
  if (magic[0] !== 0 || magic[1] !== 0) {
    throw invalid(`${what}: not an IDX file (magic 0x${magic.toString('hex')})`, what);
  }
  const type = magic[2];
  const ndims = magic[3];
  if (type !== UBYTE) {
    const name = TYPE_NAMES[type] ?? `unknown type 0x${type.toString(16)}`;
    throw invalid(`${what}: IDX data type ${name} is not supported (only unsigned byte, 0x08)`, what);
  }
  if (!allowedDims.includes(ndims)) {
    throw invalid(
      `${what}: wrong IDX magic 0x${magic.toString('hex')}: ${ndims} dimensions, expected ${allowedDims.join(' or ')}`,
      what,
    );
  }
  const dimBytes = await reader.readExact(4 * ndims);
  const dims: number[] = [];
  for (let i = 0; i < ndims; i++) dims.push(dimBytes.readUInt32BE(4 * i));
  return dims;
}

export interface IdxIngestResult {
  meta: CanonicalMeta;
  classes: ClassInfo[];
}

export async function ingestIdx(opts: PairIngestOptions): Promise<IdxIngestResult> {
  const images = new ChunkReader(await openMaybeGunzip(opts.imagesPath, opts.budget, 'images'), 'images');
  const labels = new ChunkReader(await openMaybeGunzip(opts.labelsPath, opts.budget, 'labels'), 'labels');
  let writer: CanonicalDatasetWriter | null = null;
  try {
    const imageDims = await readIdxHeader(images, 'images', [3, 4]);
    const labelDims = await readIdxHeader(labels, 'labels', [1]);
    const [count, height, width] = imageDims;
    const channels = imageDims.length === 4 ? imageDims[3] : 1;
    if (labelDims[0] !== count) {
      throw invalid(`the images file holds ${count} images but the labels file ${labelDims[0]} labels`);
    }
    checkDatasetShape({ count, height, width, channels, bytesPerValue: 1 }, opts.limits, 'images');

    writer = await CanonicalDatasetWriter.create(opts.outPath, {
      count,
      height,
      width,
      channels,
      dtype: 'uint8',
    });
    const expected = writer.pixelSectionBytes;
    let offset = 0;
    for await (const chunk of images.rest()) {
      if (offset + chunk.length > expected) {
        throw invalid(`images: the file is longer than its header's dims [${imageDims.join(',')}]`, 'images');
      }
      await writer.writePixelBytes(offset, chunk);
      offset += chunk.length;
    }
    if (offset < expected) {
      throw invalid(
        `images: truncated: ${offset} of ${expected} pixel bytes for dims [${imageDims.join(',')}]`,
        'images',
      );
    }

    const counter = new LabelCounter();
    let index = 0;
    for await (const chunk of labels.rest()) {
      if (index + chunk.length > count) {
        throw invalid(`labels: the file is longer than its header's count ${count}`, 'labels');
      }
      const batch = new Int32Array(chunk.length);
      for (let i = 0; i < chunk.length; i++) {
        batch[i] = chunk[i];
        counter.add(chunk[i], `labels[${index + i}]`);
      }
      await writer.writeLabels(index, batch);
      index += chunk.length;
    }
    if (index < count) throw invalid(`labels: truncated: ${index} of ${count} labels`, 'labels');

    const classes = buildClasses(counter, opts.classNames);
    const meta = await writer.finish();
    writer = null;
    return { meta, classes };
  } catch (err) {
    await writer?.abort();
    throw pickError('IDX', err);
  } finally {
    await images.close().catch(() => undefined);
    await labels.close().catch(() => undefined);
  }
}
