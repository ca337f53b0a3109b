// Normalized variance of activations (SPEC 4.3, tmeasures conventions), as a mergeable,
// serializable float64 accumulator per layer. Pure: no I/O.
//
// For one activation a and the n x m matrix A[i][j] = a(t_j(x_i)) (transformed images only):
//   TV = mean over i of the std (ddof=1) of row i (across the m transforms),
//   SV = mean over j of the std (ddof=1) of column j (across the n samples),
//   NV = TV / SV, 0/0 = 1 (dead unit), x/0 = +Infinity.
// With dispersion "variance" the std's are replaced by variances (ddof=1).
// State, O(m*D) whatever n is (D = activations per sample), float64:
//   per element d: the sums over samples of the row std and of the row variance (both, so the
//   dispersion is a finalize-time choice). A row's variance is computed from its m values shifted
//   by the row's first value, var = (sum y^2 - (sum y)^2 / m) / (m - 1) with y = x - x_0: exactly 0
//   for identical values, and well conditioned since x_0 belongs to the row;
//   per (j, d): running count/mean/M2 across samples (Welford), merged with Chan's formula.
// The inner loop is nvKernel.ts (WebAssembly SIMD, or its bit-identical scalar JS twin).
// Aggregation (finalize-time): "none": every element is an activation; "mean" ([C, ...spatial]):
//   TV and SV are averaged over the spatial positions of each channel BEFORE the division
//   (tmeasures' default); a layer with one dimension has no spatial positions, both are the same.
// perClass (tmeasures' per-class measure): one set of statistics per class (samples of that class
//   only); at finalize, for each class with at least 2 samples, TV, SV and NV are computed per
//   (aggregated) activation exactly as above; then TV, SV and NV are each averaged element-wise
//   over those classes (NV is the mean of the per-class NVs, not the ratio of the means; an
//   activation that is infinite in any class is infinite). Classes with 0 or 1 samples are left
//   out (their SV is undefined) and reported in `classesUsed`.
// Layer result: nv = mean of the finite NVs of the (aggregated) activations; tv, sv = means of TV
//   and SV over them; finite / total counts (infinite = NV +Infinity; NaN ones are in neither).
import { createHeap, type KernelKind, type NvHeap } from './nvKernel.js';
import { chanMerge, checkCount, decodeFloat64, encodeFloat64, finiteOrNull } from './stats.js';

export type Aggregation = 'none' | 'mean';
export type Dispersion = 'std' | 'variance';

export interface NvOptions {
  /** Layer (ONNX value) name, reported as is. */
  layer: string;
  /** Shape of one sample's activation, without the batch dimension: [C, H, W], [F], [K], ... */
  shape: readonly number[];
  /** m: number of transform points per sample. */
  points: number;
  /** Separate statistics per class (needs `classes`). Default false. */
  perClass?: boolean;
  /** K: number of classes (labels in [0, K)); required with perClass. */
  classes?: number;
  /** Inner-loop implementation: WebAssembly SIMD when available (default) or scalar JS; same results. */
  kernel?: KernelKind | 'auto';
  /** Bytes of activations staged per kernel call (default 2 MiB): bounds memory for any batch size. */
  stagingBytes?: number;
  /**
   * Accumulate max(x, 0) of every value given (NaN and -0 kept: ONNX Runtime's Relu), i.e. the
   * statistics of a Relu layer from its input's activations. Default false.
   */
  relu?: boolean;
}

/**
 * Where a batch's activations are in `acts` (element counts, not bytes): sample b, point j,
 * element d at offset + b * sampleStride + j * pointStride + d. Defaults: sample-major
 * [B][m][D] (sampleStride m*D, pointStride D). A point-major batch [m][B][D] is
 * {sampleStride: D, pointStride: B * D}.
 */
export interface ActivationLayout {
  /** Number of samples; default labels.length. */
  count?: number;
  offset?: number;
  sampleStride?: number;
  pointStride?: number;
}

