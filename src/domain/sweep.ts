// Transform sweeps: validation and expansion of the run request's `transforms` into an ordered list
// of transform points, canonical point keys (`rotate=90`, `rotate=15,scale=1.2`), and the pixel
// geometry of geometric transforms (SPEC section 3). Pure: no I/O.
//
// Geometry conventions (SPEC 3): pixel coordinates (x right, y DOWN), centre c = ((W-1)/2, (H-1)/2).
// Every geometric op is defined by its forward map about the centre; the sampler needs the inverse
// map (output pixel -> source pixel), which `geometricMatrix` composes for a run of geometric ops.
// - rotate(deg): counter-clockwise on screen for deg > 0 (torchvision's sign). Inverse in centred
//   coordinates: [[cos, -sin], [sin, cos]]; multiples of 90 degrees use exact 0/+-1.
// - scale(s): zoom about the centre (s > 1 enlarges the content). Inverse: (out - c) / s.
// - translate(dx, dy): content moves right/down by (dx, dy) pixels (unit "fraction": dx*W, dy*H).
// - shear(deg): x-shear as torchvision's affine(shear=[deg, 0]): forward [[1, -tan], [0, 1]].
// - hflip / vflip: mirror about the vertical / horizontal centre line (exact permutations).
// - affine([a, b, tx, d, e, ty]): forward map about the centre, out - c = [[a,b],[d,e]](src - c) + t.
// Consecutive geometric ops of one point are composed into ONE resampling (not resampled one by
// one), so they must share their fill value.
import { mulberry32 } from './stats.js';

export type GeometricType =
  | 'rotate'
  | 'scale'
  | 'translate'
  | 'translate_x'
  | 'translate_y'
  | 'shear'
  | 'hflip'
  | 'vflip'
  | 'affine';
export type PixelType =
  | 'brightness'
  | 'contrast'
  | 'gamma'
  | 'gaussian_noise'
  | 'gaussian_blur'
  | 'dilate'
  | 'erode'
  | 'background';
export type TransformType = 'identity' | GeometricType | PixelType;
export type TranslateUnit = 'px' | 'fraction';

/** A translate value: `[dx, dy]` or `{dx, dy}`. */
export type TranslateValue = readonly [number, number] | { readonly dx: number; readonly dy: number };
/** An affine forward matrix about the centre: 6 numbers `[a, b, tx, d, e, ty]` or `[[a, b, tx], [d, e, ty]]`. */
export type AffineValue = readonly number[] | readonly (readonly number[])[];
export type FamilyValue = number | boolean | TranslateValue | AffineValue;

export interface FamilyOptions {
  /** Geometric types only: value for points that fall outside the source image, in [0, 1]. Default 0. */
  fill?: number;
  /** translate, translate_x, translate_y only: pixels (default) or fractions of W / H. */
  unit?: TranslateUnit;
  /** gaussian_noise only: the noise seed (default: `seed`, else 0). */
  noiseSeed?: number;
}
export interface RangeSpec {
  from: number;
  to: number;
  step: number;
  /** Include `to` when the range reaches it. Default false (end exclusive). */
  inclusive?: boolean;
}
export interface ValuesFamily extends FamilyOptions {
  type: TransformType;
  values: readonly FamilyValue[];
  /** gaussian_noise: the noise seed. */
  seed?: number;
}
export interface RangeFamily extends FamilyOptions {
  type: TransformType;
  range: RangeSpec;
  /** gaussian_noise: the noise seed. */
  seed?: number;
}
export interface UniformFamily extends FamilyOptions {
  type: TransformType;
  /** `{min, max}` (or the SPEC's `[min, max]`): `samples` values drawn uniformly in [min, max). */
  uniform: { min: number; max: number } | readonly [number, number];
  samples: number;
  /** PRNG seed (default 0); same seed, same values, on any machine. */
  seed?: number;
}
/** `identity`, `hflip`, `vflip` without values: a single point. */
export interface FixedFamily extends FamilyOptions {
  type: 'identity' | 'hflip' | 'vflip';
}
/** Cartesian product of the families' points (first family outermost); params applied in order. */
export interface GridFamily {
  type: 'grid';
  of: readonly TransformFamily[];
}
export type TransformFamily = ValuesFamily | RangeFamily | UniformFamily | FixedFamily | GridFamily;

export type GeometricOp =
  | { op: 'rotate'; degrees: number; fill: number }
  | { op: 'scale'; factor: number; fill: number }
  | { op: 'translate'; dx: number; dy: number; unit: TranslateUnit; fill: number }
  | { op: 'shear'; degrees: number; fill: number }
  | { op: 'hflip'; fill: number }
  | { op: 'vflip'; fill: number }
  | {
      op: 'affine';
      /** Forward map about the centre, row-major [a, b, tx, d, e, ty]. */
      matrix: [number, number, number, number, number, number];
      fill: number;
    };
