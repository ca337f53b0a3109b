import { afterAll, describe, expect, it } from 'vitest';
import {
  compileTransformPlan,
  createTransformRunner,
  type TransformRunner,
} from '../../src/engine/transformGraph.js';
import type { TransformOps } from '../../src/engine/transformOps.js';

// ---- JS reference (float64): inverse-mapped bilinear sampling, zero padding ----------------------

type Pt = [number, number];
/** Inverse map of one op: output pixel-index point -> source point. */
type InverseMap = (p: Pt) => Pt;

function refInverseRotate(deg: number, W: number, H: number): InverseMap {
  // Work in a y-up frame about the centre; positive = counter-clockwise on screen.
  const t = (deg * Math.PI) / 180;
  const cx = (W - 1) / 2;
  const cy = (H - 1) / 2;
  return ([x, y]) => {
    const u = x - cx;
    const v = -(y - cy);
    // rotate by -t
    const su = u * Math.cos(t) + v * Math.sin(t);
    const sv = -u * Math.sin(t) + v * Math.cos(t);
    return [cx + su, cy - sv];
  };
}

function refInverseScale(f: number, W: number, H: number): InverseMap {
  const cx = (W - 1) / 2;
  const cy = (H - 1) / 2;
  return ([x, y]) => [cx + (x - cx) / f, cy + (y - cy) / f];
}

const refInverseTranslate =
  (dx: number, dy: number): InverseMap =>
  ([x, y]) => [x - dx, y - dy];

function refInverseShear(deg: number, H: number): InverseMap {
  // torchvision affine(shear=[deg, 0]): forward x' = x - tan * (y - cy)
  const cy = (H - 1) / 2;
  const tan = Math.tan((deg * Math.PI) / 180);
  return ([x, y]) => [x + tan * (y - cy), y];
}

/** Applies inverse maps of ops applied in order op1, op2, ...: source = inv1(inv2(...(p))). */
function refWarp(
  img: Float32Array,
  C: number,
  H: number,
  W: number,
  inverses: InverseMap[],
  fill = 0,
): Float64Array {
  const out = new Float64Array(C * H * W);
  const at = (c: number, x: number, y: number) =>
    x >= 0 && x < W && y >= 0 && y < H ? img[c * H * W + y * W + x] : null;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let p: Pt = [x, y];
      for (let i = inverses.length - 1; i >= 0; i--) p = inverses[i](p);
      const [sx, sy] = p;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const taps: [number, number, number][] = [
        [x0, y0, (1 - fx) * (1 - fy)],
        [x0 + 1, y0, fx * (1 - fy)],
        [x0, y0 + 1, (1 - fx) * fy],
        [x0 + 1, y0 + 1, fx * fy],
      ];
      for (let c = 0; c < C; c++) {
        let v = 0;
        for (const [tx, ty, w] of taps) {
          const s = at(c, tx, ty);
          v += w * (s === null ? fill : s);
        }
        out[c * H * W + y * W + x] = v;
      }
    }
  }
  return out;
}