export interface NvLayerResult {
  layer: string;
  aggregation: Aggregation;
  dispersion: Dispersion;
  perClass: boolean;
  nv: number | null;
  tv: number | null;
  sv: number | null;
  /** Activations (after aggregation) with a finite NV. */
  finite: number;
  /** Activations with NV = +Infinity (TV > 0, SV = 0). */
  infinite: number;
  total: number;
  /** Samples accumulated. */
  samples: number;
  /** perClass: classes with >= 2 samples that entered the average. */
  classesUsed?: number;
}

/** Per-activation values of one layer (after aggregation), for plots or debugging. */
export interface NvElementValues {
  tv: Float64Array;
  sv: Float64Array;
  nv: Float64Array;
}

export interface NvGroupState {
  /** Class index (perClass) or null. */
  class: number | null;
  count: number;
  /** base64 float64 [D]: sum over samples of the row std */
  tvStd: string;
  /** base64 float64 [D]: sum over samples of the row variance */
  tvVar: string;
  /** base64 float64 [m * D], point-major (j * D + d): running mean across samples */
  mean: string;
  /** base64 float64 [m * D], point-major: running M2 across samples */
  m2: string;
}

/** JSON-safe state of a NormalizedVarianceAccumulator (for per-shard persistence). */
export interface NvState {
  kind: 'nv';
  version: 1;
  layer: string;
  shape: number[];
  points: number;
  perClass: boolean;
  classes: number | null;
  groups: NvGroupState[];
}

/** A group's state with its float64 arrays as they are (NvGroupState without base64). */
export interface NvRawGroupState {
  class: number | null;
  count: number;
  /** [D] */
  tvStd: Float64Array;
  /** [D] */
  tvVar: Float64Array;
  /** [m * D], point-major */
  mean: Float64Array;
  /** [m * D], point-major */
  m2: Float64Array;
}

/** NvState with raw float64 arrays: for binary serialization (no base64, no JSON of the arrays). */
export interface NvRawState extends Omit<NvState, 'groups'> {
  groups: NvRawGroupState[];
}

/** A group's state in the heap: byte offsets of its arrays (rows padded to Dp). */
interface Group {
  count: number;
  /** m rows of Dp float64 */
  mean: number;
  m2: number;
  /** Dp float64 each */
  tvStd: number;
  tvVar: number;
}

const STAGING_BYTES = 2 * 1024 * 1024;
/** Bytes between consecutive arrays of the heap (16-aligned, not a multiple of 64). */
const SKEW = 208;

/** NV of one activation: TV / SV with 0/0 = 1 and x/0 = +Infinity. */
export function nvRatio(tv: number, sv: number): number {
  if (sv === 0) {
    if (tv === 0) return 1;
    return tv > 0 ? Number.POSITIVE_INFINITY : Number.NaN;
  }
  return tv / sv;
}

export class NormalizedVarianceAccumulator {
  readonly layer: string;
  readonly shape: readonly number[];
  /** D: activations per sample. */
  readonly size: number;
  readonly points: number;
  readonly perClass: boolean;
  readonly classes: number | null;
  /** Values are passed through max(x, 0) before accumulation (NvOptions.relu). */
  readonly relu: boolean;
  private readonly heap: NvHeap;
  /** D rounded up to even (the SIMD kernel works on pairs). */
  private readonly padded: number;
  private readonly tile: number;
  /** Samples per kernel call. */
  private readonly chunk: number;
  private readonly invsPtr: number;
  /** int32 [chunk]: byte offsets of the samples of a kernel call */
  private readonly ptrsPtr: number;
  private readonly tAPtr: number;
  private readonly tQPtr: number;
  /** End of the allocated state (bytes); activations are staged after it. */
  private top: number;
  private readonly groups: (Group | null)[];

