// The samples whose prediction flips most under a sweep, for the dashboard's examples strip
// (GET /v1/runs/{id}/examples). Pure, mergeable across shards, serializable to JSON exactly.
//
// A sample "flips" at point j when the prediction on t_j(x) differs from the prediction on the
// untransformed x: `!(arg_j >= 0 && arg_j === cleanArg)`, the complement of the `consistency`
// definition in classification.ts (a NaN output has no prediction, so it always counts as a flip).
// argmax is the same first-maximum argmax as classification.ts (src/domain/stats.ts).
//
// Selection: the top `limit` samples by number of flips (descending), ties by sample index
// (ascending); samples with no flip are never kept. This is a total order on samples, and every
// sample lives in exactly one shard, so the top `limit` of the union of the shards' top `limit`
// lists is the top `limit` overall: merging gives the same result for any sharding and any merge
// order. Each kept sample carries its clean prediction and up to `pointsPerExample` of its flipped
// points with their predictions, spread evenly over its flipped points (first and last included).
import { argmax } from './stats.js';
import type { PointParams } from './sweep.js';

export const DEFAULT_EXAMPLES = 12;
export const DEFAULT_POINTS_PER_EXAMPLE = 8;
const MAX_EXAMPLES = 1000;
const MAX_POINTS_PER_EXAMPLE = 1000;

export interface ExamplesOptions {
  /** m: transform points per sample. */
  points: number;
  /** K: length of the output vector. */
  classes: number;
  /** Most samples kept (default 12). */
  limit?: number;
  /** Most flipped points kept per sample (default 8). */
  pointsPerExample?: number;
}

/** One kept sample. `points[i]` is a point index (0-based, sweep order), `predictions[i]` its prediction. */
export interface ExampleEntry {
  /** Global sample index in the dataset. */
  index: number;
  label: number;
  /** Prediction on the untransformed image; -1 when the output had a NaN. */
  clean: number;
  /** Points whose prediction differs from `clean`. */
  flips: number;
  points: number[];
  predictions: number[];
}

/** JSON-safe state (per-shard persistence). */
export interface ExamplesState {
  kind: 'examples';
  version: 1;
  points: number;
  classes: number;
  limit: number;
  pointsPerExample: number;
  entries: ExampleEntry[];
}

/** One flipped point of an example, as reported. */
export interface ExampleChange {
  /** Point index in the run's `points` (sweep order). */
  point: number;
  params: PointParams | null;
  /** Prediction on the transformed image; null when the output had a NaN. */
  prediction: number | null;
  predictionName: string | null;
}

/** One example, as stored in a run's `results.examples.items`. */
export interface ExampleResult {
  index: number;
  label: number;
  labelName: string;
  /** Prediction on the untransformed image; null when the output had a NaN. */
  prediction: number | null;
  predictionName: string | null;
  flips: number;
  changed: ExampleChange[];
}

/** A run's `results.examples`. */
export interface ExamplesResult {
  limit: number;
  pointsPerExample: number;
  /** m, for "flips out of points". */
  points: number;
  items: ExampleResult[];
}

export interface ExamplesFinalizeOptions {
  /** Each point's params, in sweep order (results.points[].params). */
  params?: readonly PointParams[];
  /** Class names by index (beyond them, the index as text). */
  classNames?: readonly string[];
}

function checkInt(x: unknown, what: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) {
    throw new RangeError(`${what} must be an integer in [${min}, ${max}] (got ${String(x)})`);
  }
  return x;
}

/** (flips desc, index asc): negative when a comes first. */
function compare(a: Pick<ExampleEntry, 'flips' | 'index'>, b: Pick<ExampleEntry, 'flips' | 'index'>): number {
  return b.flips - a.flips || a.index - b.index;
}

/** Up to `k` of `n` positions, evenly spread, first and last included. */
function spread(n: number, k: number): number[] {
  if (n <= k) return Array.from({ length: n }, (_, i) => i);
  if (k === 1) return [0];
  const out: number[] = [];
  for (let i = 0; i < k; i++) out.push(Math.round((i * (n - 1)) / (k - 1)));
  return out;
}

export class ExamplesAccumulator {
  readonly points: number;
  readonly classes: number;
  readonly limit: number;
  readonly pointsPerExample: number;
  /** Kept samples, best first. */
  private entries: ExampleEntry[] = [];
  private readonly scratch: Int32Array;
  private readonly scratchPred: Int32Array;

  constructor(opts: ExamplesOptions) {
    this.points = checkInt(opts.points, 'points', 1, Number.MAX_SAFE_INTEGER);
    this.classes = checkInt(opts.classes, 'classes', 1, Number.MAX_SAFE_INTEGER);
    this.limit = checkInt(opts.limit ?? DEFAULT_EXAMPLES, 'limit', 0, MAX_EXAMPLES);
    this.pointsPerExample = checkInt(
      opts.pointsPerExample ?? DEFAULT_POINTS_PER_EXAMPLE,
      'pointsPerExample',
      1,
      MAX_POINTS_PER_EXAMPLE,
    );
    this.scratch = new Int32Array(this.points);
    this.scratchPred = new Int32Array(this.points);
  }

  /** Kept samples so far, best first (copies). */
  get kept(): ExampleEntry[] {
    return this.entries.map((e) => ({ ...e, points: [...e.points], predictions: [...e.predictions] }));
  }

  /** Would a sample with this many flips and this index be kept now? */
  private qualifies(flips: number, index: number): boolean {
    if (flips <= 0 || this.limit === 0) return false;
    if (this.entries.length < this.limit) return true;
    return compare({ flips, index }, this.entries[this.entries.length - 1]) < 0;
  }

