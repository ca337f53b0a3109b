// Compiles the transformations of a sweep into small ONNX graphs run by ONNX Runtime on the
// model's execution provider (SPEC section 3; issue 3, "Transforms in ONNX Runtime").
//
// Data: NCHW float32, values in [0,1] (before mean/std normalisation).
//
// How it works
// - Each point's ordered ops are reduced to stages: consecutive geometric ops (with the same fill)
//   become one inverse-mapped resampling ("warp", GridSample); photometric ops map to elementwise
//   ops; gaussian_blur to two matrix products (vertical and horizontal 1-D Gaussian with reflect
//   padding folded into the matrices); dilate/erode to MaxPool. No-op parameters (rotate 0,
//   brightness 0, blur sigma 0, k = 1, ...) are dropped, so such points equal the input exactly.
// - Points with identical stages are computed once. Points whose stages have the same structure
//   (kinds, fill or not, MaxPool size) share one ONNX session, in which every per-point parameter
//   (sampling grid, fill, brightness delta, noise, blur matrices...) is a graph input: one `run`
//   transforms a batch under all of the group's points at once. The untransformed point joins a
//   group of single warps as the identity warp, so a rotation sweep is one session and one run.
// - Working layout inside a graph: [B*C, P, H, W] (P = points of the group), sample-major output
//   [B*P, C, H, W]. The first warp samples all P grids at once from the un-replicated input
//   (GridSample input [1, B*C, H, W] with the P grids stacked as one tall grid [1, P*H, W, 2]).
// - Warps: output pixel p samples the input at c + M^-1 (p - c) (pixel-index coordinates,
//   c = ((W-1)/2, (H-1)/2)), bilinear, zeros padding, align_corners=0 (pixel centres at
//   integers, as in torchvision). Exactness at multiples of 90 degrees: when every sampling
//   coordinate of a point is an integer (within 1e-6) the coordinates are snapped to integers and
//   the input is zero-padded (bottom/right) to power-of-two height and width, so that the
//   normalised grid values are dyadic rationals and GridSample's denormalisation
//   ((g + 1) * size - 1) / 2 is exact in float32: the bilinear weights are exactly 1 and 0 and
//   the result is an exact pixel permutation (on any provider), without a separate nearest-mode
//   graph. A fill value f is added as f * (1 - sum of the in-bounds interpolation weights),
//   precomputed per point (that is GridSample(x - f) + f, but exact where the warp is a
//   permutation).
import * as ort from 'onnxruntime-node';
import { OnnxModelBuilder } from './onnxBuilder.js';
import { fillGaussian } from './transformNoise.js';
import {
  forwardMatrix,
  IDENTITY3,
  invertAffine3,
  isGeometric,
  type Mat3,
  matMul3,
  type TransformOps,
} from './transformOps.js';

export interface ImageGeometry {
  height: number;
  width: number;
  channels: number;
}

/** Optional post-processing folded into the transform graphs. */
export interface TransformOutputOptions {
  /** Per-channel (or one) mean subtracted after the transforms. */
  mean?: readonly number[];
  /** Per-channel (or one) std divided by after the transforms. */
  std?: readonly number[];
  /** Output layout (default NCHW; the input is always NCHW). */
  layout?: 'NCHW' | 'NHWC';
}

export interface CompileTransformOptions extends ImageGeometry {
  output?: TransformOutputOptions;
  /** Opset of the generated graphs (default 17; GridSample needs >= 16). */
  opset?: number;
}

/** A stage after reduction of a point's ops. */
export type TransformStage =
  /**
   * Inverse-mapped resampling: output pixel p samples the input at inverse * p (pixel-index
   * coordinates). `integer`: every sampling coordinate is an integer (within 1e-6), i.e. the warp
   * is a pixel permutation (plus fill).
   */
  | { kind: 'warp'; inverse: Mat3; fill: number; integer: boolean }
  | { kind: 'brightness'; delta: number }
  | { kind: 'contrast'; factor: number }
  | { kind: 'gamma'; g: number }
  | { kind: 'noise'; sigma: number; seed: number }
  | { kind: 'blur'; sigma: number }
  | { kind: 'dilate'; k: number }
  | { kind: 'erode'; k: number }
  | { kind: 'background'; value: number };

/** One distinct transformation (points with identical stages share it). */
export interface UniqueTransform {
  readonly stages: readonly TransformStage[];
  readonly group: number;
  /** Position of this transform along the point axis of its group. */
  readonly indexInGroup: number;
}