  constructor(options: NvOptions) {
    const { layer, shape, points } = options;
    if (!Array.isArray(shape) || shape.some((s) => !Number.isSafeInteger(s) || s < 1)) {
      throw new RangeError(`layer ${layer}: shape must be a list of positive integers`);
    }
    if (!Number.isSafeInteger(points) || points < 1) throw new RangeError('points must be an integer >= 1');
    let size = 1;
    for (const s of shape) size *= s;
    if (!Number.isSafeInteger(size * points)) throw new RangeError(`layer ${layer}: too many activations`);
    this.layer = layer;
    this.shape = [...shape];
    this.size = size;
    this.points = points;
    this.perClass = options.perClass === true;
    if (this.perClass) {
      const K = options.classes;
      if (K === undefined || !Number.isSafeInteger(K) || K < 1) {
        throw new RangeError('perClass needs classes (an integer >= 1)');
      }
      this.classes = K;
    } else {
      this.classes = options.classes ?? null;
    }
    this.relu = options.relu === true;
    this.padded = size + (size & 1);
    // A tile's Welford state (m rows x tile x 16 bytes) stays in cache across the samples of a call.
    this.tile = Math.min(this.padded, Math.max(64, Math.min(4096, Math.floor(262144 / (16 * points)))) & ~1);
    this.chunk = Math.max(1, Math.floor((options.stagingBytes ?? STAGING_BYTES) / (4 * points * size)));
    this.heap = createHeap(options.kernel ?? 'auto');
    this.invsPtr = 0;
    this.ptrsPtr = align16(this.invsPtr + 8 * this.chunk);
    this.tAPtr = align16(this.ptrsPtr + 4 * this.chunk);
    this.tQPtr = align16(this.tAPtr + 8 * this.tile);
    this.top = align16(this.tQPtr + 8 * this.tile);
    this.heap.ensure(this.top);
    this.groups = new Array<Group | null>(this.perClass ? (this.classes as number) : 1).fill(null);
    if (!this.perClass) this.allocGroup(0);
  }

  /** Which inner loop runs: 'wasm' (SIMD) or 'js'. */
  get kernel(): KernelKind {
    return this.heap.kind;
  }

  /** Bytes of memory held (state, scratch and staging). */
  get byteLength(): number {
    return this.heap.byteLength;
  }

  /** Samples accumulated so far. */
  get count(): number {
    let n = 0;
    for (const g of this.groups) if (g) n += g.count;
    return n;
  }

  private allocGroup(c: number): Group {
    const rowBytes = 8 * this.padded;
    const stateBytes = rowBytes * this.points;
    // Arrays a multiple of 4 KiB apart would alias in the store buffer: skew each by 208 bytes.
    const g: Group = { count: 0, mean: this.top, m2: 0, tvStd: 0, tvVar: 0 };
    g.m2 = align16(g.mean + stateBytes) + SKEW;
    g.tvStd = align16(g.m2 + stateBytes) + SKEW;
    g.tvVar = align16(g.tvStd + rowBytes) + SKEW;
    const end = align16(g.tvVar + rowBytes) + SKEW;
    this.heap.ensure(end);
    // Fresh memory is zero, but the region may have held staged activations before.
    this.heap.f64().fill(0, g.mean / 8, end / 8);
    this.top = end;
    this.groups[c] = g;
    return g;
  }

  private groupFor(label: number): Group {
    const c = this.perClass ? label : 0;
    if (this.perClass && (!Number.isInteger(label) || label < 0 || label >= this.groups.length)) {
      throw new RangeError(`label ${label} is outside [0, ${this.groups.length})`);
    }
    return this.groups[c] ?? this.allocGroup(c);
  }

  /**
   * One sample: the activations of its m transformed images, point j's D values at
   * acts[offset + j * pointStride ..] (pointStride defaults to D). The label matters with perClass
   * only. Prefer addBatch: it keeps the state in cache across the samples of a batch.
   */
  addSample(label: number, acts: ArrayLike<number>, offset = 0, pointStride = this.size): void {
    this.addBatch([label], acts, { count: 1, offset, sampleStride: 0, pointStride });
  }