  private insert(entry: ExampleEntry): void {
    const list = this.entries;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(list[mid], entry) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (list.some((e) => e.index === entry.index)) {
      throw new RangeError(`sample ${entry.index} was recorded twice`);
    }
    list.splice(lo, 0, entry);
    if (list.length > this.limit) list.length = this.limit;
  }

  /**
   * One sample from its model outputs, in ClassificationAccumulator.addSample's layout: the K
   * outputs of the untransformed image at clean[cleanOffset..], point j's K outputs at
   * points[pointsOffset + j * pointStride ..].
   */
  addSample(
    index: number,
    label: number,
    clean: ArrayLike<number>,
    points: ArrayLike<number>,
    cleanOffset = 0,
    pointsOffset = 0,
    pointStride = this.classes,
  ): void {
    const K = this.classes;
    const m = this.points;
    if (cleanOffset + K > clean.length || pointsOffset + (m - 1) * pointStride + K > points.length) {
      throw new RangeError('output arrays are shorter than the sample layout requires');
    }
    const cleanArg = argmax(clean, cleanOffset, K);
    const preds = this.scratchPred;
    for (let j = 0; j < m; j++) preds[j] = argmax(points, pointsOffset + j * pointStride, K);
    this.addPredictions(index, label, cleanArg, preds);
  }

  /** One sample from its predictions (-1 = no prediction): clean, then one per point. */
  addPredictions(index: number, label: number, clean: number, predictions: ArrayLike<number>): void {
    checkInt(index, 'index', 0, Number.MAX_SAFE_INTEGER);
    checkInt(label, 'label', 0, Number.MAX_SAFE_INTEGER);
    const m = this.points;
    if (predictions.length < m) throw new RangeError(`expected ${m} predictions, got ${predictions.length}`);
    const flipped = this.scratch;
    let flips = 0;
    for (let j = 0; j < m; j++) {
      const p = predictions[j];
      if (!(p >= 0 && p === clean)) flipped[flips++] = j;
    }
    if (!this.qualifies(flips, index)) return;
    const keep = spread(flips, this.pointsPerExample).map((i) => flipped[i]);
    this.insert({
      index,
      label,
      clean: clean >= 0 ? clean : -1,
      flips,
      points: keep,
      predictions: keep.map((j) => (predictions[j] >= 0 ? predictions[j] : -1)),
    });
  }

  /** Adds another shard's kept samples (same options). Returns this. */
  merge(other: ExamplesAccumulator): this {
    if (
      other.points !== this.points ||
      other.classes !== this.classes ||
      other.limit !== this.limit ||
      other.pointsPerExample !== this.pointsPerExample
    ) {
      throw new RangeError('cannot merge examples accumulators with different options');
    }
    for (const e of other.entries) {
      if (this.qualifies(e.flips, e.index)) {
        this.insert({ ...e, points: [...e.points], predictions: [...e.predictions] });
      }
    }
    return this;
  }

  toJSON(): ExamplesState {
    return {
      kind: 'examples',
      version: 1,
      points: this.points,
      classes: this.classes,
      limit: this.limit,
      pointsPerExample: this.pointsPerExample,
      entries: this.kept,
    };
  }

  /** Rebuilds an accumulator from toJSON() output (after a JSON round trip); validates it. */
  static fromJSON(state: ExamplesState): ExamplesAccumulator {
    if (state?.kind !== 'examples' || state.version !== 1) {
      throw new RangeError('not an examples accumulator state (version 1)');
    }
    const acc = new ExamplesAccumulator(state);
    if (!Array.isArray(state.entries) || state.entries.length > acc.limit) {
      throw new RangeError('examples state: entries must be an array of at most `limit` samples');
    }
    for (const e of state.entries) {
      checkInt(e.index, 'entries[].index', 0, Number.MAX_SAFE_INTEGER);
      checkInt(e.label, 'entries[].label', 0, Number.MAX_SAFE_INTEGER);
      checkInt(e.clean, 'entries[].clean', -1, acc.classes - 1);
      checkInt(e.flips, 'entries[].flips', 1, acc.points);
      if (
        !Array.isArray(e.points) ||
        !Array.isArray(e.predictions) ||
        e.points.length !== e.predictions.length ||
        e.points.length !== Math.min(e.flips, acc.pointsPerExample)
      ) {
        throw new RangeError(`examples state: sample ${e.index} has inconsistent points`);
      }
      for (const j of e.points) checkInt(j, 'entries[].points[]', 0, acc.points - 1);
      for (const p of e.predictions) checkInt(p, 'entries[].predictions[]', -1, acc.classes - 1);
      acc.insert({ ...e, points: [...e.points], predictions: [...e.predictions] });
    }
    return acc;
  }

  /** The run's `results.examples`: names and point params filled in. */
  finalize(opts: ExamplesFinalizeOptions = {}): ExamplesResult {
    const names = opts.classNames ?? [];
    const name = (k: number) => (k < 0 ? null : (names[k] ?? String(k)));
    return {
      limit: this.limit,
      pointsPerExample: this.pointsPerExample,
      points: this.points,
      items: this.entries.map((e) => ({
        index: e.index,
        label: e.label,
        labelName: name(e.label) ?? String(e.label),
        prediction: e.clean >= 0 ? e.clean : null,
        predictionName: name(e.clean),
        flips: e.flips,
        changed: e.points.map((j, i) => ({
          point: j,
          params: opts.params?.[j] ?? null,
          prediction: e.predictions[i] >= 0 ? e.predictions[i] : null,
          predictionName: name(e.predictions[i]),
        })),
      })),
    };
  }
}
