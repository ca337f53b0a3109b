import { describe, expect, it } from 'vitest';
import { ExamplesAccumulator, type ExamplesState } from '../../src/domain/examples.js';
import { mulberry32 } from '../../src/domain/stats.js';

/** Random samples: label, clean prediction and m point predictions over K classes. */
function randomSamples(n: number, m: number, K: number, seed: number) {
  const rnd = mulberry32(seed);
  const pick = () => Math.floor(rnd() * K);
  return Array.from({ length: n }, (_, index) => {
    const clean = pick();
    // Mostly stable predictions, so that flip counts vary and tie often.
    const predictions = Array.from({ length: m }, () => (rnd() < 0.7 ? clean : pick()));
    return { index, label: pick(), clean, predictions };
  });
}

function accumulate(
  samples: ReturnType<typeof randomSamples>,
  opts: { points: number; classes: number; limit?: number; pointsPerExample?: number },
) {
  const acc = new ExamplesAccumulator(opts);
  for (const s of samples) acc.addPredictions(s.index, s.label, s.clean, s.predictions);
  return acc;
}

/** The expected selection, computed naively. */
function naiveTop(samples: ReturnType<typeof randomSamples>, limit: number) {
  return samples
    .map((s) => ({ index: s.index, flips: s.predictions.filter((p) => p !== s.clean).length }))
    .filter((s) => s.flips > 0)
    .sort((a, b) => b.flips - a.flips || a.index - b.index)
    .slice(0, limit);
}

