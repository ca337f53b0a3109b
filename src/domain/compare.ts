// Comparison of two runs' results (issue 4): per point, per class and per layer deltas of every
// metric, for runs with the same sweep (same point params, same order) and the same classes.
// Pure: no I/O. `delta` is current - baseline, null when either side is null (absent or not finite).
import type { RunResults } from './gates.js';
import type { PointParams } from './sweep.js';
import { pointKey, samePoint } from './sweep.js';

/** One metric in both runs. */
export interface Delta {
  current: number | null;
  baseline: number | null;
  /** current - baseline; null when either is null. */
  delta: number | null;
}

export interface ClassDelta extends Delta {
  class: number;
  name: string;
}

export interface PointComparison {
  params: PointParams;
  accuracy: Delta;
  consistency: Delta;
  ekld: Delta;
  perClassAccuracy: ClassDelta[];
}

export interface LayerComparison {
  layer: string;
  aggregation: string;
  /** Set when the (layer, aggregation) is in one run only; the other side's values are null. */
  only?: 'current' | 'baseline';
  nv: Delta;
  tv: Delta;
  sv: Delta;
}

export interface ClassComparison {
  class: number;
  name: string;
  /** Accuracy on the class's clean (untransformed) images. */
  cleanAccuracy: Delta;
  /** The class's eKLD (mean KL over its samples and all points). */
  ekld: Delta;
}

export interface Comparison {
  comparable: true;
  samples: { current: number; baseline: number };
  nonFiniteSamples: Delta;
  overall: {
    accuracy: { clean: Delta; mean: Delta; min: Delta; max: Delta; worstCase: Delta };
    consistency: { mean: Delta; min: Delta };
    tta: { accuracy: Delta };
    ekld: { overall: Delta };
  };
  points: PointComparison[];
  perClass: ClassComparison[];
  nv: LayerComparison[];
}

export interface NotComparable {
  comparable: false;
  reason: string;
}

export type CompareResult = Comparison | NotComparable;

export interface CompareOptions {
  /** Class names by index; default the names in the results' ekld.perClass, else the index. */
  classNames?: readonly string[];
}

