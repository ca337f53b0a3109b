// One dataset image as PNG, untransformed or under one transform point (for the dashboard's
// thumbnails and examples strip). The point is given as a point key (`rotate=90`,
// `rotate=15,scale=1.2`, `hflip`) or as JSON params (`{"rotate":90}`); with a run, it is looked up
// in the run's sweep so that the family's fill, noise seed and unit are the run's, and the image is
// resized to the model input first when the run resized.
import sharp from 'sharp';
import {
  expandSweep,
  type PointParams,
  parsePointKey,
  SweepError,
  samePoint,
  type TransformFamily,
  type TransformOp,
} from '../domain/sweep.js';
import { resizeBilinear, toPlanarFloat } from '../engine/pixels.js';
import { toEngineOps } from '../engine/pointOps.js';
import { openCanonicalDataset } from '../ingest/canonicalDataset.js';
import { type PlanarImage, transformImage } from './imageTransform.js';

/** A transform the request names that cannot be applied (message for people). */
export class TransformParamError extends Error {}

/** The run facts a transform is resolved against. */
export interface RunSweep {
  transforms: TransformFamily[];
  points: number;
  resize: boolean;
  input: { height: number; width: number; channels: number };
}

/** Parses `?transform=`: a point key or a JSON object of params. */
export function parseTransformParam(text: string): PointParams {
  const t = text.trim();
  if (t.startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(t);
    } catch {
      throw new TransformParamError('transform: not valid JSON');
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      throw new TransformParamError('transform: JSON params must be an object, e.g. {"rotate":90}');
    }
    const params: PointParams = {};
    for (const [k, v] of Object.entries(value)) {
      const ok =
        typeof v === 'number' ||
        typeof v === 'boolean' ||
        (Array.isArray(v) && v.every((x) => typeof x === 'number'));
      if (!ok)
        throw new TransformParamError(`transform: '${k}' must be a number, a boolean or a list of numbers`);
      params[k] = v as number | boolean | number[];
    }
    return params;
  }
  try {
    return parsePointKey(t);
  } catch (err) {
    if (err instanceof SweepError) throw new TransformParamError(`transform: ${err.message}`);
    throw err;
  }
}

/** A one-point family for one param (defaults: fill 0, noise seed 0, pixels). */
function familyOf(name: string, value: number | boolean | number[]): Record<string, unknown> {
  const fraction = name.endsWith('_frac');
  const type = fraction ? name.slice(0, -'_frac'.length) : name;
  if (type === 'identity') return { type };
  return { type, values: [value], ...(fraction ? { unit: 'fraction' } : {}) };
}

function expandOne(families: unknown[]): TransformOp[] {
  try {
    const [point] = expandSweep(families as TransformFamily[], { maxPoints: 1 });
    return point.ops;
  } catch (err) {
    if (err instanceof SweepError) throw new TransformParamError(`transform: ${err.message}`);
    throw err;
  }
}

/** The ops of a point: from the run's sweep when given (exact fill and seed), else from the params. */
export function resolvePoint(params: PointParams, run?: RunSweep): TransformOp[] {
  if (run) {
    const points = expandSweep(run.transforms, { maxPoints: Math.max(1, run.points) });
    const hit = points.find((p) => samePoint(p.params, params));
    if (!hit) throw new TransformParamError('transform: the run has no point with these parameters');
    return hit.ops;
  }
  const entries = Object.entries(params);
  if (entries.length === 0) return [];
  const families = entries.map(([k, v]) => familyOf(k, v));
  return expandOne(families.length === 1 ? families : [{ type: 'grid', of: families }]);
}

/** Sample `index` of a canonical dataset file as a planar image in [0,1], with its label. */
export async function readSample(
  path: string,
  index: number,
): Promise<{ image: PlanarImage; label: number }> {
  const ds = await openCanonicalDataset(path);
  try {
    const { height, width, channels } = ds.meta;
    const batch = await ds.readSamples(index, 1);
    return {
      image: { data: toPlanarFloat(batch.pixels, 1, height, width, channels), channels, height, width },
      label: batch.labels[0],
    };
  } finally {
    await ds.close();
  }
}

/** Applies the point (resizing first when the run resized) to the image. */
export function applyPoint(
  image: PlanarImage,
  ops: readonly TransformOp[],
  index: number,
  run?: RunSweep,
): PlanarImage {
  let img = image;
  if (run?.resize && (img.height !== run.input.height || img.width !== run.input.width)) {
    const { height, width } = run.input;
    img = {
      ...img,
      height,
      width,
      data: resizeBilinear(img.data, img.channels, img.height, img.width, height, width),
    };
  }
  if (ops.length === 0) return img;
  try {
    return transformImage(img, toEngineOps(ops), index);
  } catch (err) {
    throw new TransformParamError(`transform: ${(err as Error).message}`);
  }
}

/** PNG of a planar [0,1] image (1 to 4 channels), values rounded to 8 bits. */
export async function encodePng(img: PlanarImage): Promise<Buffer> {
  const { channels: C, height: H, width: W, data } = img;
  const plane = H * W;
  const hwc = Buffer.alloc(C * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < C; c++) {
      const v = data[c * plane + p];
      hwc[p * C + c] = Number.isFinite(v) ? Math.round(Math.min(Math.max(v, 0), 1) * 255) : 0;
    }
  }
  const channels = C as 1 | 2 | 3 | 4;
  const image = sharp(hwc, { raw: { width: W, height: H, channels } });
  // Keep greyscale images greyscale (sharp would otherwise write 1-channel input as RGB).
  return (C === 1 ? image.toColourspace('b-w') : image).png({ compressionLevel: 6 }).toBuffer();
}
