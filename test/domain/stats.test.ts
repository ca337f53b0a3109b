import { describe, expect, it } from 'vitest';
import {
  argmax,
  chanMerge,
  decodeCounts,
  decodeFloat64,
  encodeFloat64,
  gaussianSamples,
  mulberry32,
} from '../../src/domain/stats.js';

describe('stats helpers', () => {
  it('Float64Array base64 round trip keeps every bit (NaN, +-Infinity, -0, subnormals)', () => {
    const values = Float64Array.from([
      0,
      -0,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      5e-324,
      Number.MAX_VALUE,
      0.1 + 0.2,
      -1.2345678901234567e-200,
    ]);
    const text = encodeFloat64(values);
    const back = decodeFloat64(JSON.parse(JSON.stringify(text)) as string, values.length);
    expect(new Uint8Array(back.buffer)).toEqual(new Uint8Array(values.buffer));
    expect(Object.is(back[1], -0)).toBe(true);
    // views at an offset are encoded from their own bytes only
    expect(decodeFloat64(encodeFloat64(values.subarray(2, 4)))).toHaveLength(2);
    expect(() => decodeFloat64(text, 3)).toThrow(RangeError);
    expect(() => decodeFloat64('AAAA')).toThrow(RangeError);
    expect(() => decodeCounts([1, -1], 2, 'x')).toThrow(RangeError);
    expect(() => decodeCounts([1, 0.5], 2, 'x')).toThrow(RangeError);
    expect(Array.from(decodeCounts([3, 0], 2, 'x'))).toEqual([3, 0]);
  });

  it("Chan's merge equals the statistics of the concatenated data", () => {
    const rnd = mulberry32(3);
    const a = Array.from({ length: 37 }, () => 1000 + rnd());
    const b = Array.from({ length: 11 }, () => 1000 + 2 * rnd());
    const stats = (xs: number[]) => {
      const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
      return { mean, m2: xs.reduce((s, x) => s + (x - mean) ** 2, 0) };
    };
    const sa = stats(a);
    const sb = stats(b);
    const all = stats([...a, ...b]);
    const meanA = Float64Array.of(sa.mean);
    const m2A = Float64Array.of(sa.m2);
    chanMerge(a.length, meanA, m2A, b.length, Float64Array.of(sb.mean), Float64Array.of(sb.m2));
    expect(Math.abs(meanA[0] - all.mean) / all.mean).toBeLessThan(1e-15);
    expect(Math.abs(m2A[0] - all.m2) / all.m2).toBeLessThan(1e-12);
    // merging into an empty accumulator copies
    const e = new Float64Array(1);
    const e2 = new Float64Array(1);
    chanMerge(0, e, e2, b.length, Float64Array.of(sb.mean), Float64Array.of(sb.m2));
    expect([e[0], e2[0]]).toEqual([sb.mean, sb.m2]);
  });

  it('argmax: first maximum like numpy, -1 with NaN, +Infinity wins', () => {
    expect(argmax([1, 3, 3, 2], 0, 4)).toBe(1);
    expect(argmax([0, 0, 9, 1, 9], 1, 4)).toBe(1);
    expect(argmax([1, Number.NaN, 3], 0, 3)).toBe(-1);
    expect(argmax([1, Number.POSITIVE_INFINITY, 3], 0, 3)).toBe(1);
    expect(argmax([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY], 0, 2)).toBe(0);
  });

  it('seeded random numbers are deterministic', () => {
    const r = mulberry32(1);
    expect([r(), r(), r()]).toEqual([0.6270739405881613, 0.002735721180215478, 0.5274470399599522]);
    const big = mulberry32(2 ** 40 + 5);
    const big2 = mulberry32(2 ** 40 + 5);
    expect(big()).toBe(big2());
    expect(mulberry32(2 ** 40 + 5)()).not.toBe(mulberry32(5)());
    const g = gaussianSamples(7, 20001);
    expect(g).toEqual(gaussianSamples(7, 20001));
    const mean = g.reduce((s, x) => s + x, 0) / g.length;
    const variance = g.reduce((s, x) => s + (x - mean) ** 2, 0) / g.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
  });
});