function finite(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** A null-safe delta of two values (anything not a finite number counts as null). */
export function delta(current: unknown, baseline: unknown): Delta {
  const c = finite(current);
  const b = finite(baseline);
  return { current: c, baseline: b, delta: c !== null && b !== null ? c - b : null };
}

function classCount(r: RunResults): number {
  return r.clean?.perClassAccuracy?.length ?? 0;
}

function plural(n: number, word: string, words = `${word}s`): string {
  return `${n} ${n === 1 ? word : words}`;
}

/** Why two runs cannot be compared, or null when they can. */
export function incomparability(current: RunResults, baseline: RunResults): string | null {
  const cp = current.points ?? [];
  const bp = baseline.points ?? [];
  if (cp.length !== bp.length) {
    return `the sweeps differ: the baseline has ${plural(bp.length, 'point')}, this run ${cp.length}`;
  }
  for (let j = 0; j < cp.length; j++) {
    if (!samePoint(cp[j].params, bp[j].params)) {
      return `the sweeps differ at point ${j}: this run has ${pointKey(cp[j].params)}, the baseline ${pointKey(bp[j].params)}`;
    }
  }
  const kc = classCount(current);
  const kb = classCount(baseline);
  if (kc !== kb)
    return `the classes differ: the baseline has ${plural(kb, 'class', 'classes')}, this run ${kc}`;
  const nc = current.ekld?.perClass;
  const nb = baseline.ekld?.perClass;
  if (nc && nb) {
    for (let k = 0; k < Math.min(nc.length, nb.length); k++) {
      if (nc[k].name !== nb[k].name) {
        return `the classes differ: class ${k} is ${JSON.stringify(nc[k].name)} in this run, ${JSON.stringify(nb[k].name)} in the baseline`;
      }
    }
  }
  return null;
}

function classNamesOf(current: RunResults, baseline: RunResults, options: CompareOptions): string[] {
  const k = classCount(current);
  const fromResults = current.ekld?.perClass ?? baseline.ekld?.perClass ?? [];
  const names: string[] = [];
  for (let c = 0; c < k; c++) {
    names.push(options.classNames?.[c] ?? fromResults.find((x) => x.class === c)?.name ?? String(c));
  }
  return names;
}

function perClassDeltas(
  cur: readonly (number | null)[] | undefined,
  bas: readonly (number | null)[] | undefined,
  names: readonly string[],
): ClassDelta[] {
  return names.map((name, c) => ({ class: c, name, ...delta(cur?.[c], bas?.[c]) }));
}

function layerComparisons(current: RunResults, baseline: RunResults): LayerComparison[] {
  const cur = current.nv ?? [];
  const bas = baseline.nv ?? [];
  const same = (a: { layer: string; aggregation: string }, b: { layer: string; aggregation: string }) =>
    a.layer === b.layer && a.aggregation === b.aggregation;
  const out: LayerComparison[] = [];
  for (const c of cur) {
    const b = bas.find((x) => same(x, c));
    out.push({
      layer: c.layer,
      aggregation: c.aggregation,
      ...(b ? {} : { only: 'current' as const }),
      nv: delta(c.nv, b?.nv),
      tv: delta(c.tv, b?.tv),
      sv: delta(c.sv, b?.sv),
    });
  }
  for (const b of bas) {
    if (cur.some((x) => same(x, b))) continue;
    out.push({
      layer: b.layer,
      aggregation: b.aggregation,
      only: 'baseline',
      nv: delta(null, b.nv),
      tv: delta(null, b.tv),
      sv: delta(null, b.sv),
    });
  }
  return out;
}

/**
 * Compares a run's results with a baseline run's. Runs whose sweeps (point params, in order) or
 * classes (count, and names where both carry them) differ are not comparable: `{comparable: false,
 * reason}` (the API answers 409 with the reason). Metrics one run lacks (ekld not computed, a layer
 * only one run has) compare as null on that side.
 */
export function compareResults(
  current: RunResults,
  baseline: RunResults,
  options: CompareOptions = {},
): CompareResult {
  const reason = incomparability(current, baseline);
  if (reason !== null) return { comparable: false, reason };
  const names = classNamesOf(current, baseline, options);
  const bp = baseline.points;
  const points: PointComparison[] = current.points.map((p, j) => ({
    params: p.params,
    accuracy: delta(p.accuracy, bp[j].accuracy),
    consistency: delta(p.consistency, bp[j].consistency),
    ekld: delta(current.ekld ? p.ekld : null, baseline.ekld ? bp[j].ekld : null),
    perClassAccuracy: perClassDeltas(p.perClassAccuracy, bp[j].perClassAccuracy, names),
  }));
  const ekldOf = (r: RunResults, c: number) => r.ekld?.perClass.find((x) => x.class === c)?.value;
  const perClass: ClassComparison[] = names.map((name, c) => ({
    class: c,
    name,
    cleanAccuracy: delta(current.clean?.perClassAccuracy?.[c], baseline.clean?.perClassAccuracy?.[c]),
    ekld: delta(ekldOf(current, c), ekldOf(baseline, c)),
  }));
  return {
    comparable: true,
    samples: { current: current.samples, baseline: baseline.samples },
    nonFiniteSamples: delta(current.nonFiniteSamples ?? 0, baseline.nonFiniteSamples ?? 0),
    overall: {
      accuracy: {
        clean: delta(current.clean?.accuracy, baseline.clean?.accuracy),
        mean: delta(current.accuracy?.mean, baseline.accuracy?.mean),
        min: delta(current.accuracy?.min, baseline.accuracy?.min),
        max: delta(current.accuracy?.max, baseline.accuracy?.max),
        worstCase: delta(current.accuracy?.worstCase, baseline.accuracy?.worstCase),
      },
      consistency: {
        mean: delta(current.consistency?.mean, baseline.consistency?.mean),
        min: delta(current.consistency?.min, baseline.consistency?.min),
      },
      tta: { accuracy: delta(current.tta?.accuracy, baseline.tta?.accuracy) },
      ekld: { overall: delta(current.ekld?.overall, baseline.ekld?.overall) },
    },
    points,
    perClass,
    nv: layerComparisons(current, baseline),
  };
}