export type PixelOp =
  | { op: 'brightness'; delta: number }
  | { op: 'contrast'; factor: number }
  | { op: 'gamma'; gamma: number }
  | { op: 'gaussian_noise'; sigma: number; seed: number }
  | { op: 'gaussian_blur'; sigma: number }
  | { op: 'dilate'; k: number }
  | { op: 'erode'; k: number }
  | { op: 'background'; value: number };
/** A primitive operation, in the order it is applied. Switch on `op`. */
export type TransformOp = GeometricOp | PixelOp;

export type ParamValue = number | number[] | boolean;
export type PointParams = Record<string, ParamValue>;

export interface TransformPoint {
  /** As reported, e.g. `{rotate: 15, scale: 1.2}`; key order = application order. */
  params: PointParams;
  /** The primitive operations, in application order (may be empty: identity, hflip=false). */
  ops: TransformOp[];
}

export type SweepErrorCode = 'INVALID_SWEEP' | 'SWEEP_TOO_LARGE' | 'INVALID_POINT_KEY';

/**
 * A bad sweep (or point key). `statusCode` 422 lets the HTTP error handler turn it into a
 * problem+json with this `code` as is; `path` names the family, e.g. `transforms[1].of[0]`.
 */
export class SweepError extends Error {
  readonly statusCode = 422;
  constructor(
    readonly code: SweepErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(message);
    this.name = 'SweepError';
  }
}

export interface SweepLimits {
  /** Most points the whole sweep may have (after grid products). */
  maxPoints: number;
  /** How families combine; only `concat` (points one after another) for now. */
  combine?: 'concat';
}

const GEOMETRIC_TYPES: ReadonlySet<string> = new Set<GeometricType>([
  'rotate',
  'scale',
  'translate',
  'translate_x',
  'translate_y',
  'shear',
  'hflip',
  'vflip',
  'affine',
]);
const SCALAR_TYPES: ReadonlySet<string> = new Set<TransformType>([
  'rotate',
  'scale',
  'translate_x',
  'translate_y',
  'shear',
  'brightness',
  'contrast',
  'gamma',
  'gaussian_noise',
  'gaussian_blur',
  'dilate',
  'erode',
  'background',
]);
const ALL_TYPES: ReadonlySet<string> = new Set<string>([
  'identity',
  'translate',
  'hflip',
  'vflip',
  'affine',
  ...SCALAR_TYPES,
]);
const TRANSLATE_TYPES: ReadonlySet<string> = new Set(['translate', 'translate_x', 'translate_y']);
const FAMILY_KEYS: ReadonlySet<string> = new Set([
  'type',
  'values',
  'range',
  'uniform',
  'samples',
  'seed',
  'fill',
  'unit',
  'noiseSeed',
  'of',
]);

/** Every parameter name a point can carry (its type, `_frac` for translations in fractions). */
export const PARAM_KEYS: ReadonlySet<string> = new Set([
  ...ALL_TYPES,
  'translate_frac',
  'translate_x_frac',
  'translate_y_frac',
]);

export function isGeometricOp(op: TransformOp): op is GeometricOp {
  return GEOMETRIC_TYPES.has(op.op);
}

// ---------------------------------------------------------------------------------------------
// Validation helpers

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fail(path: string, type: string | undefined, problem: string): never {
  const where = type ? `${path} (${type})` : path;
  throw new SweepError('INVALID_SWEEP', `${where}: ${problem}`, path);
}

function finiteNumber(v: unknown, path: string, type: string | undefined, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    fail(path, type, `${what} must be a finite number, got ${describe(v)}`);
  }
  return v === 0 ? 0 : v; // -0 -> 0
}

function safeInteger(v: unknown, path: string, type: string | undefined, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
    fail(path, type, `${what} must be an integer, got ${describe(v)}`);
  }
  return v === 0 ? 0 : v;
}

