// One image under one transform point, in plain JavaScript: for thumbnails in the API process
// (GET /v1/datasets/{id}/images/{index}?transform=...), where loading ONNX Runtime and compiling a
// transform graph for a single small image would be out of proportion. Same semantics as the
// engine's transform graphs (src/engine/transformGraph.ts, SPEC section 3); test/render checks the
// two agree:
// - consecutive geometric ops are composed into one inverse-mapped bilinear resampling about the
//   centre, zeros outside plus `fill * (1 - in-bounds weight)`, coordinates snapped to integers
//   when every sampling point is an integer (exact permutations at multiples of 90 degrees);
// - brightness / contrast / noise clip to [0,1]; gamma does not; blur is separable with reflect
//   padding and radius ceil(3 sigma); dilate / erode take the max / min over a k x k window
//   (floor(k/2) before, the rest after; outside pixels ignored); background replaces exact zeros.
import { reduceOps } from '../engine/transformGraph.js';
import { fillGaussian } from '../engine/transformNoise.js';
import type { Mat3, TransformOps } from '../engine/transformOps.js';

export interface PlanarImage {
  /** [C, H, W], values in [0,1]. */
  data: Float32Array;
  channels: number;
  height: number;
  width: number;
}

const INTEGER_TOLERANCE = 1e-6;

function warp(img: PlanarImage, inverse: Mat3, fill: number): Float32Array {
  const { channels: C, height: H, width: W, data } = img;
  const [a, b, c, d, e, f] = inverse;
  let integer = true;
  for (let y = 0; y < H && integer; y++) {
    for (let x = 0; x < W; x++) {
      const sx = a * x + b * y + c;
      const sy = d * x + e * y + f;
      if (
        Math.abs(sx - Math.round(sx)) > INTEGER_TOLERANCE ||
        Math.abs(sy - Math.round(sy)) > INTEGER_TOLERANCE
      ) {
        integer = false;
        break;
      }
    }
  }
  const out = new Float32Array(C * H * W);
  const plane = H * W;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let sx = a * x + b * y + c;
      let sy = d * x + e * y + f;
      if (integer) {
        sx = Math.round(sx);
        sy = Math.round(sy);
      }
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const taps: Array<[number, number, number]> = [
        [x0, y0, (1 - fx) * (1 - fy)],
        [x0 + 1, y0, fx * (1 - fy)],
        [x0, y0 + 1, (1 - fx) * fy],
        [x0 + 1, y0 + 1, fx * fy],
      ];
      let covered = 0;
      for (const [tx, ty, w] of taps) if (tx >= 0 && tx < W && ty >= 0 && ty < H) covered += w;
      for (let ch = 0; ch < C; ch++) {
        let v = 0;
        for (const [tx, ty, w] of taps) {
          if (w !== 0 && tx >= 0 && tx < W && ty >= 0 && ty < H) v += w * data[ch * plane + ty * W + tx];
        }
        out[ch * plane + y * W + x] = v + fill * (1 - covered);
      }
    }
  }
  return out;
}

const clip01 = (v: number) => Math.min(Math.max(v, 0), 1);

function reflectIndex(i: number, length: number): number {
  if (length === 1) return 0;
  const period = 2 * (length - 1);
  let m = i % period;
  if (m < 0) m += period;
  return m >= length ? period - m : m;
}

function gaussianKernel(sigma: number): Float64Array {
  const radius = Math.ceil(3 * sigma);
  const k = new Float64Array(2 * radius + 1);
  let sum = 0;
  for (let t = -radius; t <= radius; t++) {
    k[t + radius] = Math.exp(-0.5 * (t / sigma) ** 2);
    sum += k[t + radius];
  }
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  return k;
}

function blur(img: PlanarImage, sigma: number): Float32Array {
  const { channels: C, height: H, width: W, data } = img;
  const k = gaussianKernel(sigma);
  const r = (k.length - 1) / 2;
  const plane = H * W;
  const tmp = new Float64Array(plane);
  const out = new Float32Array(C * plane);
  for (let ch = 0; ch < C; ch++) {
    const base = ch * plane;
    // Vertical, then horizontal (the engine's Kv X Kh order).
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        let s = 0;
        for (let t = -r; t <= r; t++) s += k[t + r] * data[base + reflectIndex(y + t, H) * W + x];
        tmp[y * W + x] = s;
      }
    }
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        let s = 0;
        for (let t = -r; t <= r; t++) s += k[t + r] * tmp[y * W + reflectIndex(x + t, W)];
        out[base + y * W + x] = s;
      }
    }
  }
  return out;
}

function morph(img: PlanarImage, k: number, max: boolean): Float32Array {
  const { channels: C, height: H, width: W, data } = img;
  const before = Math.floor(k / 2);
  const after = k - 1 - before;
  const plane = H * W;
  const out = new Float32Array(C * plane);
  for (let ch = 0; ch < C; ch++) {
    const base = ch * plane;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        let best = max ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
        for (let yy = Math.max(0, y - before); yy <= Math.min(H - 1, y + after); yy++) {
          for (let xx = Math.max(0, x - before); xx <= Math.min(W - 1, x + after); xx++) {
            const v = data[base + yy * W + xx];
            best = max ? Math.max(best, v) : Math.min(best, v);
          }
        }
        out[base + y * W + x] = best;
      }
    }
  }
  return out;
}

/**
 * Applies one point's ops to one image. `sampleIndex` is the image's global dataset index (it
 * seeds gaussian_noise, as in a run). Throws RangeError for invalid parameters.
 */
export function transformImage(img: PlanarImage, ops: TransformOps, sampleIndex: number): PlanarImage {
  let cur = img;
  const set = (data: Float32Array) => {
    cur = { ...cur, data };
  };
  const map = (f: (v: number) => number) => set(cur.data.map(f));
  // The same reduction (composed warps, validated parameters, no-ops dropped) as the engine's
  // transform graphs; only the execution differs.
  for (const stage of reduceOps(ops, img)) {
    switch (stage.kind) {
      case 'warp':
        set(warp(cur, stage.inverse, stage.fill));
        break;
      case 'brightness':
        map((v) => clip01(v + stage.delta));
        break;
      case 'contrast':
        map((v) => clip01((v - 0.5) * stage.factor + 0.5));
        break;
      case 'gamma':
        map((v) => v ** stage.g);
        break;
      case 'noise': {
        const z = new Float32Array(cur.data.length);
        fillGaussian(z, 0, z.length, stage.seed, sampleIndex, stage.sigma);
        set(cur.data.map((v, i) => clip01(v + z[i])));
        break;
      }
      case 'blur':
        set(blur(cur, stage.sigma));
        break;
      case 'dilate':
      case 'erode':
        set(morph(cur, stage.k, stage.kind === 'dilate'));
        break;
      case 'background':
        map((v) => (v === 0 ? stage.value : v));
        break;
    }
  }
  return cur;
}