/** Points of the same stage structure: one ONNX graph. */
export interface TransformGroup {
  readonly signature: string;
  /** Unique-transform ids of this group, in point-axis order. */
  readonly members: readonly number[];
  /** Stages of each member as run in this group (the untransformed point as an identity warp). */
  readonly stages: readonly (readonly TransformStage[])[];
  /** Per stage: padded input plane [H, W] of a warp with exact (permutation) members, else null. */
  readonly warpInput: readonly ([number, number] | null)[];
  /** Serialised ONNX model; null when the group is the identity without post-processing (copied in JS). */
  readonly model: Uint8Array | null;
}

export interface TransformPlan {
  readonly geometry: ImageGeometry;
  readonly output: TransformOutputOptions;
  /** Number of sweep points. */
  readonly pointCount: number;
  /** Unique-transform id of each point. */
  readonly pointToUnique: readonly number[];
  readonly uniques: readonly UniqueTransform[];
  readonly groups: readonly TransformGroup[];
}

// ---------------------------------------------------------------------------------------------
// Reduction of ops to stages

const INTEGER_TOLERANCE = 1e-6;
const IDENTITY_TOLERANCE = 1e-12;

function isIdentityMatrix(m: Mat3): boolean {
  return m.every((v, i) => Math.abs(v - IDENTITY3[i]) <= IDENTITY_TOLERANCE);
}

/** Source coordinates (pixel-index) sampled by output pixel (x, y) under inverse map m. */
function sourceOf(m: Mat3, x: number, y: number): [number, number] {
  return [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]];
}

function allSamplesInteger(inverse: Mat3, width: number, height: number): boolean {
  // The map is affine: integers at the corners and integer steps along both axes suffice... but
  // checking every pixel is cheap and robust to accumulated rounding.
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [sx, sy] = sourceOf(inverse, x, y);
      if (
        Math.abs(sx - Math.round(sx)) > INTEGER_TOLERANCE ||
        Math.abs(sy - Math.round(sy)) > INTEGER_TOLERANCE
      ) {
        return false;
      }
    }
  }
  return true;
}

function assertFinite(value: number, what: string): void {
  if (!Number.isFinite(value)) throw new Error(`${what} must be a finite number (got ${value})`);
}

/**
 * Reduces one point's ordered ops to stages (see the file comment). Throws for parameters no
 * graph can run (a geometric map that is not finite or not invertible, gamma <= 0, ...). `scan`
 * false skips the per-pixel check of which warps are permutations (`integer` is then false), for
 * a cheap validation of a sweep.
 */
export function reduceOps(ops: TransformOps, geometry: ImageGeometry, scan = true): TransformStage[] {
  const { width, height } = geometry;
  const stages: TransformStage[] = [];
  // Pending composed geometric map (forward) and its fill (null = not constrained yet: flips).
  let forward: Mat3 | null = null;
  let fill: number | null = null;
  const flush = () => {
    if (forward && !isIdentityMatrix(forward)) {
      const inverse = invertAffine3(forward);
      for (const v of inverse) assertFinite(v, 'the inverse of the geometric transform');
      stages.push({
        kind: 'warp',
        inverse,
        fill: fill ?? 0,
        integer: scan && allSamplesInteger(inverse, width, height),
      });
    }
    forward = null;
    fill = null;
  };
  for (const op of ops) {
    if (isGeometric(op)) {
      const flip = op.type === 'hflip' || op.type === 'vflip';
      const opFill = op.fill ?? 0;
      assertFinite(opFill, `${op.type}.fill`);
      if (!flip && fill !== null && fill !== opFill) flush();
      const m = forwardMatrix(op, width, height);
      for (const v of m) assertFinite(v, `${op.type} parameters`);
      forward = forward ? matMul3(m, forward) : m;
      if (!flip) fill = opFill;
      continue;
    }
    flush();
    switch (op.type) {
      case 'identity':
        break;
      case 'brightness':
        assertFinite(op.delta, 'brightness.delta');
        if (op.delta !== 0) stages.push({ kind: 'brightness', delta: op.delta });
        break;
      case 'contrast':
        assertFinite(op.factor, 'contrast.factor');
        if (op.factor !== 1) stages.push({ kind: 'contrast', factor: op.factor });
        break;
      case 'gamma':
        assertFinite(op.g, 'gamma.g');
        if (!(op.g > 0)) throw new Error(`gamma.g must be > 0 (got ${op.g})`);
        if (op.g !== 1) stages.push({ kind: 'gamma', g: op.g });
        break;
      case 'gaussian_noise':
        assertFinite(op.sigma, 'gaussian_noise.sigma');
        assertFinite(op.seed, 'gaussian_noise.seed');
        if (op.sigma < 0) throw new Error(`gaussian_noise.sigma must be >= 0 (got ${op.sigma})`);
        if (op.sigma !== 0) stages.push({ kind: 'noise', sigma: op.sigma, seed: Math.trunc(op.seed) });
        break;
      case 'gaussian_blur':
        assertFinite(op.sigma, 'gaussian_blur.sigma');
        if (op.sigma < 0) throw new Error(`gaussian_blur.sigma must be >= 0 (got ${op.sigma})`);
        if (op.sigma !== 0) stages.push({ kind: 'blur', sigma: op.sigma });
        break;
      case 'dilate':
      case 'erode':
        if (!Number.isInteger(op.k) || op.k < 1)
          throw new Error(`${op.type}.k must be an integer >= 1 (got ${op.k})`);
        if (op.k > 1) stages.push({ kind: op.type, k: op.k });
        break;
      case 'background':
        assertFinite(op.value, 'background.value');
        if (op.value !== 0) stages.push({ kind: 'background', value: op.value });
        break;
    }
  }
  flush();
  return stages;
}