function describe(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

/** Largest gaussian_blur sigma (pixels). */
export const MAX_BLUR_SIGMA = 1000;

/** Checks a scalar parameter value against its type's domain; returns it (-0 normalised to 0). */
function checkScalar(type: string, v: unknown, path: string, what: string): number {
  const x = finiteNumber(v, path, type, what);
  switch (type) {
    case 'scale':
      if (!(x > 0)) fail(path, type, `${what} must be > 0, got ${x}`);
      break;
    case 'shear':
      if (!(Math.abs(x) < 90)) fail(path, type, `${what} must be in (-90, 90) degrees, got ${x}`);
      break;
    case 'contrast':
      if (!(x >= 0)) fail(path, type, `${what} must be >= 0, got ${x}`);
      break;
    case 'gamma':
      if (!(x > 0)) fail(path, type, `${what} must be > 0, got ${x}`);
      break;
    case 'gaussian_noise':
      if (!(x >= 0)) fail(path, type, `${what} (sigma) must be >= 0, got ${x}`);
      break;
    case 'gaussian_blur':
      // The kernel has 2 ceil(3 sigma) + 1 taps; far beyond the image size the blur is flat anyway.
      if (!(x >= 0 && x <= MAX_BLUR_SIGMA))
        fail(path, type, `${what} (sigma) must be in [0, ${MAX_BLUR_SIGMA}], got ${x}`);
      break;
    case 'dilate':
    case 'erode':
      if (!Number.isSafeInteger(x) || x < 1)
        fail(path, type, `${what} (k) must be an integer >= 1, got ${x}`);
      break;
    case 'background':
      if (!(x >= 0 && x <= 1)) fail(path, type, `${what} must be in [0, 1], got ${x}`);
      break;
  }
  return x;
}

// ---------------------------------------------------------------------------------------------
// Ranges

/** Number of points of a range, computed arithmetically (nothing is materialised). */
function rangeCount(r: RangeSpec, path: string, type: string): number {
  const q = (r.to - r.from) / r.step;
  if (r.to === r.from) return r.inclusive ? 1 : 0;
  if (!(q > 0)) fail(path, type, `range step ${r.step} goes away from 'to' (from ${r.from} to ${r.to})`);
  if (!Number.isFinite(q)) return Number.POSITIVE_INFINITY;
  // Tolerance for floating error in (to - from) / step, e.g. (1 - 0) / 0.1.
  const tol = 1e-9 * Math.max(1, q);
  return r.inclusive ? Math.floor(q + tol) + 1 : Math.ceil(q - tol);
}

/** Rounds v to 10 significant digits relative to the range's magnitude (so 1e-17 noise becomes 0). */
function roundToRange(v: number, magnitude: number): number {
  if (magnitude === 0 || !Number.isFinite(magnitude)) return v;
  const q = 9 - Math.floor(Math.log10(magnitude));
  let r: number;
  if (q >= 0 && q <= 22) {
    const p = 10 ** q; // exact power of ten, so N / p is the double nearest to the decimal N e-q
    r = Math.round(v * p) / p;
  } else if (q < 0) {
    const p = 10 ** -q;
    r = Math.round(v / p) * p;
  } else {
    r = Number(v.toPrecision(10));
  }
  return r + 0; // -0 -> 0
}

function parseRange(v: unknown, path: string, type: string): RangeSpec {
  if (!isObject(v)) fail(path, type, `range must be an object {from, to, step, inclusive?}`);
  for (const k of Object.keys(v)) {
    if (!['from', 'to', 'step', 'inclusive'].includes(k)) fail(path, type, `unknown range property '${k}'`);
  }
  const from = finiteNumber(v.from, path, type, 'range.from');
  const to = finiteNumber(v.to, path, type, 'range.to');
  const step = finiteNumber(v.step, path, type, 'range.step');
  if (step === 0) fail(path, type, 'range.step must not be 0');
  if (v.inclusive !== undefined && typeof v.inclusive !== 'boolean') {
    fail(path, type, 'range.inclusive must be a boolean');
  }
  return { from, to, step, inclusive: v.inclusive === true };
}

function parseUniform(v: unknown, path: string, type: string): { min: number; max: number } {
  let min: unknown;
  let max: unknown;
  if (Array.isArray(v)) {
    if (v.length !== 2) fail(path, type, 'uniform must be {min, max} or [min, max]');
    [min, max] = v;
  } else if (isObject(v)) {
    for (const k of Object.keys(v)) {
      if (k !== 'min' && k !== 'max') fail(path, type, `unknown uniform property '${k}'`);
    }
    min = v.min;
    max = v.max;
  } else {
    fail(path, type, 'uniform must be {min, max} or [min, max]');
  }
  const lo = finiteNumber(min, path, type, 'uniform.min');
  const hi = finiteNumber(max, path, type, 'uniform.max');
  if (lo > hi) fail(path, type, `uniform.min ${lo} is greater than uniform.max ${hi}`);
  return { min: lo, max: hi };
}

// ---------------------------------------------------------------------------------------------
// Families: a validated, not yet materialised form

interface LeafPlan {
  kind: 'leaf';
  path: string;
  type: TransformType;
  key: string;
  count: number;
  fill: number;
  unit: TranslateUnit;
  noiseSeed: number;
  source:
    | { kind: 'values'; values: readonly unknown[] }
    | { kind: 'range'; range: RangeSpec }
    | { kind: 'uniform'; min: number; max: number; samples: number; seed: number }
    | { kind: 'fixed' };
}
interface GridPlan {
  kind: 'grid';
  path: string;
  keys: string[];
  count: number;
  of: Plan[];
}
type Plan = LeafPlan | GridPlan;

function planFamily(f: unknown, path: string, maxPoints: number): Plan {
  if (!isObject(f)) fail(path, undefined, 'a transform family must be an object');
  const type = f.type;
  if (typeof type !== 'string') fail(path, undefined, "missing 'type'");
  for (const k of Object.keys(f)) {
    if (!FAMILY_KEYS.has(k)) fail(path, type, `unknown property '${k}'`);
  }
  if (type === 'grid') {
    for (const k of Object.keys(f)) {
      if (k !== 'type' && k !== 'of') fail(path, type, `property '${k}' is not allowed on a grid`);
    }
    if (!Array.isArray(f.of) || f.of.length === 0)
      fail(path, type, "'of' must be a non-empty list of families");
    const of = f.of.map((g, i) => planFamily(g, `${path}.of[${i}]`, maxPoints));
    const keys: string[] = [];
    let count = 1;
    for (const p of of) {
      for (const k of p.kind === 'grid' ? p.keys : [p.key]) {
        if (keys.includes(k)) fail(path, type, `parameter '${k}' appears twice in the grid`);
        keys.push(k);
      }
      count *= p.count;
    }
    return { kind: 'grid', path, keys, count, of };
  }
  if (!ALL_TYPES.has(type)) {
    fail(path, undefined, `unknown transform type '${type}' (known: grid, ${[...ALL_TYPES].join(', ')})`);
  }
  const t = type as TransformType;
  const geometric = GEOMETRIC_TYPES.has(t);

  let fill = 0;
  if (f.fill !== undefined) {
    if (!geometric) fail(path, t, "'fill' applies to geometric transforms only");
    fill = finiteNumber(f.fill, path, t, 'fill');
    if (fill < 0 || fill > 1) fail(path, t, `fill must be in [0, 1], got ${fill}`);
  }
  let unit: TranslateUnit = 'px';
  if (f.unit !== undefined) {
    if (!TRANSLATE_TYPES.has(t)) fail(path, t, "'unit' applies to translate, translate_x, translate_y only");
    if (f.unit !== 'px' && f.unit !== 'fraction') fail(path, t, "unit must be 'px' or 'fraction'");
    unit = f.unit;
  }
  if (f.noiseSeed !== undefined && t !== 'gaussian_noise') {
    fail(path, t, "'noiseSeed' applies to gaussian_noise only");
  }
  const seed = f.seed === undefined ? undefined : safeInteger(f.seed, path, t, 'seed');
  const noiseSeed = f.noiseSeed === undefined ? (seed ?? 0) : safeInteger(f.noiseSeed, path, t, 'noiseSeed');
  const key = TRANSLATE_TYPES.has(t) && unit === 'fraction' ? `${t}_frac` : t;

  const sources = (['values', 'range', 'uniform'] as const).filter((k) => f[k] !== undefined);
  if (sources.length > 1)
    fail(path, t, `give only one of values, range, uniform (got ${sources.join(', ')})`);
  if (f.samples !== undefined && sources[0] !== 'uniform') fail(path, t, "'samples' goes with 'uniform'");
  if (seed !== undefined && sources[0] !== 'uniform' && t !== 'gaussian_noise') {
    fail(path, t, "'seed' goes with 'uniform' (or gaussian_noise)");
  }
  const base = { kind: 'leaf' as const, path, type: t, key, fill, unit, noiseSeed };

  if (sources.length === 0) {
    if (t === 'identity' || t === 'hflip' || t === 'vflip')
      return { ...base, count: 1, source: { kind: 'fixed' } };
    fail(path, t, 'missing values, range or uniform');
  }
  if (t === 'identity') fail(path, t, 'identity takes no values');
  const src = sources[0];
  if (src === 'values') {
    if (!Array.isArray(f.values) || f.values.length === 0) fail(path, t, 'values must be a non-empty list');
    if (f.values.length > maxPoints) {
      throw new SweepError(
        'SWEEP_TOO_LARGE',
        `${path} (${t}): ${f.values.length} values, more than the limit of ${maxPoints} points`,
        path,
      );
    }
    return { ...base, count: f.values.length, source: { kind: 'values', values: f.values } };
  }
  if (!SCALAR_TYPES.has(t)) {
    const hint = t === 'translate' ? ' (use translate_x / translate_y families, e.g. in a grid)' : '';
    fail(path, t, `${src} needs a scalar parameter; give explicit values${hint}`);
  }
  if (src === 'range') {
    const range = parseRange(f.range, path, t);
    const count = rangeCount(range, path, t);
    if (count === 0) fail(path, t, `range from ${range.from} to ${range.to} (exclusive) has no points`);
    return { ...base, count, source: { kind: 'range', range } };
  }
  const { min, max } = parseUniform(f.uniform, path, t);
  if (f.samples === undefined) fail(path, t, "uniform needs 'samples'");
  const samples = safeInteger(f.samples, path, t, 'samples');
  if (samples < 1) fail(path, t, `samples must be >= 1, got ${samples}`);
  return { ...base, count: samples, source: { kind: 'uniform', min, max, samples, seed: seed ?? 0 } };
}

// ---------------------------------------------------------------------------------------------
// Materialisation

function leafValue(plan: LeafPlan, raw: unknown, what: string): { value: ParamValue; ops: TransformOp[] } {
  const { type: t, path, fill } = plan;
  switch (t) {
    case 'hflip':
    case 'vflip': {
      if (typeof raw !== 'boolean') fail(path, t, `${what} must be a boolean, got ${describe(raw)}`);
      return { value: raw, ops: raw ? [{ op: t, fill }] : [] };
    }
    case 'translate': {
      let dx: unknown;
      let dy: unknown;
      if (Array.isArray(raw) && raw.length === 2) [dx, dy] = raw;
      else if (isObject(raw) && Object.keys(raw).every((k) => k === 'dx' || k === 'dy')) ({ dx, dy } = raw);
      else fail(path, t, `${what} must be [dx, dy] or {dx, dy}`);
      const x = finiteNumber(dx, path, t, `${what}.dx`);
      const y = finiteNumber(dy, path, t, `${what}.dy`);
      return { value: [x, y], ops: [{ op: 'translate', dx: x, dy: y, unit: plan.unit, fill }] };
    }
    case 'affine': {
      let flat: unknown[];
      if (Array.isArray(raw) && raw.length === 6) flat = raw;
      else if (
        Array.isArray(raw) &&
        raw.length === 2 &&
        raw.every((row) => Array.isArray(row) && row.length === 3)
      ) {
        flat = [...(raw[0] as unknown[]), ...(raw[1] as unknown[])];
      } else fail(path, t, `${what} must be 6 numbers [a, b, tx, d, e, ty] or [[a, b, tx], [d, e, ty]]`);
      const m = flat.map((x, k) => finiteNumber(x, path, t, `${what}[${k}]`));
      const det = m[0] * m[4] - m[1] * m[3];
      if (!(Math.abs(det) > 1e-12)) fail(path, t, `${what}: the 2x2 part is singular (det ${det})`);
      const matrix: [number, number, number, number, number, number] = [m[0], m[1], m[2], m[3], m[4], m[5]];
      return { value: [...matrix], ops: [{ op: 'affine', matrix, fill }] };
    }
    case 'identity':
      return { value: true, ops: [] };
    default: {
      const x = checkScalar(t, raw, path, what);
      return { value: x, ops: [scalarOp(plan, x)] };
    }
  }
}

function scalarOp(plan: LeafPlan, x: number): TransformOp {
  const { fill, unit } = plan;
  switch (plan.type) {
    case 'rotate':
      return { op: 'rotate', degrees: x, fill };
    case 'scale':
      return { op: 'scale', factor: x, fill };
    case 'translate_x':
      return { op: 'translate', dx: x, dy: 0, unit, fill };
    case 'translate_y':
      return { op: 'translate', dx: 0, dy: x, unit, fill };
    case 'shear':
      return { op: 'shear', degrees: x, fill };
    case 'brightness':
      return { op: 'brightness', delta: x };
    case 'contrast':
      return { op: 'contrast', factor: x };
    case 'gamma':
      return { op: 'gamma', gamma: x };
    case 'gaussian_noise':
      return { op: 'gaussian_noise', sigma: x, seed: plan.noiseSeed };
    case 'gaussian_blur':
      return { op: 'gaussian_blur', sigma: x };
    case 'dilate':
      return { op: 'dilate', k: x };
    case 'erode':
      return { op: 'erode', k: x };
    case 'background':
      return { op: 'background', value: x };
    default:
      throw new Error(`not a scalar transform type: ${plan.type}`);
  }
}

function leafRawValues(plan: LeafPlan): unknown[] {
  const s = plan.source;
  switch (s.kind) {
    case 'fixed':
      return [true];
    case 'values':
      return [...s.values];
    case 'range': {
      const { from, step } = s.range;
      const magnitude = Math.max(Math.abs(from), Math.abs(s.range.to), Math.abs(step));
      const out: number[] = new Array(plan.count);
      for (let k = 0; k < plan.count; k++) out[k] = roundToRange(from + k * step, magnitude);
      return out;
    }
    case 'uniform': {
      const next = mulberry32(s.seed);
      const out: number[] = new Array(s.samples);
      const span = s.max - s.min;
      for (let k = 0; k < s.samples; k++) out[k] = s.min + next() * span;
      return out;
    }
  }
}

function materialise(plan: Plan): TransformPoint[] {
  if (plan.kind === 'leaf') {
    const kind = plan.source.kind;
    return leafRawValues(plan).map((raw, k) => {
      const what = kind === 'values' ? `values[${k}]` : kind === 'range' ? 'range value' : 'value';
      const { value, ops } = leafValue(plan, raw, what);
      return { params: { [plan.key]: value }, ops };
    });
  }
  let acc: TransformPoint[] = [{ params: {}, ops: [] }];
  for (const child of plan.of) {
    const pts = materialise(child);
    const next: TransformPoint[] = [];
    for (const a of acc) {
      for (const b of pts) next.push({ params: { ...a.params, ...b.params }, ops: [...a.ops, ...b.ops] });
    }
    acc = next;
  }
  for (const p of acc) checkFills(p.ops, plan.path);
  return acc;
}

function checkFills(ops: readonly TransformOp[], path: string): void {
  let prev: GeometricOp | null = null;
  for (const op of ops) {
    if (!isGeometricOp(op)) {
      prev = null;
      continue;
    }
    if (prev && prev.fill !== op.fill) {
      fail(
        path,
        'grid',
        `consecutive geometric transforms ${prev.op} and ${op.op} are resampled once and must share one fill value (${prev.fill} vs ${op.fill})`,
      );
    }
    prev = op;
  }
}

/**
 * Validates a sweep and expands it into its transform points (families concatenated in order; a
 * grid is the product of its families, first family outermost). Throws SweepError: INVALID_SWEEP
 * for any bad input (message names the family, e.g. `transforms[1].of[0] (rotate): ...`),
 * SWEEP_TOO_LARGE when there would be more than `limits.maxPoints` points; the count is computed
 * arithmetically before anything is materialised.
 */
export function expandSweep(families: readonly TransformFamily[], limits: SweepLimits): TransformPoint[] {
  const { maxPoints } = limits;
  if (!Number.isSafeInteger(maxPoints) || maxPoints < 1)
    throw new RangeError('maxPoints must be an integer >= 1');
  if (limits.combine !== undefined && limits.combine !== 'concat') {
    throw new SweepError(
      'INVALID_SWEEP',
      `combine: unknown mode '${String(limits.combine)}' (known: concat)`,
    );
  }
  const list: unknown = families;
  if (!Array.isArray(list) || list.length === 0) {
    throw new SweepError('INVALID_SWEEP', 'transforms: give at least one transform family', 'transforms');
  }
  const plans = list.map((f, i) => planFamily(f, `transforms[${i}]`, maxPoints));
  let total = 0;
  for (const p of plans) total += p.count;
  if (!(total <= maxPoints)) {
    const parts = plans.map((p) => `${p.path}: ${Number.isFinite(p.count) ? p.count : 'unbounded'}`);
    throw new SweepError(
      'SWEEP_TOO_LARGE',
      `the sweep has ${Number.isFinite(total) ? total : 'too many'} points, more than the limit of ${maxPoints} (${parts.join('; ')})`,
    );
  }
  const points: TransformPoint[] = [];
  for (const p of plans) for (const pt of materialise(p)) points.push(pt);
  refuseAmbiguousPoints(points);
  return points;
}

/**
 * Points are named by their params (results, gates' at(...), examples, comparisons), so two points
 * with the same params must be the same transform. Families that differ only in what params leave
 * out (a gaussian_noise seed, a fill, a translate unit) would be two measurements under one name:
 * refused. Exact repeats are allowed (they measure the same thing twice).
 */
function refuseAmbiguousPoints(points: readonly TransformPoint[]): void {
  const seen = new Map<string, { index: number; ops: string }>();
  points.forEach((pt, index) => {
    const key = pointKey(pt.params);
    const ops = JSON.stringify(pt.ops);
    const first = seen.get(key);
    if (!first) {
      seen.set(key, { index, ops });
    } else if (first.ops !== ops) {
      throw new SweepError(
        'INVALID_SWEEP',
        `points ${first.index} and ${index} are both ${key || '(no params)'} but transform differently ` +
          `(${first.ops} vs ${ops}): their seed, fill or unit is not part of a point's params, so ` +
          'they could not be told apart in the results; sweep such variants in separate runs',
      );
    }
  });
}

/** Number of points of a sweep without materialising it (validates too). */
export function countSweep(families: readonly TransformFamily[]): number {
  const list: unknown = families;
  if (!Array.isArray(list) || list.length === 0) {
    throw new SweepError('INVALID_SWEEP', 'transforms: give at least one transform family', 'transforms');
  }
  let total = 0;
  for (let i = 0; i < list.length; i++) {
    total += planFamily(list[i], `transforms[${i}]`, Number.MAX_SAFE_INTEGER).count;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Point keys

function formatNumber(x: number): string {
  return String(x === 0 ? 0 : x);
}

/**
 * Canonical text of a point's params, in their order: `rotate=90`, `rotate=15,scale=1.2`,
 * `translate=[2,-3]`, `hflip` (true booleans print as the bare name), `hflip=false`, `identity`.
 */
export function pointKey(params: PointParams): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === true) parts.push(k);
    else if (v === false) parts.push(`${k}=false`);
    else if (Array.isArray(v)) parts.push(`${k}=[${v.map(formatNumber).join(',')}]`);
    else parts.push(`${k}=${formatNumber(v)}`);
  }
  return parts.join(',');
}

