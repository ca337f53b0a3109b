import { afterAll, describe, expect, it } from 'vitest';
import {
  compileTransformPlan,
  createTransformRunner,
  type TransformRunner,
} from '../../src/engine/transformGraph.js';
import { fillGaussian } from '../../src/engine/transformNoise.js';
import type { TransformOps } from '../../src/engine/transformOps.js';

const H = 6;
const W = 7;
const C = 2;
const B = 2;
const SIZE = C * H * W;
const geometry = { height: H, width: W, channels: C };

/** A batch with values spread over [0,1], including exact zeros and ones. */
function testBatch(): Float32Array {
  const img = new Float32Array(B * SIZE);
  let s = 12345;
  for (let i = 0; i < img.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const r = (s >>> 8) / 16777216;
    img[i] = i % 5 === 0 ? 0 : i % 11 === 0 ? 1 : r;
  }
  return img;
}

const img = testBatch();
const runners: TransformRunner[] = [];

async function transform(points: TransformOps[], batch = img, batchSize = B, sampleIndices = [0, 1]) {
  const plan = compileTransformPlan(points, geometry);
  const runner = await createTransformRunner(plan, { executionProviders: ['cpu'] });
  runners.push(runner);
  const out = await runner.run(batch, batchSize, sampleIndices);
  const Q = points.length;
  // Output is sample-major ([B, Q, C, H, W]); point(p) gathers [B, C, H, W] of point p.
  const point = (p: number) => {
    const r = new Float32Array(batchSize * SIZE);
    for (let b = 0; b < batchSize; b++)
      r.set(out.subarray((b * Q + p) * SIZE, (b * Q + p + 1) * SIZE), b * SIZE);
    return r;
  };
  return { plan, point };
}

afterAll(async () => {
  await Promise.all(runners.map((r) => r.release()));
});

function expectClose(got: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-6): void {
  expect(got.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - expected[i]));
  expect(worst).toBeLessThanOrEqual(tol);
}

const clip = (v: number) => Math.min(1, Math.max(0, v));
const mapRef = (f: (v: number) => number) => Array.from(img, f);

/** Reference per image plane (B*C planes of H x W). */
function planeRef(f: (plane: Float32Array) => Float64Array): Float64Array {
  const out = new Float64Array(img.length);
  for (let p = 0; p < B * C; p++) out.set(f(img.subarray(p * H * W, (p + 1) * H * W)), p * H * W);
  return out;
}