function randomImage(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) / 16777216;
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const runners: TransformRunner[] = [];
async function transform(
  points: TransformOps[],
  img: Float32Array,
  geometry: { height: number; width: number; channels: number },
  batchSize = 1,
) {
  const plan = compileTransformPlan(points, geometry);
  const runner = await createTransformRunner(plan, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  runners.push(runner);
  const out = await runner.run(
    img,
    batchSize,
    Array.from({ length: batchSize }, (_, i) => i),
  );
  const size = batchSize * geometry.channels * geometry.height * geometry.width;
  return { plan, out, point: (p: number) => out.subarray(p * size, (p + 1) * size) };
}

afterAll(async () => {
  await Promise.all(runners.map((r) => r.release()));
});

describe('geometric transforms', () => {
  it('rotate by multiples of 90 degrees is an exact pixel permutation (np.rot90) on 28x28', async () => {
    const N = 28;
    const img = randomImage(N * N, 1);
    const { out, point, plan } = await transform(
      [
        [{ type: 'rotate', deg: 90 }],
        [{ type: 'rotate', deg: 180 }],
        [{ type: 'rotate', deg: -90 }],
        [{ type: 'rotate', deg: 270 }],
        [{ type: 'rotate', deg: -180 }],
      ],
      img,
      { height: N, width: N, channels: 1 },
    );
    expect(out.length).toBe(5 * N * N);
    expect(plan.uniques.length).toBe(3); // -90 == 270, 180 == -180
    for (const u of plan.uniques) expect(u.stages).toMatchObject([{ kind: 'warp', integer: true }]);
    const r90 = point(0);
    const r180 = point(1);
    const r270 = point(2);
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) {
        // np.rot90(img, k): k=1 out[i][j] = img[j][N-1-i]; k=2 img[N-1-i][N-1-j]; k=3 img[N-1-j][i]
        expect(r90[i * N + j]).toBe(img[j * N + (N - 1 - i)]);
        expect(r180[i * N + j]).toBe(img[(N - 1 - i) * N + (N - 1 - j)]);
        expect(r270[i * N + j]).toBe(img[(N - 1 - j) * N + i]);
      }
    }
    expect(Array.from(point(3))).toEqual(Array.from(r270));
    expect(Array.from(point(4))).toEqual(Array.from(r180));
  });

  it('rotate 90 of a non-square 20x30 image is the centred rot90 where in bounds, fill elsewhere', async () => {
    const H = 20;
    const W = 30;
    const img = randomImage(H * W, 2);
    const { out, point } = await transform(
      [[{ type: 'rotate', deg: 90 }], [{ type: 'rotate', deg: 90, fill: 0.25 }]],
      img,
      { height: H, width: W, channels: 1 },
    );
    expect(out.length).toBe(2 * H * W);
    // c = (14.5, 9.5): output (x=j, y=i) samples source (24 - i, j - 5)
    for (let i = 0; i < H; i++) {
      for (let j = 0; j < W; j++) {
        const sx = 24 - i;
        const sy = j - 5;
        const inside = sx >= 0 && sx < W && sy >= 0 && sy < H;
        expect(point(0)[i * W + j]).toBe(inside ? img[sy * W + sx] : 0);
        expect(point(1)[i * W + j]).toBe(inside ? img[sy * W + sx] : Math.fround(0.25));
      }
    }
  });

  it('hflip, vflip, integer translations and composed rotations are exact', async () => {
    const H = 9;
    const W = 12;
    const img = randomImage(H * W, 3);
    const { point, plan } = await transform(
      [
        [{ type: 'hflip' }],
        [{ type: 'vflip' }],
        [{ type: 'translate', dx: 2, dy: -1 }],
        [
          { type: 'rotate', deg: 37 },
          { type: 'rotate', deg: -37 },
        ],
        [{ type: 'hflip' }, { type: 'vflip' }],
        [{ type: 'rotate', deg: 180 }],
        [{ type: 'affine', matrix: [-1, 0, 0, 0, 1, 0] }],
        [{ type: 'translate', dx: 2 / W, dy: -1 / H, unit: 'fraction' }],
        [{ type: 'affine', matrix: [1, 0, 2, 0, 1, -1], origin: 'pixel' }],
      ],
      img,
      { height: H, width: W, channels: 1 },
    );
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        expect(point(0)[y * W + x]).toBe(img[y * W + (W - 1 - x)]);
        expect(point(1)[y * W + x]).toBe(img[(H - 1 - y) * W + x]);
        const sx = x - 2;
        const sy = y + 1;
        expect(point(2)[y * W + x]).toBe(sx >= 0 && sy < H ? img[sy * W + sx] : 0);
      }
    }
    expect(plan.uniques[plan.pointToUnique[3]].stages).toEqual([]); // composed to the identity
    expect(Array.from(point(3))).toEqual(Array.from(img));
    expect(Array.from(point(4))).toEqual(Array.from(point(5)));
    expect(Array.from(point(6))).toEqual(Array.from(point(0)));
    expect(Array.from(point(7))).toEqual(Array.from(point(2)));
    expect(Array.from(point(8))).toEqual(Array.from(point(2)));
  });

  it('rotate 15 (bilinear) agrees with a float64 reference on 28x28', async () => {
    const N = 28;
    const img = randomImage(N * N, 4);
    const { point, plan } = await transform(
      [[{ type: 'rotate', deg: 15 }], [{ type: 'rotate', deg: -150 }]],
      img,
      {
        height: N,
        width: N,
        channels: 1,
      },
    );
    expect(plan.uniques[0].stages).toMatchObject([{ kind: 'warp', integer: false }]);
    expect(maxAbsDiff(point(0), refWarp(img, 1, N, N, [refInverseRotate(15, N, N)]))).toBeLessThan(1e-5);
    expect(maxAbsDiff(point(1), refWarp(img, 1, N, N, [refInverseRotate(-150, N, N)]))).toBeLessThan(1e-5);
  });

  it('rotate 30 of a non-square 20x30 image is not skewed (reference) and keeps the centre', async () => {
    const H = 20;
    const W = 30;
    const img = randomImage(H * W, 5);
    const { point } = await transform([[{ type: 'rotate', deg: 30 }]], img, {
      height: H,
      width: W,
      channels: 1,
    });
    expect(maxAbsDiff(point(0), refWarp(img, 1, H, W, [refInverseRotate(30, W, H)]))).toBeLessThan(1e-5);
    // Independent check of the convention: a Gaussian blob at c + (5, -2) (y down) moves
    // counter-clockwise on screen by 30 degrees about c, at the same distance (no skew).
    const blob = new Float32Array(H * W);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        blob[y * W + x] = Math.exp(-((x - 19.5) ** 2 + (y - 7.5) ** 2) / (2 * 1.2 ** 2));
      }
    }
    const r = (
      await transform([[{ type: 'rotate', deg: 30 }]], blob, { height: H, width: W, channels: 1 })
    ).point(0);
    let mx = 0;
    let my = 0;
    let mass = 0;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        mx += r[y * W + x] * x;
        my += r[y * W + x] * y;
        mass += r[y * W + x];
      }
    }
    const c30 = Math.cos(Math.PI / 6);
    const s30 = Math.sin(Math.PI / 6);
    // y-up offset (5, 2) rotated by +30 degrees, then back to y down
    expect(mx / mass).toBeCloseTo(14.5 + (5 * c30 - 2 * s30), 1);
    expect(my / mass).toBeCloseTo(9.5 - (5 * s30 + 2 * c30), 1);
  });

  it('translate by (1.5, 0) px interpolates between neighbours', async () => {
    const H = 5;
    const W = 8;
    const img = randomImage(H * W, 6);
    const { point } = await transform([[{ type: 'translate', dx: 1.5, dy: 0 }]], img, {
      height: H,
      width: W,
      channels: 1,
    });
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const a = x - 2 >= 0 ? img[y * W + x - 2] : 0;
        const b = x - 1 >= 0 ? img[y * W + x - 1] : 0;
        expect(point(0)[y * W + x]).toBeCloseTo(0.5 * a + 0.5 * b, 6);
      }
    }
  });

  it('scale, shear, fill and a composition agree with the reference (3 channels, batch of 2)', async () => {
    const H = 16;
    const W = 13;
    const C = 3;
    const B = 2;
    const img = randomImage(B * C * H * W, 7);
    const points: TransformOps[] = [
      [{ type: 'scale', factor: 1.3 }],
      [{ type: 'scale', factor: 0.7, fill: 0.5 }],
      [{ type: 'shear', deg: 20 }],
      [
        { type: 'rotate', deg: 30 },
        { type: 'scale', factor: 1.2 },
        { type: 'translate', dx: 1.25, dy: -0.5 },
      ],
    ];
    const refs: [InverseMap[], number][] = [
      [[refInverseScale(1.3, W, H)], 0],
      [[refInverseScale(0.7, W, H)], 0.5],
      [[refInverseShear(20, H)], 0],
      [[refInverseRotate(30, W, H), refInverseScale(1.2, W, H), refInverseTranslate(1.25, -0.5)], 0],
    ];
    const { out } = await transform(points, img, { height: H, width: W, channels: C }, B);
    const size = C * H * W;
    refs.forEach(([maps, fill], p) => {
      for (let b = 0; b < B; b++) {
        const expected = refWarp(img.subarray(b * size, (b + 1) * size), C, H, W, maps, fill);
        const got = out.subarray((b * refs.length + p) * size, (b * refs.length + p + 1) * size);
        expect(maxAbsDiff(got, expected)).toBeLessThan(1e-5);
      }
    });
  });

  it('consecutive geometric ops with different fills resample twice, each with its own fill', async () => {
    const H = 7;
    const W = 9;
    const img = randomImage(H * W, 10);
    const { point, plan } = await transform(
      [
        [
          { type: 'rotate', deg: 20, fill: 0.2 },
          { type: 'translate', dx: 1.5, dy: 0.5, fill: 0.7 },
        ],
      ],
      img,
      { height: H, width: W, channels: 1 },
    );
    expect(plan.uniques[0].stages.map((s) => s.kind)).toEqual(['warp', 'warp']);
    const first = Float32Array.from(refWarp(img, 1, H, W, [refInverseRotate(20, W, H)], 0.2));
    const expected = refWarp(first, 1, H, W, [refInverseTranslate(1.5, 0.5)], 0.7);
    expect(maxAbsDiff(point(0), expected)).toBeLessThan(1e-5);
  });

  it('returns points in the requested order, sharing work between identical points', async () => {
    const N = 10;
    const img = randomImage(2 * N * N, 8);
    const plan = compileTransformPlan(
      [
        [{ type: 'rotate', deg: 90 }],
        [],
        [{ type: 'rotate', deg: 15 }],
        [{ type: 'rotate', deg: 90 }],
        [{ type: 'identity' }],
      ],
      { height: N, width: N, channels: 1 },
    );
    expect(plan.pointToUnique).toEqual([0, 1, 2, 0, 1]);
    // The untransformed point joins the warp group as the identity warp: one session.
    expect(plan.groups.map((g) => g.signature)).toEqual(['warp']);
    expect(plan.uniques[1].stages).toEqual([]);
    const runner = await createTransformRunner(plan);
    runners.push(runner);
    const all = await runner.run(img, 2, [0, 1]);
    expect(all.length).toBe(2 * 5 * N * N);
    // Sample-major: sample b under point q at (b * 5 + q) * N * N.
    const image = (out: Float32Array, Q: number, b: number, q: number) =>
      Array.from(out.subarray((b * Q + q) * N * N, (b * Q + q + 1) * N * N));
    const chunk = (p: number) => [...image(all, 5, 0, p), ...image(all, 5, 1, p)];
    expect(chunk(1)).toEqual(Array.from(img));
    expect(chunk(4)).toEqual(Array.from(img));
    expect(chunk(3)).toEqual(chunk(0));
    expect(chunk(0)).not.toEqual(chunk(2));
    const some = await runner.run(img, 2, [0, 1], [2, 1]);
    expect([...image(some, 2, 0, 0), ...image(some, 2, 1, 0)]).toEqual(chunk(2));
    expect([...image(some, 2, 0, 1), ...image(some, 2, 1, 1)]).toEqual(chunk(1));
    const single = await runner.run(img.subarray(N * N), 1, [1], [0]);
    expect(Array.from(single)).toEqual(chunk(0).slice(N * N));
  });

  it('folds mean/std normalisation and NHWC layout into the graph', async () => {
    const H = 4;
    const W = 5;
    const C = 2;
    const img = randomImage(C * H * W, 9);
    const plan = compileTransformPlan([[{ type: 'hflip' }], []], {
      height: H,
      width: W,
      channels: C,
      output: { mean: [0.25, 0.5], std: [0.5, 2], layout: 'NHWC' },
    });
    const runner = await createTransformRunner(plan);
    runners.push(runner);
    const out = await runner.run(img, 1, [0]);
    const mean = [0.25, 0.5];
    const std = [0.5, 2];
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        for (let c = 0; c < C; c++) {
          const flipped = img[c * H * W + y * W + (W - 1 - x)];
          const plain = img[c * H * W + y * W + x];
          expect(out[(y * W + x) * C + c]).toBeCloseTo((flipped - mean[c]) / std[c], 6);
          expect(out[H * W * C + (y * W + x) * C + c]).toBeCloseTo((plain - mean[c]) / std[c], 6);
        }
      }
    }
  });

  it('rejects invalid parameters at compile time', () => {
    const g = { height: 4, width: 4, channels: 1 };
    expect(() => compileTransformPlan([[{ type: 'scale', factor: 0 }]], g)).toThrow(/scale/);
    expect(() => compileTransformPlan([[{ type: 'affine', matrix: [1, 2, 0, 2, 4, 0] }]], g)).toThrow(
      /invertible/,
    );
    expect(() => compileTransformPlan([[{ type: 'rotate', deg: Number.NaN }]], g)).toThrow(/finite/);
    expect(() => compileTransformPlan([[{ type: 'dilate', k: 2.5 }]], g)).toThrow(/integer/);
    expect(() => compileTransformPlan([[]], { height: 0, width: 4, channels: 1 })).toThrow(/height/);
  });
});