const NUMBER_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function parseNumberToken(s: string, key: string): number {
  const t = s.trim();
  if (!NUMBER_RE.test(t)) throw new SweepError('INVALID_POINT_KEY', `'${key}': '${t}' is not a number`);
  const x = Number(t);
  if (!Number.isFinite(x))
    throw new SweepError('INVALID_POINT_KEY', `'${key}': '${t}' is not a finite number`);
  return x === 0 ? 0 : x;
}

/** Inverse of pointKey; accepts spaces and `name=true`. Throws SweepError INVALID_POINT_KEY. */
export function parsePointKey(key: string): PointParams {
  if (typeof key !== 'string' || key.trim() === '')
    throw new SweepError('INVALID_POINT_KEY', 'empty point key');
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < key.length; i++) {
    const ch = key[i];
    if (ch === '[') depth++;
    else if (ch === ']') {
      depth--;
      if (depth < 0) throw new SweepError('INVALID_POINT_KEY', `unbalanced ']' in '${key}'`);
    } else if (ch === ',' && depth === 0) {
      parts.push(key.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw new SweepError('INVALID_POINT_KEY', `unbalanced '[' in '${key}'`);
  parts.push(key.slice(start));
  const out: PointParams = {};
  for (const part of parts) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim();
    if (!PARAM_KEYS.has(name)) {
      throw new SweepError('INVALID_POINT_KEY', `unknown parameter '${name}' in point key '${key}'`);
    }
    if (Object.hasOwn(out, name))
      throw new SweepError('INVALID_POINT_KEY', `parameter '${name}' given twice`);
    if (eq < 0) {
      out[name] = true;
      continue;
    }
    const raw = part.slice(eq + 1).trim();
    if (raw === 'true') out[name] = true;
    else if (raw === 'false') out[name] = false;
    else if (raw.startsWith('[') && raw.endsWith(']')) {
      const inner = raw.slice(1, -1).trim();
      out[name] = inner === '' ? [] : inner.split(',').map((s) => parseNumberToken(s, name));
    } else out[name] = parseNumberToken(raw, name);
  }
  return out;
}

/** Same parameters and values, in any order (e.g. to resolve `accuracy.at(scale=1.2,rotate=15)`). */
export function samePoint(a: PointParams, b: PointParams): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k)) return false;
    const x = a[k];
    const y = b[k];
    if (Array.isArray(x) || Array.isArray(y)) {
      if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false;
      for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    } else if (x !== y) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Geometry

