import { describe, expect, it } from 'vitest';
import { type Comparison, compareResults, delta, incomparability } from '../../src/domain/compare.js';
import type { ResultsNvLayer, RunResults } from '../../src/domain/gates.js';
import type { PointParams } from '../../src/domain/sweep.js';

// Values are dyadic fractions (0.75, 0.625, ...) so the deltas are exact.

function layer(name: string, aggregation: string, nv: number | null, tv: number | null, sv: number | null) {
  const e: ResultsNvLayer = {
    layer: name,
    aggregation,
    dispersion: 'std',
    perClass: false,
    nv,
    tv,
    sv,
    finite: 4,
    infinite: 0,
    total: 4,
    samples: 64,
  };
  return e;
}

function point(
  params: PointParams,
  accuracy: number | null,
  consistency: number,
  ekld: number | null,
  pc: number[],
) {
  return { params, accuracy, consistency, ekld, perClassAccuracy: pc };
}

const CURRENT: RunResults = {
  samples: 64,
  nonFiniteSamples: 0,
  clean: { accuracy: 0.875, perClassAccuracy: [1, 0.75] },
  points: [
    point({ rotate: 0 }, 0.875, 1, 0, [1, 0.75]),
    point({ rotate: 90 }, 0.5, 0.5, 0.25, [0.5, 0.5]),
    point({ rotate: 15, scale: 1.25 }, 0.75, 0.75, 0.125, [0.75, 0.75]),
  ],
  accuracy: { mean: 0.6875, min: 0.5, max: 0.875, worstCase: 0.375 },
  consistency: { mean: 0.75, min: 0.5 },
  tta: { accuracy: 0.8125 },
  ekld: {
    overall: 0.125,
    infinitePairs: 0,
    perClass: [
      { class: 0, name: 'cat', count: 32, value: 0.0625, classSize: null },
      { class: 1, name: 'dog', count: 32, value: 0.1875, classSize: null },
    ],
  },
  nv: [layer('/Relu_output_0', 'mean', 0.75, 0.5, 0.625), layer('logits', 'mean', 1.5, 0.75, 0.5)],
};

const BASELINE: RunResults = {
  samples: 64,
  nonFiniteSamples: 2,
  clean: { accuracy: 0.9375, perClassAccuracy: [1, 0.875] },
  points: [
    point({ rotate: 0 }, 0.9375, 1, 0, [1, 0.875]),
    point({ rotate: 90 }, 0.25, 0.25, 0.5, [0.25, 0.25]),
    // same point, params in another order
    point({ scale: 1.25, rotate: 15 }, 0.625, 0.5, 0.25, [0.5, 0.75]),
  ],
  accuracy: { mean: 0.604166, min: 0.25, max: 0.9375, worstCase: 0.25 },
  consistency: { mean: 0.5, min: 0.25 },
  tta: { accuracy: 0.8125 },
  ekld: {
    overall: 0.25,
    infinitePairs: 0,
    perClass: [
      { class: 0, name: 'cat', count: 32, value: 0.125, classSize: null },
      { class: 1, name: 'dog', count: 32, value: null, classSize: null },
    ],
  },
  nv: [layer('/Relu_output_0', 'mean', 1, 0.5, 0.5), layer('/Relu_1_output_0', 'mean', 0.5, 0.25, 0.5)],
};

describe('delta', () => {
  it('is null-safe', () => {
    expect(delta(0.75, 0.5)).toEqual({ current: 0.75, baseline: 0.5, delta: 0.25 });
    expect(delta(null, 0.5)).toEqual({ current: null, baseline: 0.5, delta: null });
    expect(delta(0.5, undefined)).toEqual({ current: 0.5, baseline: null, delta: null });
    expect(delta(Number.NaN, 0.5)).toEqual({ current: null, baseline: 0.5, delta: null });
    expect(delta(0, 0)).toEqual({ current: 0, baseline: 0, delta: 0 });
  });
});

