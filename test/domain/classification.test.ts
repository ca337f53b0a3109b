import { describe, expect, it } from 'vitest';
import {
  ClassificationAccumulator,
  type ClassificationResult,
  type ClassificationState,
  klDivergence,
} from '../../src/domain/classification.js';
import { mulberry32 } from '../../src/domain/stats.js';

function logSoftmax(x: number[]): number[] {
  const mx = Math.max(...x);
  const lse = mx + Math.log(x.reduce((s, v) => s + Math.exp(v - mx), 0));
  return x.map((v) => v - lse);
}

function naiveKl(a: number[], b: number[]): number {
  const la = logSoftmax(a);
  const lb = logSoftmax(b);
  return la.reduce((s, v, k) => s + Math.exp(v) * (v - lb[k]), 0);
}

const f32 = (rows: number[][]) => Float32Array.from(rows.flat());

function relClose(a: number | null, b: number | null, tol: number) {
  if (a === null || b === null) {
    expect(a).toBe(b);
    return;
  }
  expect(Math.abs(a - b)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(a), Math.abs(b)));
}

function expectResultsClose(a: ClassificationResult, b: ClassificationResult, tol: number) {
  const flat = (r: ClassificationResult) => {
    const out: Array<number | null> = [];
    const walk = (v: unknown) => {
      if (v === null || typeof v === 'number') out.push(v as number | null);
      else if (Array.isArray(v)) v.forEach(walk);
      else if (typeof v === 'object') Object.values(v as object).forEach(walk);
    };
    walk(r);
    return out;
  };
  const fa = flat(a);
  const fb = flat(b);
  expect(fa.length).toBe(fb.length);
  fa.forEach((x, i) => {
    relClose(x, fb[i], tol);
  });
}

describe('KL divergence', () => {
  it('SPEC test vector: logits [2, 0.5, -1] vs [1, 1, 0]', () => {
    const kl = klDivergence([2, 0.5, -1], [1, 1, 0]);
    expect(Math.abs(kl - 0.27952277)).toBeLessThan(1e-8);
    expect(kl).toBeCloseTo(naiveKl([2, 0.5, -1], [1, 1, 0]), 14);
  });

  it('is exactly 0 for identical outputs, and from probabilities when asked', () => {
    expect(klDivergence([3, -1, 0.25], [3, -1, 0.25])).toBe(0);
    expect(klDivergence([1, 0, 0], [0.5, 0.5, 0], true)).toBeCloseTo(Math.log(2), 15);
    // q = 0 where p > 0: +Infinity, reported as such
    expect(klDivergence([0.5, 0.5, 0], [1, 0, 0], true)).toBe(Number.POSITIVE_INFINITY);
    expect(klDivergence([Number.NaN, 0, 0], [1, 0, 0])).toBeNaN();
  });
});