/** Row-major 2x3 [a, b, c, d, e, f]: src_x = a*x + b*y + c, src_y = d*x + e*y + f (pixel coords). */
export type AffineMatrix = [number, number, number, number, number, number];

/** cos and sin of an angle in degrees, exact (0, +-1) at multiples of 90. */
export function cosSinDegrees(deg: number): [number, number] {
  const r = ((deg % 360) + 360) % 360;
  if (r === 0) return [1, 0];
  if (r === 90) return [0, 1];
  if (r === 180) return [-1, 0];
  if (r === 270) return [0, -1];
  const rad = (r * Math.PI) / 180;
  return [Math.cos(rad), Math.sin(rad)];
}

/** Inverse map of one op in centred coordinates: src_c = L out_c + u, as [l00, l01, u0, l10, l11, u1]. */
function inverseCentred(op: GeometricOp, width: number, height: number): AffineMatrix {
  switch (op.op) {
    case 'rotate': {
      const [c, s] = cosSinDegrees(op.degrees);
      return [c, -s, 0, s, c, 0];
    }
    case 'scale': {
      const k = 1 / op.factor;
      return [k, 0, 0, 0, k, 0];
    }
    case 'translate': {
      const dx = op.unit === 'fraction' ? op.dx * width : op.dx;
      const dy = op.unit === 'fraction' ? op.dy * height : op.dy;
      return [1, 0, -dx, 0, 1, -dy];
    }
    case 'shear': {
      const [c, s] = cosSinDegrees(op.degrees);
      return [1, s / c, 0, 0, 1, 0];
    }
    case 'hflip':
      return [-1, 0, 0, 0, 1, 0];
    case 'vflip':
      return [1, 0, 0, 0, -1, 0];
    case 'affine': {
      const [a, b, tx, d, e, ty] = op.matrix;
      const det = a * e - b * d;
      const i00 = e / det;
      const i01 = -b / det;
      const i10 = -d / det;
      const i11 = a / det;
      return [i00, i01, -(i00 * tx + i01 * ty), i10, i11, -(i10 * tx + i11 * ty)];
    }
  }
}

