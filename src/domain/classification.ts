// Classification metrics over a transform sweep (SPEC 4.1, 4.2): accuracy per point (overall and
// per class), clean accuracy, consistency, worst-case accuracy, test-time-augmentation accuracy and
// eKLD (overall, per class, per point). Mergeable across shards, serializable to JSON exactly.
//
// Conventions:
// - argmax: first maximum (numpy); a vector containing NaN has no prediction (counts as wrong and
//   inconsistent), +Infinity wins.
// - KL(p || q) = sum_k p_k (log p_k - log q_k) in float64 from log-softmax of the logits (no epsilon);
//   terms with p_k = 0 are 0. With `outputIsProbability` the given probabilities are used as they
//   are (log p, no renormalisation, no clamping): q_k = 0 where p_k > 0 gives +Infinity.
// - Non-finite outputs (NaN / +-Infinity anywhere in a sample's vectors) are counted in
//   `nonFiniteSamples`; they never throw. NaN propagates into the KL sums it touches, and every
//   value that ends NaN or +-Infinity is reported as null (JSON cannot carry them); `infinitePairs`
//   counts the (sample, point) pairs whose KL was +Infinity.

import {
  argmax,
  checkCount,
  decodeCounts,
  decodeFloat64,
  encodeFloat64,
  ratioOrNull as ratio,
} from './stats.js';
import type { PointParams } from './sweep.js';

export interface ClassificationOptions {
  /** m: number of transform points per sample. */
  points: number;
  /** K: number of classes (length of the output vector). */
  classes: number;
  /** The model outputs probabilities, not logits. Default false. */
  outputIsProbability?: boolean;
}

/** JSON-safe state of a ClassificationAccumulator (for per-shard persistence). */
export interface ClassificationState {
  kind: 'classification';
  version: 1;
  points: number;
  classes: number;
  outputIsProbability: boolean;
  samples: number;
  nonFiniteSamples: number;
  infinitePairs: number;
  classTotal: number[];
  cleanCorrect: number;
  cleanClassCorrect: number[];
  /** [m] */
  correct: number[];
  /** [m * K], point-major */
  classCorrect: number[];
  /** [m] */
  consistent: number[];
  worstCaseCorrect: number;
  ttaCorrect: number;
  /** base64 float64 [m]: sum over samples of KL, per point */
  klSum: string;
  /** base64 float64 [K]: sum over the class's samples and all points of KL */
  klClassSum: string;
}

export interface PointResult {
  params: PointParams;
  accuracy: number | null;
  consistency: number | null;
  ekld: number | null;
  perClassAccuracy: (number | null)[];
}

export interface ClassEkld {
  class: number;
  name: string;
  /** Samples of this class evaluated. */
  count: number;
  /** Mean KL over the class's samples and all points. */
  value: number | null;
  /** Class size in the training set, when supplied. */
  classSize: number | null;
}

export interface ClassificationResult {
  samples: number;
  nonFiniteSamples: number;
  clean: { accuracy: number | null; perClassAccuracy: (number | null)[] };
  points: PointResult[];
  accuracy: { mean: number | null; min: number | null; max: number | null; worstCase: number | null };
  consistency: { mean: number | null; min: number | null };
  tta: { accuracy: number | null };
  ekld: { overall: number | null; infinitePairs: number; perClass: ClassEkld[] };
}

export interface ClassificationFinalizeOptions {
  /** The m points' params, in order (TransformPoint.params). */
  params: readonly PointParams[];
  /** Class names by index; default the index as text. */
  classNames?: readonly string[] | null;
  /** Training-set class sizes by index, or null. */
  classSizes?: readonly (number | null)[] | null;
}

function meanMinMax(values: readonly (number | null)[]): {
  mean: number | null;
  min: number | null;
  max: number | null;
} {
  if (values.length === 0 || values.some((v) => v === null)) return { mean: null, min: null, max: null };
  const xs = values as number[];
  let s = 0;
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const x of xs) {
    s += x;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return { mean: s / xs.length, min: lo, max: hi };
}

export class ClassificationAccumulator {
  readonly points: number;
  readonly classes: number;
  readonly outputIsProbability: boolean;