describe('ExamplesAccumulator', () => {
  it('keeps the samples with the most flips, ties by sample index', () => {
    const acc = new ExamplesAccumulator({ points: 4, classes: 3, limit: 3 });
    acc.addPredictions(0, 0, 0, [0, 0, 0, 0]); // 0 flips: never kept
    acc.addPredictions(1, 1, 1, [0, 1, 1, 1]); // 1
    acc.addPredictions(2, 2, 2, [0, 0, 2, 2]); // 2
    acc.addPredictions(3, 0, 0, [1, 1, 0, 0]); // 2
    acc.addPredictions(4, 1, 1, [0, 0, 0, 2]); // 4
    acc.addPredictions(5, 0, 0, [0, 2, 1, 0]); // 2, but index 5 loses the tie
    expect(acc.kept.map((e) => [e.index, e.flips])).toEqual([
      [4, 4],
      [2, 2],
      [3, 2],
    ]);
    const four = acc.kept[0];
    expect(four).toEqual({
      index: 4,
      label: 1,
      clean: 1,
      flips: 4,
      points: [0, 1, 2, 3],
      predictions: [0, 0, 0, 2],
    });
  });

  it('counts a missing prediction (NaN output) as a flip, like consistency does', () => {
    const acc = new ExamplesAccumulator({ points: 3, classes: 3, limit: 5 });
    acc.addSample(7, 2, [0, 1, 2], [0, 1, 2, Number.NaN, 0, 0, 0, 1, 2], 0, 0);
    // clean argmax 2; points: 2 (same), NaN (no prediction: a flip), 2 (same)
    const [e] = acc.kept;
    expect(e.clean).toBe(2);
    expect(e.flips).toBe(1);
    expect(e.points).toEqual([1]);
    expect(e.predictions).toEqual([-1]);
    // A NaN clean output: every point flips.
    acc.addSample(8, 0, [Number.NaN, 0, 0], [1, 0, 0, 1, 0, 0, 1, 0, 0]);
    expect(acc.kept[0]).toMatchObject({ index: 8, clean: -1, flips: 3, predictions: [0, 0, 0] });
    const result = acc.finalize({ classNames: ['a', 'b', 'c'] });
    expect(result.items[0]).toMatchObject({ prediction: null, predictionName: null, labelName: 'a' });
    expect(result.items[1].changed[0]).toMatchObject({ point: 1, prediction: null, predictionName: null });
  });

  it('reads logits in the classification layout (point stride, offsets) with first-maximum argmax', () => {
    const K = 3;
    const m = 2;
    // Two samples laid out as the engine does: sample b at (b*Q)*K, Q = m + 1, clean first.
    const Q = m + 1;
    const logits = Float32Array.from([
      // sample 0: clean argmax 1; points argmax 1 (tie 1,1 -> first), 0
      0, 5, 5, 0, 3, 3, 9, 1, 1,
      // sample 1: clean argmax 0; points 0, 0
      4, 1, 1, 4, 4, 0, 2, 1, 0,
    ]);
    const acc = new ExamplesAccumulator({ points: m, classes: K });
    for (let b = 0; b < 2; b++) acc.addSample(10 + b, 1, logits, logits, b * Q * K, (b * Q + 1) * K, K);
    expect(acc.kept).toEqual([{ index: 10, label: 1, clean: 1, flips: 1, points: [1], predictions: [0] }]);
  });

  it('keeps at most pointsPerExample flipped points, spread over the sweep', () => {
    const acc = new ExamplesAccumulator({ points: 10, classes: 2, pointsPerExample: 4 });
    acc.addPredictions(0, 0, 0, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    acc.addPredictions(1, 0, 0, [0, 1, 0, 1, 0, 1, 0, 0, 0, 0]);
    const [a, b] = acc.kept;
    expect(a.flips).toBe(10);
    expect(a.points).toEqual([0, 3, 6, 9]);
    expect(b.points).toEqual([1, 3, 5]);
  });

  it('gives the same result for any sharding and merge order', () => {
    const m = 7;
    const K = 4;
    const samples = randomSamples(400, m, K, 42);
    const opts = { points: m, classes: K, limit: 12, pointsPerExample: 3 };
    const whole = accumulate(samples, opts).toJSON();
    expect(whole.entries.map(({ index, flips }) => ({ index, flips }))).toEqual(naiveTop(samples, 12));
    const rnd = mulberry32(7);
    for (let trial = 0; trial < 20; trial++) {
      // Random contiguous shards, merged in a random order, each through a JSON round trip.
      const cuts = [0];
      while (cuts[cuts.length - 1] < samples.length) {
        cuts.push(Math.min(samples.length, cuts[cuts.length - 1] + 1 + Math.floor(rnd() * 80)));
      }
      const shards = cuts.slice(1).map((end, i) => {
        const acc = accumulate(samples.slice(cuts[i], end), opts);
        return ExamplesAccumulator.fromJSON(JSON.parse(JSON.stringify(acc.toJSON())) as ExamplesState);
      });
      shards.sort(() => rnd() - 0.5);
      const merged = shards.reduce((a, b) => a.merge(b));
      expect(merged.toJSON()).toEqual(whole);
    }
  });

  it('round-trips through JSON and refuses malformed states', () => {
    const acc = accumulate(randomSamples(50, 5, 3, 3), { points: 5, classes: 3, limit: 4 });
    const state = JSON.parse(JSON.stringify(acc)) as ExamplesState;
    expect(ExamplesAccumulator.fromJSON(state).toJSON()).toEqual(acc.toJSON());
    const bad = (patch: (s: ExamplesState) => void) => {
      const s = structuredClone(state);
      patch(s);
      return () => ExamplesAccumulator.fromJSON(s);
    };
    expect(bad((s) => Object.assign(s, { kind: 'classification' }))).toThrow(RangeError);
    expect(bad((s) => Object.assign(s, { version: 2 }))).toThrow(RangeError);
    expect(bad((s) => s.entries[0].points.pop())).toThrow(/inconsistent/);
    expect(bad((s) => Object.assign(s.entries[0], { flips: 0 }))).toThrow(RangeError);
    expect(bad((s) => Object.assign(s.entries[0], { clean: 3 }))).toThrow(RangeError);
    expect(bad((s) => s.entries.push(...s.entries))).toThrow(RangeError);
    expect(bad((s) => Object.assign(s.entries[1], { index: s.entries[0].index }))).toThrow(/twice/);
  });

  it('refuses to merge accumulators with other options, and the same sample twice', () => {
    const a = new ExamplesAccumulator({ points: 2, classes: 2 });
    expect(() => a.merge(new ExamplesAccumulator({ points: 3, classes: 2 }))).toThrow(RangeError);
    expect(() => a.merge(new ExamplesAccumulator({ points: 2, classes: 2, limit: 3 }))).toThrow(RangeError);
    a.addPredictions(1, 0, 0, [1, 1]);
    const b = new ExamplesAccumulator({ points: 2, classes: 2 });
    b.addPredictions(1, 0, 0, [1, 1]);
    expect(() => a.merge(b)).toThrow(/twice/);
    expect(() => new ExamplesAccumulator({ points: 0, classes: 2 })).toThrow(RangeError);
  });

  it('finalizes with class names and point params', () => {
    const acc = new ExamplesAccumulator({ points: 2, classes: 3, limit: 2 });
    acc.addPredictions(5, 2, 2, [2, 1]);
    const params = [{ rotate: 0 }, { rotate: 90 }];
    expect(acc.finalize({ params, classNames: ['T-shirt', 'Trouser'] })).toEqual({
      limit: 2,
      pointsPerExample: 8,
      points: 2,
      items: [
        {
          index: 5,
          label: 2,
          labelName: '2',
          prediction: 2,
          predictionName: '2',
          flips: 1,
          changed: [{ point: 1, params: { rotate: 90 }, prediction: 1, predictionName: 'Trouser' }],
        },
      ],
    });
    expect(new ExamplesAccumulator({ points: 1, classes: 1 }).finalize().items).toEqual([]);
  });
});