function stageSignature(s: TransformStage): string {
  switch (s.kind) {
    case 'warp':
      return s.fill !== 0 ? 'warp:fill' : 'warp';
    case 'dilate':
    case 'erode':
      return `${s.kind}:${s.k}`;
    default:
      return s.kind;
  }
}

// ---------------------------------------------------------------------------------------------
// Per-point parameters

type WarpStage = Extract<TransformStage, { kind: 'warp' }>;

/**
 * A source coordinate on an axis of `size` pixels, with every coordinate whose bilinear taps all
 * fall outside the plane moved to -2 (taps -2, -1) or size + 1: the same (zero) samples, but no
 * huge value that float32 would turn into +-Infinity (or NaN) and GridSample into garbage.
 */
function outsideToEdge(v: number, size: number): number {
  if (v >= -2) return Math.min(v, size + 1);
  return -2; // also NaN
}

/**
 * GridSample grid (normalised, align_corners=0) of one warp for an input plane of
 * inputHeight x inputWidth (>= the image; padding at the bottom/right): [H, W, 2].
 */
export function warpGrid(
  stage: WarpStage,
  width: number,
  height: number,
  inputWidth = width,
  inputHeight = height,
): Float32Array {
  const grid = new Float32Array(height * width * 2);
  let o = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let [sx, sy] = sourceOf(stage.inverse, x, y);
      if (stage.integer) {
        sx = Math.round(sx);
        sy = Math.round(sy);
      }
      sx = outsideToEdge(sx, inputWidth);
      sy = outsideToEdge(sy, inputHeight);
      grid[o++] = (2 * sx + 1) / inputWidth - 1;
      grid[o++] = (2 * sy + 1) / inputHeight - 1;
    }
  }
  return grid;
}

/** fill * (1 - sum of the in-bounds interpolation weights) per output pixel: [H, W]. */
export function warpFillImage(stage: WarpStage, width: number, height: number): Float32Array {
  const out = new Float32Array(height * width);
  if (stage.fill === 0) return out;
  const inX = (i: number) => i >= 0 && i <= width - 1;
  const inY = (i: number) => i >= 0 && i <= height - 1;
  let o = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let [sx, sy] = sourceOf(stage.inverse, x, y);
      if (stage.integer) {
        sx = Math.round(sx);
        sy = Math.round(sy);
      }
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const covered =
        (inX(x0) && inY(y0) ? (1 - fx) * (1 - fy) : 0) +
        (inX(x0 + 1) && inY(y0) ? fx * (1 - fy) : 0) +
        (inX(x0) && inY(y0 + 1) ? (1 - fx) * fy : 0) +
        (inX(x0 + 1) && inY(y0 + 1) ? fx * fy : 0);
      out[o++] = stage.fill * (1 - covered);
    }
  }
  return out;
}

/** numpy 'reflect' index (edge not repeated), periodic for any offset. */
function reflectIndex(i: number, length: number): number {
  if (length === 1) return 0;
  const period = 2 * (length - 1);
  let m = i % period;
  if (m < 0) m += period;
  return m >= length ? period - m : m;
}

/** Normalised 1-D Gaussian kernel of radius ceil(3 sigma) (torchvision's formula). */
export function gaussianKernel1d(sigma: number): Float64Array {
  const radius = Math.ceil(3 * sigma);
  const k = new Float64Array(2 * radius + 1);
  let sum = 0;
  for (let t = -radius; t <= radius; t++) {
    const v = Math.exp(-0.5 * (t / sigma) ** 2);
    k[t + radius] = v;
    sum += v;
  }
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  return k;
}