describe('compareResults', () => {
  it('same sweep: per point, per class, per layer and overall deltas', () => {
    const c = compareResults(CURRENT, BASELINE) as Comparison;
    expect(c.comparable).toBe(true);
    expect(c.samples).toEqual({ current: 64, baseline: 64 });
    expect(c.nonFiniteSamples).toEqual({ current: 0, baseline: 2, delta: -2 });
    expect(c.overall).toEqual({
      accuracy: {
        clean: { current: 0.875, baseline: 0.9375, delta: -0.0625 },
        mean: { current: 0.6875, baseline: 0.604166, delta: 0.6875 - 0.604166 },
        min: { current: 0.5, baseline: 0.25, delta: 0.25 },
        max: { current: 0.875, baseline: 0.9375, delta: -0.0625 },
        worstCase: { current: 0.375, baseline: 0.25, delta: 0.125 },
      },
      consistency: {
        mean: { current: 0.75, baseline: 0.5, delta: 0.25 },
        min: { current: 0.5, baseline: 0.25, delta: 0.25 },
      },
      tta: { accuracy: { current: 0.8125, baseline: 0.8125, delta: 0 } },
      ekld: { overall: { current: 0.125, baseline: 0.25, delta: -0.125 } },
    });
    expect(c.points).toEqual([
      {
        params: { rotate: 0 },
        accuracy: { current: 0.875, baseline: 0.9375, delta: -0.0625 },
        consistency: { current: 1, baseline: 1, delta: 0 },
        ekld: { current: 0, baseline: 0, delta: 0 },
        perClassAccuracy: [
          { class: 0, name: 'cat', current: 1, baseline: 1, delta: 0 },
          { class: 1, name: 'dog', current: 0.75, baseline: 0.875, delta: -0.125 },
        ],
      },
      {
        params: { rotate: 90 },
        accuracy: { current: 0.5, baseline: 0.25, delta: 0.25 },
        consistency: { current: 0.5, baseline: 0.25, delta: 0.25 },
        ekld: { current: 0.25, baseline: 0.5, delta: -0.25 },
        perClassAccuracy: [
          { class: 0, name: 'cat', current: 0.5, baseline: 0.25, delta: 0.25 },
          { class: 1, name: 'dog', current: 0.5, baseline: 0.25, delta: 0.25 },
        ],
      },
      {
        params: { rotate: 15, scale: 1.25 }, // this run's params
        accuracy: { current: 0.75, baseline: 0.625, delta: 0.125 },
        consistency: { current: 0.75, baseline: 0.5, delta: 0.25 },
        ekld: { current: 0.125, baseline: 0.25, delta: -0.125 },
        perClassAccuracy: [
          { class: 0, name: 'cat', current: 0.75, baseline: 0.5, delta: 0.25 },
          { class: 1, name: 'dog', current: 0.75, baseline: 0.75, delta: 0 },
        ],
      },
    ]);
    expect(c.perClass).toEqual([
      {
        class: 0,
        name: 'cat',
        cleanAccuracy: { current: 1, baseline: 1, delta: 0 },
        ekld: { current: 0.0625, baseline: 0.125, delta: -0.0625 },
      },
      {
        class: 1,
        name: 'dog',
        cleanAccuracy: { current: 0.75, baseline: 0.875, delta: -0.125 },
        ekld: { current: 0.1875, baseline: null, delta: null },
      },
    ]);
    // Layers in one run only are listed with nulls on the other side, this run's first.
    expect(c.nv).toEqual([
      {
        layer: '/Relu_output_0',
        aggregation: 'mean',
        nv: { current: 0.75, baseline: 1, delta: -0.25 },
        tv: { current: 0.5, baseline: 0.5, delta: 0 },
        sv: { current: 0.625, baseline: 0.5, delta: 0.125 },
      },
      {
        layer: 'logits',
        aggregation: 'mean',
        only: 'current',
        nv: { current: 1.5, baseline: null, delta: null },
        tv: { current: 0.75, baseline: null, delta: null },
        sv: { current: 0.5, baseline: null, delta: null },
      },
      {
        layer: '/Relu_1_output_0',
        aggregation: 'mean',
        only: 'baseline',
        nv: { current: null, baseline: 0.5, delta: null },
        tv: { current: null, baseline: 0.25, delta: null },
        sv: { current: null, baseline: 0.5, delta: null },
      },
    ]);
  });

  it('a run compared with itself has zero deltas', () => {
    const c = compareResults(CURRENT, CURRENT) as Comparison;
    expect(c.comparable).toBe(true);
    expect(
      c.points.every((p) => p.accuracy.delta === 0 && p.consistency.delta === 0 && p.ekld.delta === 0),
    ).toBe(true);
    expect(c.nv.map((l) => [l.layer, l.only, l.nv.delta])).toEqual([
      ['/Relu_output_0', undefined, 0],
      ['logits', undefined, 0],
    ]);
  });

  it('aggregations are matched too', () => {
    const cur: RunResults = { ...CURRENT, nv: [layer('a', 'mean', 1, 1, 1), layer('a', 'none', 2, 2, 2)] };
    const base: RunResults = { ...CURRENT, nv: [layer('a', 'none', 1.5, 1, 1)] };
    const c = compareResults(cur, base) as Comparison;
    expect(c.nv.map((l) => [l.layer, l.aggregation, l.only, l.nv])).toEqual([
      ['a', 'mean', 'current', { current: 1, baseline: null, delta: null }],
      ['a', 'none', undefined, { current: 2, baseline: 1.5, delta: 0.5 }],
    ]);
  });

  it('metrics one run lacks compare as null; null values give null deltas', () => {
    const plain: RunResults = {
      ...BASELINE,
      ekld: undefined,
      nv: undefined,
      accuracy: { mean: null, min: null, max: null, worstCase: 0.25 },
      points: BASELINE.points.map((p) => ({ ...p, ekld: undefined })),
    };
    const c = compareResults(CURRENT, plain) as Comparison;
    expect(c.comparable).toBe(true);
    expect(c.overall.ekld.overall).toEqual({ current: 0.125, baseline: null, delta: null });
    expect(c.overall.accuracy.mean).toEqual({ current: 0.6875, baseline: null, delta: null });
    expect(c.points[1].ekld).toEqual({ current: 0.25, baseline: null, delta: null });
    expect(c.perClass[0].ekld).toEqual({ current: 0.0625, baseline: null, delta: null });
    expect(c.nv.map((l) => l.only)).toEqual(['current', 'current']);
    // Class names come from whichever run has them.
    const back = compareResults(plain, CURRENT) as Comparison;
    expect(back.perClass.map((k) => k.name)).toEqual(['cat', 'dog']);
    expect(back.points[0].ekld).toEqual({ current: null, baseline: 0, delta: null });
    expect(back.nv.map((l) => [l.layer, l.only])).toEqual([
      ['/Relu_output_0', 'baseline'],
      ['logits', 'baseline'],
    ]);
  });

  it('class names: the option, else the results, else the index', () => {
    const c = compareResults(CURRENT, BASELINE, { classNames: ['Cat', 'Dog'] }) as Comparison;
    expect(c.perClass.map((k) => k.name)).toEqual(['Cat', 'Dog']);
    expect(c.points[0].perClassAccuracy.map((k) => k.name)).toEqual(['Cat', 'Dog']);
    const bare = compareResults(
      { ...CURRENT, ekld: undefined },
      { ...BASELINE, ekld: undefined },
    ) as Comparison;
    expect(bare.perClass.map((k) => k.name)).toEqual(['0', '1']);
  });

  it('different sweeps are not comparable', () => {
    const twelve: RunResults = {
      ...BASELINE,
      points: Array.from({ length: 12 }, (_, k) => point({ rotate: k * 30 }, 0.5, 0.5, 0.5, [0.5, 0.5])),
    };
    const seven: RunResults = { ...CURRENT, points: twelve.points.slice(0, 7) };
    expect(compareResults(seven, twelve)).toEqual({
      comparable: false,
      reason: 'the sweeps differ: the baseline has 12 points, this run 7',
    });
    const one: RunResults = { ...BASELINE, points: [BASELINE.points[0]] };
    expect(compareResults(CURRENT, one)).toEqual({
      comparable: false,
      reason: 'the sweeps differ: the baseline has 1 point, this run 3',
    });
    const other: RunResults = {
      ...BASELINE,
      points: [BASELINE.points[0], point({ rotate: 60 }, 0.5, 0.5, 0.5, [0.5, 0.5]), BASELINE.points[2]],
    };
    expect(compareResults(CURRENT, other)).toEqual({
      comparable: false,
      reason: 'the sweeps differ at point 1: this run has rotate=90, the baseline rotate=60',
    });
    // Same points in another order: the order matters.
    const reordered: RunResults = {
      ...BASELINE,
      points: [BASELINE.points[1], BASELINE.points[0], BASELINE.points[2]],
    };
    expect(compareResults(CURRENT, reordered)).toEqual({
      comparable: false,
      reason: 'the sweeps differ at point 0: this run has rotate=0, the baseline rotate=90',
    });
    // Numbers are compared numerically; arrays element by element.
    const t1: RunResults = { ...CURRENT, points: [point({ translate: [2, -3] }, 0.5, 0.5, 0.5, [0.5, 0.5])] };
    const t2: RunResults = { ...CURRENT, points: [point({ translate: [2, 3] }, 0.5, 0.5, 0.5, [0.5, 0.5])] };
    expect(compareResults(t1, t1).comparable).toBe(true);
    expect(compareResults(t1, t2)).toEqual({
      comparable: false,
      reason: 'the sweeps differ at point 0: this run has translate=[2,-3], the baseline translate=[2,3]',
    });
  });

  it('different classes are not comparable', () => {
    const three: RunResults = { ...BASELINE, clean: { accuracy: 0.5, perClassAccuracy: [0.5, 0.5, 0.5] } };
    expect(compareResults(CURRENT, three)).toEqual({
      comparable: false,
      reason: 'the classes differ: the baseline has 3 classes, this run 2',
    });
    const renamed: RunResults = {
      ...BASELINE,
      ekld: {
        overall: 0.25,
        infinitePairs: 0,
        perClass: [
          { class: 0, name: 'cat', value: 0.125 },
          { class: 1, name: 'wolf', value: 0.125 },
        ],
      },
    };
    expect(compareResults(CURRENT, renamed)).toEqual({
      comparable: false,
      reason: 'the classes differ: class 1 is "dog" in this run, "wolf" in the baseline',
    });
    expect(incomparability(CURRENT, BASELINE)).toBeNull();
    expect(incomparability(CURRENT, renamed)).toBe(
      'the classes differ: class 1 is "dog" in this run, "wolf" in the baseline',
    );
  });

  it('results survive a JSON round trip unchanged', () => {
    const c = compareResults(CURRENT, BASELINE);
    expect(JSON.parse(JSON.stringify(c))).toEqual(c);
  });
});