  /**
   * A batch of samples (default layout sample-major [B][m][D], see ActivationLayout). Values are
   * taken as float32 (what ONNX models produce). labels: one per sample (may be null without perClass).
   */
  addBatch(labels: ArrayLike<number> | null, acts: ArrayLike<number>, layout: ActivationLayout = {}): void {
    const D = this.size;
    const m = this.points;
    const count = layout.count ?? labels?.length ?? 0;
    const offset = layout.offset ?? 0;
    const sampleStride = layout.sampleStride ?? m * D;
    const pointStride = layout.pointStride ?? D;
    for (const [what, v] of [
      ['count', count],
      ['offset', offset],
      ['sampleStride', sampleStride],
      ['pointStride', pointStride],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 0)
        throw new RangeError(`layer ${this.layer}: ${what} must be an integer >= 0`);
    }
    if (count === 0) return;
    if (labels && labels.length < count)
      throw new RangeError(`layer ${this.layer}: fewer labels than samples`);
    if (!labels && this.perClass) throw new RangeError(`layer ${this.layer}: perClass needs labels`);
    if (offset + (count - 1) * sampleStride + (m - 1) * pointStride + D > acts.length) {
      throw new RangeError(`layer ${this.layer}: activation array is shorter than the layout requires`);
    }
    if (pointStride !== D && acts instanceof Float32Array && acts.buffer === this.heap.f32().buffer) {
      // In this accumulator's memory (batchBuffer) but rows apart: staging would overwrite it.
      acts = acts.slice();
    }
    if (!this.perClass) {
      this.run(this.groupFor(0), acts, count, (i) => offset + i * sampleStride, pointStride);
      return;
    }
    // Samples grouped by class, each group's samples in their batch order.
    const byClass = new Map<number, number[]>();
    for (let b = 0; b < count; b++) {
      const c = (labels as ArrayLike<number>)[b];
      this.groupFor(c); // validates the label
      let list = byClass.get(c);
      if (!list) {
        list = [];
        byClass.set(c, list);
      }
      list.push(b);
    }
    for (const [c, list] of byClass) {
      this.run(this.groupFor(c), acts, list.length, (i) => offset + list[i] * sampleStride, pointStride);
    }
  }

  /**
   * A float32 array of `length` values in this accumulator's own memory. Activations written there
   * (by ONNX Runtime as a pre-allocated output, say) and then given to addBatch are read where
   * they are, without the copy addBatch makes otherwise; the statistics are the same. Valid until
   * the next call of a method of this accumulator (which may move or overwrite it).
   */
  batchBuffer(length: number): Float32Array {
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError('length must be an integer >= 0');
    // Room first for the groups not allocated yet (addBatch allocates them before the buffer).
    let missing = 0;
    for (const g of this.groups) if (!g) missing++;
    const at = align16(this.top) + missing * this.groupBytes();
    this.heap.ensure(at + 4 * length + 16); // + the pad lane read past the last row
    return new Float32Array(this.heap.f32().buffer, at, length);
  }

  /** Bytes allocGroup takes. */
  private groupBytes(): number {
    const stateBytes = 8 * this.padded * this.points;
    const rowBytes = 8 * this.padded;
    return 2 * (align16(stateBytes) + SKEW) + 2 * (align16(rowBytes) + SKEW) + 16;
  }

  /**
   * Runs the kernel on `count` samples, chunk by chunk: in place when `acts` lies in this
   * accumulator's memory (batchBuffer) with contiguous rows, else staged (copied) into it first.
   */
  private run(
    g: Group,
    acts: ArrayLike<number>,
    count: number,
    start: (i: number) => number,
    pointStride: number,
  ): void {
    const D = this.size;
    const m = this.points;
    const sampleLen = m * D;
    const inPlace = acts instanceof Float32Array && acts.buffer === this.heap.f32().buffer;
    const stage = align16(this.top);
    for (let i0 = 0; i0 < count; i0 += this.chunk) {
      const nb = Math.min(this.chunk, count - i0);
      if (!inPlace) this.heap.ensure(stage + 4 * nb * sampleLen + 16);
      const f32 = this.heap.f32();
      const f64 = this.heap.f64();
      const i32 = this.heap.i32();
      for (let s = 0; s < nb; s++) {
        const src = start(i0 + s);
        if (inPlace) {
          i32[this.ptrsPtr / 4 + s] = (acts as Float32Array).byteOffset + 4 * src;
        } else {
          const dst = stage / 4 + s * sampleLen;
          if (pointStride === D) copyInto(f32, dst, acts, src, sampleLen);
          else for (let j = 0; j < m; j++) copyInto(f32, dst + j * D, acts, src + j * pointStride, D);
          i32[this.ptrsPtr / 4 + s] = 4 * dst;
        }
        f64[this.invsPtr / 8 + s] = 1 / (g.count + s + 1);
      }
      this.heap.accumulate(
        this.ptrsPtr,
        nb,
        D,
        this.padded,
        m,
        this.tile,
        this.invsPtr,
        this.tAPtr,
        this.tQPtr,
        g.mean,
        g.m2,
        g.tvStd,
        g.tvVar,
        this.relu ? 1 : 0,
      );
      g.count += nb;
    }
  }