  private samples = 0;
  private nonFiniteSamples = 0;
  private infinitePairs = 0;
  private readonly classTotal: Float64Array;
  private cleanCorrect = 0;
  private readonly cleanClassCorrect: Float64Array;
  private readonly correct: Float64Array;
  private readonly classCorrect: Float64Array;
  private readonly consistent: Float64Array;
  private worstCaseCorrect = 0;
  private ttaCorrect = 0;
  private readonly klSum: Float64Array;
  private readonly klClassSum: Float64Array;

  // scratch, K each
  private readonly logP: Float64Array;
  private readonly p: Float64Array;
  private readonly logQ: Float64Array;
  private readonly q: Float64Array;
  private readonly tta: Float64Array;

  constructor(options: ClassificationOptions) {
    const { points, classes } = options;
    if (!Number.isSafeInteger(points) || points < 1) throw new RangeError('points must be an integer >= 1');
    if (!Number.isSafeInteger(classes) || classes < 1)
      throw new RangeError('classes must be an integer >= 1');
    this.points = points;
    this.classes = classes;
    this.outputIsProbability = options.outputIsProbability === true;
    this.classTotal = new Float64Array(classes);
    this.cleanClassCorrect = new Float64Array(classes);
    this.correct = new Float64Array(points);
    this.classCorrect = new Float64Array(points * classes);
    this.consistent = new Float64Array(points);
    this.klSum = new Float64Array(points);
    this.klClassSum = new Float64Array(classes);
    this.logP = new Float64Array(classes);
    this.p = new Float64Array(classes);
    this.logQ = new Float64Array(classes);
    this.q = new Float64Array(classes);
    this.tta = new Float64Array(classes);
  }

  /** Samples accumulated so far. */
  get count(): number {
    return this.samples;
  }

  /**
   * log-probabilities (and probabilities) of out[offset .. offset+K) into logOut / probOut.
   * Returns false when a value is not finite.
   */
  private logProbs(
    out: ArrayLike<number>,
    offset: number,
    logOut: Float64Array,
    probOut: Float64Array,
  ): boolean {
    const K = this.classes;
    let finite = true;
    if (this.outputIsProbability) {
      for (let k = 0; k < K; k++) {
        const v = +out[offset + k];
        if (v - v !== 0) finite = false;
        probOut[k] = v;
        logOut[k] = Math.log(v);
      }
      return finite;
    }
    let mx = Number.NEGATIVE_INFINITY;
    for (let k = 0; k < K; k++) {
      const v = +out[offset + k];
      if (v - v !== 0) finite = false;
      if (v > mx) mx = v;
    }
    let sum = 0;
    for (let k = 0; k < K; k++) {
      const e = Math.exp(out[offset + k] - mx);
      probOut[k] = e;
      sum += e;
    }
    const lse = Math.log(sum);
    const inv = 1 / sum;
    for (let k = 0; k < K; k++) {
      logOut[k] = out[offset + k] - mx - lse;
      probOut[k] *= inv;
    }
    return finite;
  }

  /**
   * One sample: its label, the K outputs of the untransformed image at clean[cleanOffset..], and
   * the m transformed outputs, point j's K values at points[pointsOffset + j * pointStride ..]
   * (pointStride defaults to K: point-major, contiguous).
   */
  addSample(
    label: number,
    clean: ArrayLike<number>,
    points: ArrayLike<number>,
    cleanOffset = 0,
    pointsOffset = 0,
    pointStride = this.classes,
  ): void {
    const K = this.classes;
    const m = this.points;
    if (!Number.isInteger(label) || label < 0 || label >= K) {
      throw new RangeError(`label ${label} is outside [0, ${K})`);
    }
    if (cleanOffset + K > clean.length || pointsOffset + (m - 1) * pointStride + K > points.length) {
      throw new RangeError('output arrays are shorter than the sample layout requires');
    }
    const logP = this.logP;
    const p = this.p;
    const logQ = this.logQ;
    const q = this.q;
    const tta = this.tta;
    let finite = this.logProbs(clean, cleanOffset, logP, p);
    const cleanArg = argmax(clean, cleanOffset, K);
    if (cleanArg === label) {
      this.cleanCorrect++;
      this.cleanClassCorrect[label]++;
    }
    this.samples++;
    this.classTotal[label]++;

    tta.fill(0);
    let allCorrect = true;
    let klClass = 0;
    for (let j = 0; j < m; j++) {
      const off = pointsOffset + j * pointStride;
      const arg = argmax(points, off, K);
      if (arg === label) {
        this.correct[j]++;
        this.classCorrect[j * K + label]++;
      } else allCorrect = false;
      if (arg >= 0 && arg === cleanArg) this.consistent[j]++;
      if (!this.logProbs(points, off, logQ, q)) finite = false;
      let kl = 0;
      for (let k = 0; k < K; k++) {
        const pk = p[k];
        if (pk !== 0) kl += pk * (logP[k] - logQ[k]);
        tta[k] += q[k];
      }
      if (kl === Number.POSITIVE_INFINITY) this.infinitePairs++;
      this.klSum[j] += kl;
      klClass += kl;
    }
    this.klClassSum[label] += klClass;
    if (allCorrect) this.worstCaseCorrect++;
    // argmax of the mean over j of p(t_j x) = argmax of the sum
    if (argmax(tta, 0, K) === label) this.ttaCorrect++;
    if (!finite) this.nonFiniteSamples++;
  }