/**
 * L x L matrix of a 1-D Gaussian blur with reflect padding: out = K in.
 * `transposed` gives K^T (for right multiplication along the last axis).
 */
export function blurMatrix(sigma: number, length: number, transposed: boolean): Float32Array {
  const k = gaussianKernel1d(sigma);
  const radius = (k.length - 1) / 2;
  const m = new Float64Array(length * length);
  for (let i = 0; i < length; i++) {
    for (let t = -radius; t <= radius; t++) {
      const j = reflectIndex(i + t, length);
      if (transposed) m[j * length + i] += k[t + radius];
      else m[i * length + j] += k[t + radius];
    }
  }
  return Float32Array.from(m);
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

// ---------------------------------------------------------------------------------------------
// Graph generation

function inputName(stageIndex: number, what: string): string {
  return `s${stageIndex}_${what}`;
}

function broadcastChannelVector(
  values: readonly number[] | undefined,
  channels: number,
  what: string,
): number[] | null {
  if (!values) return null;
  if (values.length === 1) return new Array<number>(channels).fill(values[0]);
  if (values.length !== channels) {
    throw new Error(`${what} has ${values.length} values for ${channels} channels`);
  }
  for (const v of values) assertFinite(v, what);
  return [...values];
}

/** Static, group-level facts the graph needs besides the stage kinds. */
interface GroupLayout {
  /** Per stage: the padded input plane of a warp ([H, W] when no member is a permutation). */
  warpInput: ([number, number] | null)[];
}

function buildGroupGraph(
  stages: readonly TransformStage[],
  layout: GroupLayout,
  geometry: ImageGeometry,
  output: TransformOutputOptions,
  opset: number,
): Uint8Array {
  const { height: H, width: W, channels: C } = geometry;
  const b = new OnnxModelBuilder({ opset, graphName: 'transforms' });
  b.input('x', 'float32', ['B', C, H, W]);
  let zeroName: string | null = null;
  let oneName: string | null = null;
  const zero = () => {
    zeroName ??= b.float32([0], []);
    return zeroName;
  };
  const one = () => {
    oneName ??= b.float32([1], []);
    return oneName;
  };
  /** [size of axis] of u, as a 1-D int64 tensor. */
  const dimOf = (u: string, axis: number) =>
    b.op('Slice', [b.op('Shape', [u]), b.int64([axis]), b.int64([axis + 1])]);
  const padTo = (u: string, [hp, wp]: [number, number]) =>
    hp === H && wp === W ? u : b.op('Pad', [u, b.int64([0, 0, 0, 0, 0, 0, hp - H, wp - W])]);

  // The working tensor is, logically, [B*C, P, H, W] (P = 1 until a per-point stage broadcasts
  // it); its memory order is always (b, c, p, y, x). `raw` holds the data, possibly in another
  // shape of the same memory order; `view` reshapes it on demand. Reshapes are only emitted when
  // an op needs the logical shape, so no graph output is a Reshape (which would copy).
  let raw = 'x';
  let view: ((u: string) => string) | null = (u) => b.op('Reshape', [u, b.int64([-1, 1, H, W])]);
  const t = () => {
    if (view) {
      raw = view(raw);
      view = null;
    }
    return raw;
  };
  const set = (u: string, lazyView: ((v: string) => string) | null = null) => {
    raw = u;
    view = lazyView;
  };
  let expanded = false;

  stages.forEach((s, i) => {
    switch (s.kind) {
      case 'warp': {
        const grid = inputName(i, 'grid');
        b.input(grid, 'float32', ['P', H, W, 2]);
        const plane = layout.warpInput[i] ?? [H, W];
        if (!expanded) {
          // One GridSample for all points: input [1, B*C, Hp, Wp], the P grids stacked as a
          // tall grid [1, P*H, W, 2]; output [1, B*C, P*H, W] = [B*C, P, H, W] in memory.
          const src = padTo(b.op('Reshape', [raw, b.int64([1, -1, H, W])]), plane);
          const tall = b.op('Reshape', [grid, b.int64([1, -1, W, 2])]);
          const y = b.op('GridSample', [src, tall], {
            mode: 'bilinear',
            padding_mode: 'zeros',
            align_corners: 0,
          });
          set(y, (u) =>
            b.op('Reshape', [u, b.op('Concat', [dimOf(u, 1), b.int64([-1, H, W])], { axis: 0 })]),
          );
          expanded = true;
        } else {
          // Per-point planes: [B*C, P, H, W] -> [P, B*C, Hp, Wp], grids [P, H, W, 2]
          const src = padTo(b.op('Transpose', [t()], { perm: [1, 0, 2, 3] }), plane);
          const y = b.op('GridSample', [src, grid], {
            mode: 'bilinear',
            padding_mode: 'zeros',
            align_corners: 0,
          });
          set(b.op('Transpose', [y], { perm: [1, 0, 2, 3] }));
        }
        if (s.fill !== 0) {
          const fill = inputName(i, 'fill');
          b.input(fill, 'float32', [1, 'P', H, W]);
          set(b.op('Add', [t(), fill]));
        }
        break;
      }
      case 'brightness':
      case 'contrast':
      case 'gamma':
      case 'background': {
        const p = inputName(i, 'p');
        b.input(p, 'float32', [1, 'P', 1, 1]);
        if (s.kind === 'brightness') {
          set(b.op('Clip', [b.op('Add', [t(), p]), zero(), one()]));
        } else if (s.kind === 'contrast') {
          const half = b.float32([0.5], []);
          set(b.op('Clip', [b.op('Add', [b.op('Mul', [b.op('Sub', [t(), half]), p]), half]), zero(), one()]));
        } else if (s.kind === 'gamma') {
          set(b.op('Pow', [t(), p]));
        } else {
          // Where broadcasts condition and branches together: [B*C, 1|P, H, W] x [1, P, 1, 1].
          const u = t();
          set(b.op('Where', [b.op('Equal', [u, zero()]), p, u]));
        }
        expanded = true;
        break;
      }
      case 'noise': {
        const n = inputName(i, 'noise');
        b.input(n, 'float32', ['BC', 'P', H, W]);
        set(b.op('Clip', [b.op('Add', [t(), n]), zero(), one()]));
        expanded = true;
        break;
      }
      case 'blur': {
        const kv = inputName(i, 'kv');
        const kh = inputName(i, 'kh');
        b.input(kv, 'float32', [1, 'P', H, H]);
        b.input(kh, 'float32', [1, 'P', W, W]);
        set(b.op('MatMul', [b.op('MatMul', [kv, t()]), kh]));
        expanded = true;
        break;
      }
      case 'dilate':
      case 'erode': {
        const shape = b.op('Shape', [t()]);
        const before = Math.floor(s.k / 2);
        const after = s.k - 1 - before;
        let u = b.op('Reshape', [raw, b.int64([-1, 1, H, W])]);
        if (s.kind === 'erode') u = b.op('Neg', [u]);
        u = b.op('MaxPool', [u], {
          kernel_shape: [s.k, s.k],
          strides: [1, 1],
          pads: [before, before, after, after],
        });
        if (s.kind === 'erode') u = b.op('Neg', [u]);
        set(u, (v) => b.op('Reshape', [v, shape]));
        break;
      }
    }
  });

  // Memory order (b, c, p, y, x) -> output (b, p, c, y, x) or (b, p, y, x, c), normalised.
  const mean = broadcastChannelVector(output.mean, C, 'mean');
  const std = broadcastChannelVector(output.std, C, 'std');
  const nhwc = output.layout === 'NHWC';
  let y: string;
  if (C === 1) {
    // One channel: already the output order (NCHW and NHWC alike), any shape will do.
    y = raw;
    if (mean) y = b.op('Sub', [y, b.float32(mean, [])]);
    if (std) y = b.op('Div', [y, b.float32(std, [])]);
  } else {
    y = b.op('Reshape', [raw, b.op('Concat', [dimOf('x', 0), b.int64([C, -1, H, W])], { axis: 0 })]);
    if (mean) y = b.op('Sub', [y, b.float32(mean, [1, C, 1, 1, 1])]);
    if (std) y = b.op('Div', [y, b.float32(std, [1, C, 1, 1, 1])]);
    y = b.op('Transpose', [y], { perm: nhwc ? [0, 2, 3, 4, 1] : [0, 2, 1, 3, 4] });
  }
  if (y === 'x') y = b.op('Identity', ['x']);
  // The runner reads the data in memory order; the output's shape is not [B*P, C, H, W] itself.
  b.output(y, 'float32', null);
  return b.toBytes();
}

// ---------------------------------------------------------------------------------------------
// Compilation

const IDENTITY_WARP: WarpStage = { kind: 'warp', inverse: IDENTITY3, fill: 0, integer: true };

/**
 * Compiles the points of a sweep (each an ordered list of primitive ops) for images of the given
 * geometry. Throws on invalid parameters (non-invertible affine, gamma <= 0, ...).
 */
export function compileTransformPlan(
  points: readonly TransformOps[],
  options: CompileTransformOptions,
): TransformPlan {
  const geometry: ImageGeometry = {
    height: options.height,
    width: options.width,
    channels: options.channels,
  };
  for (const [k, v] of Object.entries(geometry)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer (got ${v})`);
  }
  const output = options.output ?? {};
  broadcastChannelVector(output.mean, geometry.channels, 'mean');
  broadcastChannelVector(output.std, geometry.channels, 'std');
  const opset = options.opset ?? 17;
  if (opset < 16) throw new Error('GridSample needs opset >= 16');

  const uniqueByKey = new Map<string, number>();
  const uniqueStages: TransformStage[][] = [];
  const pointToUnique = points.map((ops) => {
    const stages = reduceOps(ops, geometry);
    const key = JSON.stringify(stages);
    let id = uniqueByKey.get(key);
    if (id === undefined) {
      id = uniqueStages.length;
      uniqueStages.push(stages);
      uniqueByKey.set(key, id);
    }
    return id;
  });

  // Group by structure. The untransformed point (no stages) joins the largest group of single
  // warps as the identity warp (exact: integer coordinates), so a geometric sweep is one run.
  const groupStages: TransformStage[][] = uniqueStages.map((s) => s);
  const signatures = uniqueStages.map((stages) => stages.map(stageSignature).join('|'));
  const identity = uniqueStages.findIndex((s) => s.length === 0);
  if (identity >= 0) {
    const warpCounts = new Map<string, number>();
    for (const sig of signatures) {
      if (sig === 'warp' || sig === 'warp:fill') warpCounts.set(sig, (warpCounts.get(sig) ?? 0) + 1);
    }
    const best = [...warpCounts].sort((a, b) => b[1] - a[1])[0];
    if (best) {
      groupStages[identity] = [IDENTITY_WARP];
      signatures[identity] = best[0];
    }
  }
  const groupBySignature = new Map<string, number>();
  const groupMembers: number[][] = [];
  const groupOf: number[] = [];
  const indexInGroup: number[] = [];
  signatures.forEach((signature, id) => {
    let g = groupBySignature.get(signature);
    if (g === undefined) {
      g = groupMembers.length;
      groupBySignature.set(signature, g);
      groupMembers.push([]);
    }
    groupOf[id] = g;
    indexInGroup[id] = groupMembers[g].length;
    groupMembers[g].push(id);
  });

  const noPost = !output.mean && !output.std && (output.layout ?? 'NCHW') === 'NCHW';
  const groups: TransformGroup[] = groupMembers.map((members) => {
    // Graph structure from a member with the group's own stages (not the merged identity).
    const template = groupStages[members.find((u) => u !== identity) ?? members[0]];
    const warpInput = template.map((s, i) => {
      if (s.kind !== 'warp') return null;
      const exact = members.some((u) => (groupStages[u][i] as WarpStage).integer);
      return exact
        ? ([nextPowerOfTwo(geometry.height), nextPowerOfTwo(geometry.width)] as [number, number])
        : null;
    });
    return {
      signature: signatures[members[0]],
      members,
      stages: members.map((u) => groupStages[u]),
      warpInput,
      model:
        template.length === 0 && noPost
          ? null
          : buildGroupGraph(template, { warpInput }, geometry, output, opset),
    };
  });
  return {
    geometry,
    output,
    pointCount: points.length,
    pointToUnique,
    uniques: uniqueStages.map((stages, id) => ({
      stages,
      group: groupOf[id],
      indexInGroup: indexInGroup[id],
    })),
    groups,
  };
}

// ---------------------------------------------------------------------------------------------
// Running

export interface TransformRunnerOptions {
  /** ONNX Runtime execution providers, e.g. ['cpu'] or ['cuda', 'cpu'] (default ['cpu']). */
  executionProviders?: readonly ort.InferenceSession.ExecutionProviderConfig[];
  /** Intra-op threads of each transform session (default 1). */
  intraOpNumThreads?: number;
}

export interface TransformRunner {
  readonly plan: TransformPlan;
  /**
   * Transforms a batch ([batchSize, C, H, W], NCHW, values in [0,1]) under the given points
   * (default: all points, in order). `sampleIndices[b]` is the global dataset index of sample b
   * (it seeds gaussian_noise). Returns [batchSize * points.length, C, H, W] (or NHWC if asked),
   * sample-major: the image of sample b under pointIndices[q] starts at
   * (b * points.length + q) * C*H*W.
   */
  run(
    batch: Float32Array,
    batchSize: number,
    sampleIndices: readonly number[],
    pointIndices?: readonly number[],
  ): Promise<Float32Array>;
  /** Releases the ONNX Runtime sessions. */
  release(): Promise<void>;
}

/** Batch-independent inputs of one stage of one group member (noise is generated per batch). */
function staticParams(
  stage: TransformStage,
  geometry: ImageGeometry,
  warpInput: [number, number] | null,
): Record<string, Float32Array> {
  const { width: W, height: H } = geometry;
  switch (stage.kind) {
    case 'warp': {
      const [hp, wp] = warpInput ?? [H, W];
      return { grid: warpGrid(stage, W, H, wp, hp), fill: warpFillImage(stage, W, H) };
    }
    case 'brightness':
      return { p: Float32Array.of(stage.delta) };
    case 'contrast':
      return { p: Float32Array.of(stage.factor) };
    case 'gamma':
      return { p: Float32Array.of(stage.g) };
    case 'background':
      return { p: Float32Array.of(stage.value) };
    case 'blur':
      return { kv: blurMatrix(stage.sigma, H, false), kh: blurMatrix(stage.sigma, W, true) };
    case 'noise':
    case 'dilate':
    case 'erode':
      return {};
  }
}

function paramDims(what: string, P: number, geometry: ImageGeometry): number[] {
  const { width: W, height: H } = geometry;
  switch (what) {
    case 'grid':
      return [P, H, W, 2];
    case 'fill':
      return [1, P, H, W];
    case 'kv':
      return [1, P, H, H];
    case 'kh':
      return [1, P, W, W];
    default:
      return [1, P, 1, 1];
  }
}

function concatParams(parts: readonly Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0];
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Float32Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const STATIC_CACHE_BYTES = 64 * 1024 * 1024;

/** Creates ONNX Runtime sessions for every group of the plan. */
export async function createTransformRunner(
  plan: TransformPlan,
  options: TransformRunnerOptions = {},
): Promise<TransformRunner> {
  const { geometry } = plan;
  const { channels: C, height: H, width: W } = geometry;
  const imageSize = C * H * W;
  const planeSize = H * W;
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: options.executionProviders ?? ['cpu'],
    intraOpNumThreads: options.intraOpNumThreads ?? 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
  const sessions: (ort.InferenceSession | null)[] = [];
  try {
    for (const g of plan.groups) {
      sessions.push(g.model ? await ort.InferenceSession.create(g.model, sessionOptions) : null);
    }
  } catch (err) {
    await Promise.all(sessions.map((s) => s?.release()));
    throw err;
  }
  const inputNames = sessions.map((s) => new Set(s?.inputNames ?? []));
  // Batch-independent parameters (grids, fill images, blur matrices), per group member and
  // stage: cached while they fit in STATIC_CACHE_BYTES, recomputed per run beyond (their cost is
  // H*W per point, small next to the B*C*H*W of the run itself).
  const cache = new Map<string, Record<string, Float32Array>[]>();
  let cachedBytes = 0;
  const membersParams = (g: number, m: number): Record<string, Float32Array>[] => {
    const key = `${g}:${m}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const group = plan.groups[g];
    const params = group.stages[m].map((s, i) => staticParams(s, geometry, group.warpInput[i]));
    const bytes = params.reduce((n, r) => n + Object.values(r).reduce((k, a) => k + a.byteLength, 0), 0);
    if (cachedBytes + bytes <= STATIC_CACHE_BYTES) {
      cache.set(key, params);
      cachedBytes += bytes;
    }
    return params;
  };
  // The concatenated inputs of the last slot list of each group (a sweep repeats it every batch).
  const lastFeeds = new Map<number, { key: string; feeds: Record<string, ort.Tensor> }>();

  async function runGroup(
    g: number,
    slots: readonly number[],
    batch: Float32Array,
    batchSize: number,
    sampleIndices: readonly number[],
  ): Promise<Float32Array> {
    const group = plan.groups[g];
    const session = sessions[g];
    const P = slots.length;
    const x = batch.subarray(0, batchSize * imageSize);
    if (!session) {
      // Identity without post-processing: replicate each sample P times.
      if (P === 1) return x.slice();
      const out = new Float32Array(batchSize * P * imageSize);
      for (let b = 0; b < batchSize; b++) {
        const image = x.subarray(b * imageSize, (b + 1) * imageSize);
        for (let q = 0; q < P; q++) out.set(image, (b * P + q) * imageSize);
      }
      return out;
    }
    const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, [batchSize, C, H, W]) };
    const template = group.stages[0];
    const slotKey = slots.join(',');
    const last = lastFeeds.get(g);
    if (last && last.key === slotKey) {
      Object.assign(feeds, last.feeds);
    } else {
      const statics = slots.map((m) => membersParams(g, m));
      const fixed: Record<string, ort.Tensor> = {};
      template.forEach((_, i) => {
        for (const what of Object.keys(statics[0][i])) {
          const name = inputName(i, what);
          if (!inputNames[g].has(name)) continue;
          const parts = statics.map((params) => params[i][what]);
          fixed[name] = new ort.Tensor('float32', concatParams(parts), paramDims(what, P, geometry));
        }
      });
      lastFeeds.set(g, { key: slotKey, feeds: fixed });
      Object.assign(feeds, fixed);
    }
    template.forEach((stage, i) => {
      if (stage.kind !== 'noise') return;
      // [B*C, P, H, W]: element (b, c, q, y, x) from (seed_q, sampleIndices[b], c*H*W + y*W + x)
      const noise = new Float32Array(batchSize * P * imageSize);
      const z = new Float32Array(imageSize);
      slots.forEach((m, q) => {
        const s = group.stages[m][i] as Extract<TransformStage, { kind: 'noise' }>;
        for (let b = 0; b < batchSize; b++) {
          fillGaussian(z, 0, imageSize, s.seed, sampleIndices[b], s.sigma);
          for (let c = 0; c < C; c++) {
            noise.set(z.subarray(c * planeSize, (c + 1) * planeSize), ((b * C + c) * P + q) * planeSize);
          }
        }
      });
      feeds[inputName(i, 'noise')] = new ort.Tensor('float32', noise, [batchSize * C, P, H, W]);
    });
    const result = await session.run(feeds);
    return result[session.outputNames[0]].data as Float32Array;
  }

  return {
    plan,
    async run(batch, batchSize, sampleIndices, pointIndices) {
      if (!Number.isInteger(batchSize) || batchSize < 1) {
        throw new Error(`batchSize must be a positive integer (got ${batchSize})`);
      }
      if (batch.length < batchSize * imageSize) {
        throw new Error(`batch holds ${batch.length} values, ${batchSize * imageSize} needed`);
      }
      if (sampleIndices.length < batchSize) throw new Error('sampleIndices needs one index per sample');
      const points = pointIndices ?? plan.pointToUnique.map((_, i) => i);
      for (const p of points) {
        if (!Number.isInteger(p) || p < 0 || p >= plan.pointCount) throw new Error(`no point ${p}`);
      }
      if (batchSize * points.length * imageSize >= 2 ** 31) {
        // GPU kernels index with 32-bit integers; no typed array that large either.
        throw new Error(
          'batchSize x points x C x H x W must stay below 2^31: run smaller batches or fewer points',
        );
      }
      // Group members needed, per group, in first-use order.
      const needed = new Map<number, number[]>();
      const slot = new Map<number, number>(); // unique id -> position in its group's run
      for (const p of points) {
        const u = plan.pointToUnique[p];
        if (slot.has(u)) continue;
        const { group, indexInGroup } = plan.uniques[u];
        let list = needed.get(group);
        if (!list) {
          list = [];
          needed.set(group, list);
        }
        slot.set(u, list.length);
        list.push(indexInGroup);
      }
      const results = new Map<number, Float32Array>();
      for (const [g, slots] of needed) {
        results.set(g, await runGroup(g, slots, batch, batchSize, sampleIndices));
      }
      // One group, each point once, in order: its output is the answer.
      if (needed.size === 1 && slot.size === points.length) {
        return results.values().next().value as Float32Array;
      }
      const Q = points.length;
      const out = new Float32Array(batchSize * Q * imageSize);
      points.forEach((p, q) => {
        const u = plan.pointToUnique[p];
        const g = plan.uniques[u].group;
        const data = results.get(g) as Float32Array;
        const P = (needed.get(g) as number[]).length;
        const s = slot.get(u) as number;
        for (let b = 0; b < batchSize; b++) {
          const from = (b * P + s) * imageSize;
          out.set(data.subarray(from, from + imageSize), (b * Q + q) * imageSize);
        }
      });
      return out;
    },
    async release() {
      await Promise.all(sessions.map((s) => s?.release()));
    },
  };
}