  /** Adds another shard's statistics into this one (same layer shape, points, perClass). Returns this. */
  merge(other: NormalizedVarianceAccumulator): this {
    if (
      other.size !== this.size ||
      other.points !== this.points ||
      other.perClass !== this.perClass ||
      other.groups.length !== this.groups.length ||
      other.shape.join(',') !== this.shape.join(',')
    ) {
      throw new RangeError(`layer ${this.layer}: cannot merge accumulators of different shapes`);
    }
    const len = this.points * this.padded;
    for (let c = 0; c < other.groups.length; c++) {
      const b = other.groups[c];
      if (!b || b.count === 0) continue;
      const a = this.groups[c] ?? this.allocGroup(c);
      const fa = this.heap.f64();
      const fb = other.heap.f64();
      chanMerge(
        a.count,
        fa.subarray(a.mean / 8, a.mean / 8 + len),
        fa.subarray(a.m2 / 8, a.m2 / 8 + len),
        b.count,
        fb.subarray(b.mean / 8, b.mean / 8 + len),
        fb.subarray(b.m2 / 8, b.m2 / 8 + len),
      );
      for (let d = 0; d < this.size; d++) {
        fa[a.tvStd / 8 + d] += fb[b.tvStd / 8 + d];
        fa[a.tvVar / 8 + d] += fb[b.tvVar / 8 + d];
      }
      a.count += b.count;
    }
    return this;
  }

  /** Logical [m * D] (or [D]) copy of padded rows at byte offset ptr. */
  private unpad(ptr: number, rows: number): Float64Array {
    const D = this.size;
    const f64 = this.heap.f64();
    const out = new Float64Array(rows * D);
    for (let j = 0; j < rows; j++) {
      const from = ptr / 8 + j * this.padded;
      out.set(f64.subarray(from, from + D), j * D);
    }
    return out;
  }

  private pad(values: Float64Array, ptr: number, rows: number): void {
    const D = this.size;
    const f64 = this.heap.f64();
    for (let j = 0; j < rows; j++) f64.set(values.subarray(j * D, (j + 1) * D), ptr / 8 + j * this.padded);
  }

  toJSON(): NvState {
    const raw = this.toRawState();
    return {
      ...raw,
      groups: raw.groups.map((g) => ({
        class: g.class,
        count: g.count,
        tvStd: encodeFloat64(g.tvStd),
        tvVar: encodeFloat64(g.tvVar),
        mean: encodeFloat64(g.mean),
        m2: encodeFloat64(g.m2),
      })),
    };
  }

  /** The state of toJSON() with its arrays as Float64Arrays (copies), for binary serialization. */
  toRawState(): NvRawState {
    const groups: NvRawGroupState[] = [];
    this.groups.forEach((g, c) => {
      if (!g) return;
      groups.push({
        class: this.perClass ? c : null,
        count: g.count,
        tvStd: this.unpad(g.tvStd, 1),
        tvVar: this.unpad(g.tvVar, 1),
        mean: this.unpad(g.mean, this.points),
        m2: this.unpad(g.m2, this.points),
      });
    });
    return {
      kind: 'nv',
      version: 1,
      layer: this.layer,
      shape: [...this.shape],
      points: this.points,
      perClass: this.perClass,
      classes: this.classes,
      groups,
    };
  }