  /**
   * A batch of B samples: labels[B], clean[B * K], points[B * m * K] sample-major
   * (sample b, point j, class k at (b * m + j) * K + k).
   */
  addBatch(labels: ArrayLike<number>, clean: ArrayLike<number>, points: ArrayLike<number>): void {
    const K = this.classes;
    const m = this.points;
    const B = labels.length;
    if (clean.length < B * K || points.length < B * m * K) {
      throw new RangeError('output arrays are shorter than labels.length samples require');
    }
    for (let b = 0; b < B; b++) this.addSample(labels[b], clean, points, b * K, b * m * K, K);
  }

  /** Adds another shard's statistics into this one (same points and classes). Returns this. */
  merge(other: ClassificationAccumulator): this {
    if (
      other.points !== this.points ||
      other.classes !== this.classes ||
      other.outputIsProbability !== this.outputIsProbability
    ) {
      throw new RangeError('cannot merge classification accumulators of different shapes');
    }
    this.samples += other.samples;
    this.nonFiniteSamples += other.nonFiniteSamples;
    this.infinitePairs += other.infinitePairs;
    this.cleanCorrect += other.cleanCorrect;
    this.worstCaseCorrect += other.worstCaseCorrect;
    this.ttaCorrect += other.ttaCorrect;
    const add = (a: Float64Array, b: Float64Array) => {
      for (let k = 0; k < a.length; k++) a[k] += b[k];
    };
    add(this.classTotal, other.classTotal);
    add(this.cleanClassCorrect, other.cleanClassCorrect);
    add(this.correct, other.correct);
    add(this.classCorrect, other.classCorrect);
    add(this.consistent, other.consistent);
    add(this.klSum, other.klSum);
    add(this.klClassSum, other.klClassSum);
    return this;
  }

  toJSON(): ClassificationState {
    return {
      kind: 'classification',
      version: 1,
      points: this.points,
      classes: this.classes,
      outputIsProbability: this.outputIsProbability,
      samples: this.samples,
      nonFiniteSamples: this.nonFiniteSamples,
      infinitePairs: this.infinitePairs,
      classTotal: Array.from(this.classTotal),
      cleanCorrect: this.cleanCorrect,
      cleanClassCorrect: Array.from(this.cleanClassCorrect),
      correct: Array.from(this.correct),
      classCorrect: Array.from(this.classCorrect),
      consistent: Array.from(this.consistent),
      worstCaseCorrect: this.worstCaseCorrect,
      ttaCorrect: this.ttaCorrect,
      klSum: encodeFloat64(this.klSum),
      klClassSum: encodeFloat64(this.klClassSum),
    };
  }