describe('ClassificationAccumulator', () => {
  // K = 3, m = 2. Predictions: argmax of each row.
  const A = [5, 0, 0];
  const B = [0, 5, 0];
  const C = [0, 0, 5];
  const labels = [0, 1, 2, 0];
  const clean = [A, B, C, B];
  const points = [
    [A, B],
    [A, B],
    [C, C],
    [B, A],
  ];

  function handAcc() {
    const acc = new ClassificationAccumulator({ points: 2, classes: 3 });
    acc.addBatch(labels, f32(clean), f32(points.flat()));
    return acc;
  }

  it('accuracy, per class, clean, consistency, worst case and TTA on a hand-made case', () => {
    const r = handAcc().finalize({
      params: [{ rotate: 0 }, { rotate: 90 }],
      classNames: ['a', 'b', 'c'],
      classSizes: [10, null, 30],
    });
    expect(r.samples).toBe(4);
    expect(r.nonFiniteSamples).toBe(0);
    expect(r.clean).toEqual({ accuracy: 0.75, perClassAccuracy: [0.5, 1, 1] });
    expect(r.points.map((p) => p.accuracy)).toEqual([0.5, 0.75]);
    expect(r.points[0].perClassAccuracy).toEqual([0.5, 0, 1]);
    expect(r.points[1].perClassAccuracy).toEqual([0.5, 1, 1]);
    expect(r.points.map((p) => p.consistency)).toEqual([0.75, 0.5]);
    expect(r.points[0].params).toEqual({ rotate: 0 });
    expect(r.accuracy).toEqual({ mean: 0.625, min: 0.5, max: 0.75, worstCase: 0.25 });
    expect(r.consistency).toEqual({ mean: 0.625, min: 0.5 });
    // TTA: the mean of softmax(A) and softmax(B) ties classes 0 and 1: the first (0) wins
    expect(r.tta.accuracy).toBe(0.75);
    // eKLD
    const kl = (i: number, j: number) => naiveKl(clean[i], points[i][j]);
    const perPoint = [0, 1].map((j) => (kl(0, j) + kl(1, j) + kl(2, j) + kl(3, j)) / 4);
    relClose(r.points[0].ekld, perPoint[0], 1e-12);
    relClose(r.points[1].ekld, perPoint[1], 1e-12);
    relClose(r.ekld.overall, (perPoint[0] + perPoint[1]) / 2, 1e-12);
    expect(r.ekld.perClass).toHaveLength(3);
    expect(r.ekld.perClass[0]).toMatchObject({ class: 0, name: 'a', count: 2, classSize: 10 });
    relClose(r.ekld.perClass[0].value, (kl(0, 0) + kl(0, 1) + kl(3, 0) + kl(3, 1)) / 4, 1e-12);
    expect(r.ekld.perClass[1]).toMatchObject({ class: 1, name: 'b', count: 1, classSize: null });
    relClose(r.ekld.perClass[1].value, (kl(1, 0) + kl(1, 1)) / 2, 1e-12);
    expect(r.ekld.perClass[2].value).toBe(0); // C vs C
    expect(r.ekld.infinitePairs).toBe(0);
  });

  it('an invariant model: eKLD 0 exactly, consistency 1, accuracy = clean accuracy everywhere', () => {
    const rnd = mulberry32(5);
    const acc = new ClassificationAccumulator({ points: 4, classes: 5 });
    for (let i = 0; i < 50; i++) {
      const logits = Array.from({ length: 5 }, () => rnd() * 10 - 5);
      acc.addSample(
        i % 5,
        Float32Array.from(logits),
        Float32Array.from([...logits, ...logits, ...logits, ...logits]),
      );
    }
    const r = acc.finalize({ params: [{ a: 1 }, { a: 2 }, { a: 3 }, { a: 4 }] });
    expect(r.ekld.overall).toBe(0);
    expect(r.ekld.perClass.every((c) => c.value === 0)).toBe(true);
    expect(r.consistency.min).toBe(1);
    expect(r.accuracy.worstCase).toBe(r.clean.accuracy);
    expect(r.tta.accuracy).toBe(r.clean.accuracy);
  });

  it('non-finite outputs never throw: NaN metrics are null, counted, and other values stay', () => {
    const acc = new ClassificationAccumulator({ points: 2, classes: 3 });
    acc.addSample(0, f32([A]), f32([A, [Number.NaN, 0, 0]]));
    acc.addSample(1, f32([B]), f32([B, B]));
    const r = acc.finalize({ params: [{ p: 0 }, { p: 1 }] });
    expect(r.nonFiniteSamples).toBe(1);
    expect(r.points[0].ekld).toBe(0);
    expect(r.points[1].ekld).toBeNull();
    expect(r.ekld.overall).toBeNull();
    expect(r.ekld.perClass[0].value).toBeNull();
    expect(r.ekld.perClass[1].value).toBe(0);
    // the NaN prediction is wrong and inconsistent; accuracy stays a number
    expect(r.points[1].accuracy).toBe(0.5);
    expect(r.points[1].consistency).toBe(0.5);
    expect(r.accuracy.worstCase).toBe(0.5);
    // JSON-safe
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });

  it('probabilities: a zero where the clean output is positive gives an infinite KL, reported', () => {
    const acc = new ClassificationAccumulator({ points: 1, classes: 3, outputIsProbability: true });
    acc.addSample(0, f32([[0.5, 0.5, 0]]), f32([[1, 0, 0]]));
    acc.addSample(0, f32([[1, 0, 0]]), f32([[0.5, 0.5, 0]]));
    const r = acc.finalize({ params: [{}] });
    expect(r.ekld.infinitePairs).toBe(1);
    expect(r.ekld.overall).toBeNull();
    expect(r.nonFiniteSamples).toBe(0);
    expect(r.points[0].accuracy).toBe(1);
    expect(acc.rawKlSum(0)).toBe(Number.POSITIVE_INFINITY);
  });

  it('no samples: ratios are null', () => {
    const r = new ClassificationAccumulator({ points: 2, classes: 2 }).finalize({ params: [{}, {}] });
    expect(r.samples).toBe(0);
    expect(r.clean.accuracy).toBeNull();
    expect(r.accuracy).toEqual({ mean: null, min: null, max: null, worstCase: null });
    expect(r.ekld.overall).toBeNull();
    expect(r.ekld.perClass[0]).toMatchObject({ count: 0, value: null, name: '0' });
  });

  it('layouts: strided points equal the contiguous default; bad input throws RangeError', () => {
    const rnd = mulberry32(11);
    const K = 4;
    const m = 3;
    const n = 6;
    const cleanArr = Float32Array.from({ length: n * K }, () => rnd() * 6 - 3);
    const sampleMajor = Float32Array.from({ length: n * m * K }, () => rnd() * 6 - 3);
    // the same data point-major: [m][n][K]
    const pointMajor = new Float32Array(n * m * K);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < m; j++)
        for (let k = 0; k < K; k++) pointMajor[(j * n + i) * K + k] = sampleMajor[(i * m + j) * K + k];
    const lab = [0, 1, 2, 3, 0, 1];
    const a = new ClassificationAccumulator({ points: m, classes: K });
    a.addBatch(lab, cleanArr, sampleMajor);
    const b = new ClassificationAccumulator({ points: m, classes: K });
    for (let i = 0; i < n; i++) b.addSample(lab[i], cleanArr, pointMajor, i * K, i * K, n * K);
    expect(b.toJSON()).toEqual(a.toJSON());
    expect(() => a.addSample(4, cleanArr, sampleMajor)).toThrow(RangeError);
    expect(() => a.addSample(0.5, cleanArr, sampleMajor)).toThrow(RangeError);
    expect(() => a.addSample(0, cleanArr, sampleMajor, 0, sampleMajor.length - 2)).toThrow(RangeError);
    expect(() => a.merge(new ClassificationAccumulator({ points: m + 1, classes: K }))).toThrow(RangeError);
    expect(() => a.finalize({ params: [{}] })).toThrow(RangeError);
  });

  it('shard invariance: any sharding and merge order gives the same result (1e-12 relative)', () => {
    const rnd = mulberry32(2024);
    const K = 10;
    const m = 7;
    const n = 300;
    const lab = Array.from({ length: n }, () => Math.floor(rnd() * K));
    const cleanArr = Float32Array.from({ length: n * K }, () => rnd() * 8 - 4);
    const pts = Float32Array.from({ length: n * m * K }, () => rnd() * 8 - 4);
    const params = Array.from({ length: m }, (_, j) => ({ rotate: j * 30 }));
    const shardAcc = (from: number, to: number) => {
      const acc = new ClassificationAccumulator({ points: m, classes: K });
      acc.addBatch(
        lab.slice(from, to),
        cleanArr.subarray(from * K, to * K),
        pts.subarray(from * m * K, to * m * K),
      );
      return acc;
    };
    const whole = shardAcc(0, n).finalize({ params });
    for (const shards of [1, 2, 7]) {
      const bounds = Array.from({ length: shards + 1 }, (_, s) => Math.round((s * n) / shards));
      const parts = Array.from({ length: shards }, (_, s) => shardAcc(bounds[s], bounds[s + 1]));
      for (const order of [parts.map((_, i) => i), parts.map((_, i) => shards - 1 - i)]) {
        // through JSON, as persisted per shard
        const revived = order.map((i) =>
          ClassificationAccumulator.fromJSON(
            JSON.parse(JSON.stringify(parts[i].toJSON())) as ClassificationState,
          ),
        );
        const total = new ClassificationAccumulator({ points: m, classes: K });
        for (const p of revived) total.merge(p);
        expectResultsClose(total.finalize({ params }), whole, 1e-12);
      }
    }
  });

  it('serialization round trip is exact, NaN and Infinity included', () => {
    const acc = handAcc();
    acc.addSample(2, f32([[Number.NaN, 1, 2]]), f32([C, C]));
    const json = JSON.stringify(acc.toJSON());
    const back = ClassificationAccumulator.fromJSON(JSON.parse(json) as ClassificationState);
    expect(JSON.stringify(back.toJSON())).toBe(json);
    expect(back.finalize({ params: [{}, {}] })).toEqual(acc.finalize({ params: [{}, {}] }));
    const probs = new ClassificationAccumulator({ points: 1, classes: 2, outputIsProbability: true });
    probs.addSample(0, f32([[1, 0]]), f32([[0, 1]]));
    const p2 = ClassificationAccumulator.fromJSON(
      JSON.parse(JSON.stringify(probs.toJSON())) as ClassificationState,
    );
    expect(p2.rawKlSum(0)).toBe(Number.POSITIVE_INFINITY);
    expect(p2.outputIsProbability).toBe(true);
    // corrupted states are refused
    const bad = JSON.parse(json) as ClassificationState;
    bad.correct = [1];
    expect(() => ClassificationAccumulator.fromJSON(bad)).toThrow(RangeError);
    expect(() =>
      ClassificationAccumulator.fromJSON({ ...(JSON.parse(json) as ClassificationState), version: 2 as 1 }),
    ).toThrow(RangeError);
  });

  it('is fast: 13,000 images x 10 classes in well under a second', () => {
    const K = 10;
    const m = 12;
    const n = 1000;
    const rnd = mulberry32(1);
    const cleanArr = Float32Array.from({ length: n * K }, () => rnd() * 8 - 4);
    const pts = Float32Array.from({ length: n * m * K }, () => rnd() * 8 - 4);
    const lab = Array.from({ length: n }, (_, i) => i % K);
    const t0 = performance.now();
    const acc = new ClassificationAccumulator({ points: m, classes: K });
    acc.addBatch(lab, cleanArr, pts);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(acc.count).toBe(n);
  });
});