  /** Rebuilds an accumulator from toJSON() output (after a JSON round trip); validates shapes. */
  static fromJSON(state: NvState, kernel: KernelKind | 'auto' = 'auto'): NormalizedVarianceAccumulator {
    if (state?.kind !== 'nv' || state.version !== 1)
      throw new RangeError('not an nv accumulator state (version 1)');
    if (!Array.isArray(state.groups)) throw new RangeError('nv state: groups must be a list');
    return NormalizedVarianceAccumulator.fromRawState(
      {
        ...state,
        groups: state.groups.map((gs) => ({
          class: gs.class,
          count: gs.count,
          tvStd: decodeFloat64(gs.tvStd),
          tvVar: decodeFloat64(gs.tvVar),
          mean: decodeFloat64(gs.mean),
          m2: decodeFloat64(gs.m2),
        })),
      },
      kernel,
    );
  }

  /** Rebuilds an accumulator from toRawState() output; validates shapes as fromJSON does. */
  static fromRawState(
    state: NvRawState,
    kernel: KernelKind | 'auto' = 'auto',
  ): NormalizedVarianceAccumulator {
    if (state?.kind !== 'nv' || state.version !== 1)
      throw new RangeError('not an nv accumulator state (version 1)');
    const acc = new NormalizedVarianceAccumulator({
      layer: state.layer,
      shape: state.shape,
      points: state.points,
      perClass: state.perClass,
      classes: state.classes ?? undefined,
      kernel,
    });
    const D = acc.size;
    const mD = D * acc.points;
    if (!Array.isArray(state.groups)) throw new RangeError('nv state: groups must be a list');
    for (const gs of state.groups) {
      const c = acc.perClass ? gs.class : 0;
      if (typeof c !== 'number' || !Number.isInteger(c) || c < 0 || c >= acc.groups.length) {
        throw new RangeError(`nv state: bad group class ${String(gs.class)}`);
      }
      const count = checkCount(gs.count, 'nv group count');
      const tvStd = checkLength(gs.tvStd, D);
      const tvVar = checkLength(gs.tvVar, D);
      const mean = checkLength(gs.mean, mD);
      const m2 = checkLength(gs.m2, mD);
      const g = acc.groups[c] ?? acc.allocGroup(c);
      g.count = count;
      acc.pad(tvStd, g.tvStd, 1);
      acc.pad(tvVar, g.tvVar, 1);
      acc.pad(mean, g.mean, acc.points);
      acc.pad(m2, g.m2, acc.points);
    }
    return acc;
  }

  /** Channels and spatial positions per channel for an aggregation. */
  private layout(aggregation: Aggregation): { elements: number; spatial: number } {
    if (aggregation !== 'none' && aggregation !== 'mean')
      throw new RangeError(`unknown aggregation ${aggregation}`);
    if (aggregation === 'mean' && this.shape.length >= 2) {
      const channels = this.shape[0];
      return { elements: channels, spatial: this.size / channels };
    }
    return { elements: this.size, spatial: 1 };
  }

  /** TV and SV per (aggregated) activation of one group. */
  private groupValues(
    g: Group,
    aggregation: Aggregation,
    dispersion: Dispersion,
  ): { tv: Float64Array; sv: Float64Array } {
    const D = this.size;
    const m = this.points;
    const n = g.count;
    const f64 = this.heap.f64();
    const { elements, spatial } = this.layout(aggregation);
    const useStd = dispersion === 'std';
    // Per element: SV = mean over j of the column std (or variance), ddof 1.
    const svElem = new Float64Array(D);
    const invN1 = 1 / (n - 1); // n < 2: undefined, NaN below
    for (let j = 0; j < m; j++) {
      const row = g.m2 / 8 + j * this.padded;
      for (let d = 0; d < D; d++) {
        const v = f64[row + d] * invN1;
        svElem[d] += useStd ? Math.sqrt(v) : v;
      }
    }
    const rows = (useStd ? g.tvStd : g.tvVar) / 8;
    const tv = new Float64Array(elements);
    const sv = new Float64Array(elements);
    for (let d = 0; d < D; d++) {
      const e = Math.floor(d / spatial);
      tv[e] += n === 0 ? Number.NaN : f64[rows + d] / n;
      sv[e] += n < 2 ? Number.NaN : svElem[d] / m;
    }
    if (spatial > 1) {
      for (let e = 0; e < elements; e++) {
        tv[e] /= spatial;
        sv[e] /= spatial;
      }
    }
    return { tv, sv };
  }