  /** Rebuilds an accumulator from toJSON() output (after a JSON round trip); validates shapes. */
  static fromJSON(state: ClassificationState): ClassificationAccumulator {
    if (state?.kind !== 'classification' || state.version !== 1) {
      throw new RangeError('not a classification accumulator state (version 1)');
    }
    const acc = new ClassificationAccumulator({
      points: state.points,
      classes: state.classes,
      outputIsProbability: state.outputIsProbability,
    });
    const m = acc.points;
    const K = acc.classes;
    acc.samples = checkCount(state.samples, 'samples');
    acc.nonFiniteSamples = checkCount(state.nonFiniteSamples, 'nonFiniteSamples');
    acc.infinitePairs = checkCount(state.infinitePairs, 'infinitePairs');
    acc.cleanCorrect = checkCount(state.cleanCorrect, 'cleanCorrect');
    acc.worstCaseCorrect = checkCount(state.worstCaseCorrect, 'worstCaseCorrect');
    acc.ttaCorrect = checkCount(state.ttaCorrect, 'ttaCorrect');
    acc.classTotal.set(decodeCounts(state.classTotal, K, 'classTotal'));
    acc.cleanClassCorrect.set(decodeCounts(state.cleanClassCorrect, K, 'cleanClassCorrect'));
    acc.correct.set(decodeCounts(state.correct, m, 'correct'));
    acc.classCorrect.set(decodeCounts(state.classCorrect, m * K, 'classCorrect'));
    acc.consistent.set(decodeCounts(state.consistent, m, 'consistent'));
    acc.klSum.set(decodeFloat64(state.klSum, m));
    acc.klClassSum.set(decodeFloat64(state.klClassSum, K));
    return acc;
  }

  /** Sum over samples of KL at point j, unrounded (NaN / Infinity kept). */
  rawKlSum(j: number): number {
    return this.klSum[j];
  }

  /** The results, shaped as in `/results`. */
  finalize(options: ClassificationFinalizeOptions): ClassificationResult {
    const m = this.points;
    const K = this.classes;
    const n = this.samples;
    if (options.params.length !== m) {
      throw new RangeError(`finalize: ${options.params.length} params for ${m} points`);
    }
    const perClass = (counts: Float64Array, base: number) => {
      const out: (number | null)[] = new Array(K);
      for (let c = 0; c < K; c++) out[c] = ratio(counts[base + c], this.classTotal[c]);
      return out;
    };
    const points: PointResult[] = [];
    for (let j = 0; j < m; j++) {
      points.push({
        params: options.params[j],
        accuracy: ratio(this.correct[j], n),
        consistency: ratio(this.consistent[j], n),
        ekld: ratio(this.klSum[j], n),
        perClassAccuracy: perClass(this.classCorrect, j * K),
      });
    }
    const acc = meanMinMax(points.map((p) => p.accuracy));
    const cons = meanMinMax(points.map((p) => p.consistency));
    let klTotal = 0;
    for (let j = 0; j < m; j++) klTotal += this.klSum[j];
    const ekldPerClass: ClassEkld[] = [];
    for (let c = 0; c < K; c++) {
      const size = options.classSizes?.[c];
      ekldPerClass.push({
        class: c,
        name: options.classNames?.[c] ?? String(c),
        count: this.classTotal[c],
        value: ratio(this.klClassSum[c], this.classTotal[c] * m),
        classSize: typeof size === 'number' ? size : null,
      });
    }
    return {
      samples: n,
      nonFiniteSamples: this.nonFiniteSamples,
      clean: { accuracy: ratio(this.cleanCorrect, n), perClassAccuracy: perClass(this.cleanClassCorrect, 0) },
      points,
      accuracy: { mean: acc.mean, min: acc.min, max: acc.max, worstCase: ratio(this.worstCaseCorrect, n) },
      consistency: { mean: cons.mean, min: cons.min },
      tta: { accuracy: ratio(this.ttaCorrect, n) },
      ekld: { overall: ratio(klTotal, n * m), infinitePairs: this.infinitePairs, perClass: ekldPerClass },
    };
  }
}

/**
 * KL(p(a) || p(b)) in nats, float64, for two output vectors (logits, or probabilities when
 * outputIsProbability), by the same code path as the accumulator. May be NaN or +Infinity.
 */
export function klDivergence(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  outputIsProbability = false,
): number {
  if (a.length !== b.length) throw new RangeError('output vectors differ in length');
  const acc = new ClassificationAccumulator({ points: 1, classes: a.length, outputIsProbability });
  acc.addSample(0, a, b);
  return acc.rawKlSum(0);
}