describe('photometric and morphological transforms', () => {
  it('brightness adds and clips (several deltas in one session)', async () => {
    const deltas = [0.2, -0.3, 0.75];
    const { point, plan } = await transform(deltas.map((delta) => [{ type: 'brightness', delta }]));
    expect(plan.groups).toHaveLength(1);
    for (const [p, d] of deltas.entries())
      expectClose(
        point(p),
        mapRef((v) => clip(v + d)),
      );
  });

  it('contrast scales about 0.5 and clips', async () => {
    const factors = [0.5, 1.8];
    const { point } = await transform(factors.map((factor) => [{ type: 'contrast', factor }]));
    for (const [p, f] of factors.entries())
      expectClose(
        point(p),
        mapRef((v) => clip((v - 0.5) * f + 0.5)),
      );
  });

  it('gamma raises to the power g', async () => {
    const gs = [0.5, 2.2];
    const { point } = await transform(gs.map((g) => [{ type: 'gamma', g }]));
    for (const [p, g] of gs.entries())
      expectClose(
        point(p),
        mapRef((v) => v ** g),
      );
  });

  it('background sets exact zeros to the value and nothing else', async () => {
    const { point } = await transform([
      [{ type: 'background', value: 0.4 }],
      [{ type: 'background', value: 1 }],
    ]);
    expect(Array.from(point(0))).toEqual(mapRef((v) => (v === 0 ? Math.fround(0.4) : v)));
    expect(Array.from(point(1))).toEqual(mapRef((v) => (v === 0 ? 1 : v)));
  });

  it('gaussian_blur: separable normalised Gaussian, radius ceil(3 sigma), reflect padding', async () => {
    const sigmas = [0.6, 0.9];
    const { point } = await transform(sigmas.map((sigma) => [{ type: 'gaussian_blur', sigma }]));
    sigmas.forEach((sigma, p) => {
      const r = Math.ceil(3 * sigma); // 2 and 3: < H and W, a single reflection suffices
      const k: number[] = [];
      for (let t = -r; t <= r; t++) k.push(Math.exp(-0.5 * (t / sigma) ** 2));
      const sum = k.reduce((a, b) => a + b, 0);
      const reflect = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
      const expected = planeRef((plane) => {
        const out = new Float64Array(H * W);
        for (let y = 0; y < H; y++) {
          for (let x = 0; x < W; x++) {
            let v = 0;
            for (let a = -r; a <= r; a++) {
              for (let b = -r; b <= r; b++) {
                v += ((k[a + r] * k[b + r]) / (sum * sum)) * plane[reflect(y + a, H) * W + reflect(x + b, W)];
              }
            }
            out[y * W + x] = v;
          }
        }
        return out;
      });
      expectClose(point(p), expected, 1e-5);
    });
    // A constant image stays constant (kernel normalised, reflect padding).
    const flat = new Float32Array(B * SIZE).fill(0.3);
    const blurred = (await transform([[{ type: 'gaussian_blur', sigma: 2.5 }]], flat)).point(0);
    expectClose(blurred, flat, 1e-6);
  });

  it('dilate / erode: grey-scale k x k max / min, even k window [i - k/2, i + k/2 - 1]', async () => {
    const cases: ['dilate' | 'erode', number][] = [
      ['dilate', 3],
      ['erode', 3],
      ['dilate', 2],
      ['erode', 4],
    ];
    const { point } = await transform(cases.map(([type, k]) => [{ type, k }]));
    cases.forEach(([type, k], p) => {
      const before = Math.floor(k / 2);
      const after = k - 1 - before;
      const expected = planeRef((plane) => {
        const out = new Float64Array(H * W);
        for (let y = 0; y < H; y++) {
          for (let x = 0; x < W; x++) {
            let v = type === 'dilate' ? -Infinity : Infinity;
            for (let yy = y - before; yy <= y + after; yy++) {
              for (let xx = x - before; xx <= x + after; xx++) {
                if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                v = type === 'dilate' ? Math.max(v, plane[yy * W + xx]) : Math.min(v, plane[yy * W + xx]);
              }
            }
            out[y * W + x] = v;
          }
        }
        return out;
      });
      expect(Array.from(point(p))).toEqual(Array.from(expected));
    });
  });

  it('gaussian_noise: x + sigma z, clipped, z from (seed, sample index, element) only', async () => {
    const points: TransformOps[] = [
      [{ type: 'gaussian_noise', sigma: 0.1, seed: 7 }],
      [{ type: 'gaussian_noise', sigma: 0.3, seed: 7 }],
      [{ type: 'gaussian_noise', sigma: 0.1, seed: 8 }],
    ];
    const { point } = await transform(points, img, B, [40, 41]);
    [
      [0.1, 7],
      [0.3, 7],
      [0.1, 8],
    ].forEach(([sigma, seed], p) => {
      const z = new Float32Array(B * SIZE);
      fillGaussian(z, 0, SIZE, seed, 40, sigma);
      fillGaussian(z, SIZE, SIZE, seed, 41, sigma);
      expectClose(
        point(p),
        Array.from(img, (v, i) => clip(v + z[i])),
        1e-6,
      );
    });
    expect(Array.from(point(0))).not.toEqual(Array.from(point(2)));
    // Independent of batching: sample 41 alone gives the same values as inside the batch.
    const alone = (await transform(points, img.subarray(SIZE), 1, [41])).point(0);
    expect(Array.from(alone)).toEqual(Array.from(point(0).subarray(SIZE)));
    // Deterministic across runs.
    const again = (await transform(points, img, B, [40, 41])).point(0);
    expect(Array.from(again)).toEqual(Array.from(point(0)));
  });

  it('the noise generator is standard normal and differs across samples', () => {
    const n = 40_000;
    const z = new Float32Array(n);
    fillGaussian(z, 0, n, 123, 5);
    let mean = 0;
    for (const v of z) mean += v / n;
    let variance = 0;
    for (const v of z) variance += (v - mean) ** 2 / (n - 1);
    expect(Math.abs(mean)).toBeLessThan(0.02);
    expect(Math.abs(variance - 1)).toBeLessThan(0.03);
    const within1 = z.filter((v) => Math.abs(v) < 1).length / n;
    expect(within1).toBeCloseTo(0.6827, 1);
    const other = new Float32Array(16);
    fillGaussian(other, 0, 16, 123, 6);
    expect(Array.from(other)).not.toEqual(Array.from(z.subarray(0, 16)));
  });

  it('applies the ops of a composite point in order, mixing geometric and photometric stages', async () => {
    const { point, plan } = await transform([
      [
        { type: 'brightness', delta: 0.1 },
        { type: 'rotate', deg: 180 },
        { type: 'gamma', g: 2 },
        { type: 'dilate', k: 3 },
        { type: 'contrast', factor: 1.5 },
      ],
      [
        { type: 'gamma', g: 2 },
        { type: 'brightness', delta: 0.1 },
      ],
      [
        { type: 'brightness', delta: 0 },
        { type: 'contrast', factor: 1 },
        { type: 'rotate', deg: 0 },
      ],
    ]);
    expect(plan.uniques[0].stages.map((s) => s.kind)).toEqual([
      'brightness',
      'warp',
      'gamma',
      'dilate',
      'contrast',
    ]);
    const expected = planeRef((plane) => {
      const a = Float64Array.from(plane, (v) => clip(v + 0.1) ** 2);
      const rotated = new Float64Array(H * W);
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) rotated[y * W + x] = a[(H - 1 - y) * W + (W - 1 - x)];
      const out = new Float64Array(H * W);
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          let m = -Infinity;
          for (let yy = Math.max(0, y - 1); yy <= Math.min(H - 1, y + 1); yy++) {
            for (let xx = Math.max(0, x - 1); xx <= Math.min(W - 1, x + 1); xx++)
              m = Math.max(m, rotated[yy * W + xx]);
          }
          out[y * W + x] = clip((m - 0.5) * 1.5 + 0.5);
        }
      }
      return out;
    });
    expectClose(point(0), expected, 1e-6);
    expectClose(
      point(1),
      mapRef((v) => clip(v ** 2 + 0.1)),
      1e-6,
    );
    expect(Array.from(point(2))).toEqual(Array.from(img)); // no-op parameters: the input exactly
  });
});