/**
 * The inverse-mapping matrix (output pixel -> source pixel) of a run of geometric ops applied in
 * order, composed into one map about the centre c = ((W-1)/2, (H-1)/2). Rotations by multiples
 * of 90 degrees (and flips) give exact integer maps, hence exact pixel permutations on square images.
 */
export function geometricMatrix(ops: readonly TransformOp[], width: number, height: number): AffineMatrix {
  // M = G1 o G2 o ... o Gn (the inverse of Fn o ... o F1), in centred coordinates.
  let m00 = 1;
  let m01 = 0;
  let m02 = 0;
  let m10 = 0;
  let m11 = 1;
  let m12 = 0;
  for (const op of ops) {
    if (!isGeometricOp(op)) throw new TypeError(`geometricMatrix: '${op.op}' is not a geometric op`);
    const [l00, l01, u0, l10, l11, u1] = inverseCentred(op, width, height);
    const n00 = m00 * l00 + m01 * l10;
    const n01 = m00 * l01 + m01 * l11;
    const n02 = m00 * u0 + m01 * u1 + m02;
    const n10 = m10 * l00 + m11 * l10;
    const n11 = m10 * l01 + m11 * l11;
    const n12 = m10 * u0 + m11 * u1 + m12;
    m00 = n00;
    m01 = n01;
    m02 = n02;
    m10 = n10;
    m11 = n11;
    m12 = n12;
  }
  // Pixel coordinates: src = c + M_lin (out - c) + M_u.
  const cx = (width - 1) / 2;
  const cy = (height - 1) / 2;
  const out: AffineMatrix = [
    m00,
    m01,
    cx - (m00 * cx + m01 * cy) + m02,
    m10,
    m11,
    cy - (m10 * cx + m11 * cy) + m12,
  ];
  for (let k = 0; k < 6; k++) out[k] += 0; // -0 -> 0
  return out;
}