  /** Per-activation TV, SV and NV (after aggregation; class-averaged with perClass). */
  elementValues(aggregation: Aggregation, dispersion: Dispersion): NvElementValues & { classesUsed: number } {
    if (dispersion !== 'std' && dispersion !== 'variance')
      throw new RangeError(`unknown dispersion ${dispersion}`);
    const { elements } = this.layout(aggregation);
    if (!this.perClass) {
      const g = this.groups[0] as Group;
      const { tv, sv } = this.groupValues(g, aggregation, dispersion);
      const nv = new Float64Array(elements);
      for (let e = 0; e < elements; e++) nv[e] = nvRatio(tv[e], sv[e]);
      return { tv, sv, nv, classesUsed: 1 };
    }
    const tv = new Float64Array(elements);
    const sv = new Float64Array(elements);
    const nv = new Float64Array(elements);
    let used = 0;
    for (const g of this.groups) {
      if (!g || g.count < 2) continue;
      used++;
      const v = this.groupValues(g, aggregation, dispersion);
      for (let e = 0; e < elements; e++) {
        tv[e] += v.tv[e];
        sv[e] += v.sv[e];
        nv[e] += nvRatio(v.tv[e], v.sv[e]);
      }
    }
    for (let e = 0; e < elements; e++) {
      tv[e] /= used; // used = 0: NaN, as for a single group with < 2 samples
      sv[e] /= used;
      nv[e] /= used;
    }
    return { tv, sv, nv, classesUsed: used };
  }

  /** The layer's result for one aggregation and dispersion (both are finalize-time choices). */
  finalize(aggregation: Aggregation, dispersion: Dispersion = 'std'): NvLayerResult {
    const { tv, sv, nv, classesUsed } = this.elementValues(aggregation, dispersion);
    const total = nv.length;
    let finite = 0;
    let infinite = 0;
    let nvSum = 0;
    let tvSum = 0;
    let svSum = 0;
    for (let e = 0; e < total; e++) {
      const x = nv[e];
      if (Number.isFinite(x)) {
        finite++;
        nvSum += x;
      } else if (x === Number.POSITIVE_INFINITY) infinite++;
      tvSum += tv[e];
      svSum += sv[e];
    }
    const result: NvLayerResult = {
      layer: this.layer,
      aggregation,
      dispersion,
      perClass: this.perClass,
      nv: finite > 0 ? nvSum / finite : null,
      tv: total > 0 ? finiteOrNull(tvSum / total) : null,
      sv: total > 0 ? finiteOrNull(svSum / total) : null,
      finite,
      infinite,
      total,
      samples: this.count,
    };
    if (this.perClass) result.classesUsed = classesUsed;
    return result;
  }
}

function checkLength(values: Float64Array, expected: number): Float64Array {
  if (!(values instanceof Float64Array)) throw new TypeError('nv state: arrays must be Float64Arrays');
  if (values.length !== expected) {
    throw new RangeError(`encoded Float64Array has ${values.length} values, expected ${expected}`);
  }
  return values;
}

function align16(bytes: number): number {
  return Math.ceil(bytes / 16) * 16;
}

function copyInto(dst: Float32Array, at: number, src: ArrayLike<number>, from: number, len: number): void {
  if (src instanceof Float32Array || src instanceof Float64Array) {
    dst.set(src.subarray(from, from + len), at);
    return;
  }
  for (let i = 0; i < len; i++) dst[at + i] = src[from + i];
}