/**
 * The sampling grid for ONNX GridSample (layout [H, W, 2], (x, y) normalised to [-1, 1]) of an
 * inverse-mapping matrix. alignCorners true: -1 and 1 are the centres of the edge pixels
 * (use GridSample align_corners=1); false: the outer edges of the edge pixels (align_corners=0).
 */
export function samplingGrid(
  matrix: AffineMatrix,
  width: number,
  height: number,
  alignCorners = true,
): Float32Array {
  const [a, b, c, d, e, f] = matrix;
  const grid = new Float32Array(width * height * 2);
  // x_n = kx * x + ox
  const kx = alignCorners ? (width > 1 ? 2 / (width - 1) : 0) : 2 / width;
  const ky = alignCorners ? (height > 1 ? 2 / (height - 1) : 0) : 2 / height;
  const ox = alignCorners ? -1 : 1 / width - 1;
  const oy = alignCorners ? -1 : 1 / height - 1;
  let k = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      grid[k++] = (a * x + b * y + c) * kx + ox;
      grid[k++] = (d * x + e * y + f) * ky + oy;
    }
  }
  return grid;
}

export type Stage = { kind: 'geometric'; ops: GeometricOp[]; fill: number } | { kind: 'pixel'; op: PixelOp };

/**
 * Splits a point's ops into stages for the transform-graph compiler: each run of consecutive
 * geometric ops becomes one resampling (see geometricMatrix), every other op its own stage.
 */
export function splitStages(ops: readonly TransformOp[]): Stage[] {
  const stages: Stage[] = [];
  for (const op of ops) {
    if (isGeometricOp(op)) {
      const last = stages[stages.length - 1];
      if (last && last.kind === 'geometric') last.ops.push(op);
      else stages.push({ kind: 'geometric', ops: [op], fill: op.fill });
    } else stages.push({ kind: 'pixel', op });
  }
  return stages;
}
