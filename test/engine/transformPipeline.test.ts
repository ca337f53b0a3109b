import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import {
  compileTransformPlan,
  createTransformRunner,
  type TransformRunner,
} from '../../src/engine/transformGraph.js';
import type { TransformOps } from '../../src/engine/transformOps.js';

const runners: TransformRunner[] = [];
afterAll(async () => {
  await Promise.all(runners.map((r) => r.release()));
});

function randomImage(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) / 16777216;
  }
  return out;
}

describe('transform groups mixing geometric and per-point photometric stages', () => {
  it('rotate then brightness / gamma, 3 channels, batch of 2, several points in one session', async () => {
    const H = 6;
    const W = 5;
    const C = 3;
    const B = 2;
    const size = C * H * W;
    const img = randomImage(B * size, 11);
    const points: TransformOps[] = [
      [
        { type: 'rotate', deg: 180 },
        { type: 'brightness', delta: 0.2 },
        { type: 'gamma', g: 2 },
      ],
      [{ type: 'hflip' }, { type: 'brightness', delta: -0.1 }, { type: 'gamma', g: 0.5 }],
      [{ type: 'vflip' }, { type: 'brightness', delta: 0.3 }, { type: 'gamma', g: 1.5 }],
    ];
    const plan = compileTransformPlan(points, { height: H, width: W, channels: C });
    expect(plan.groups).toHaveLength(1);
    const runner = await createTransformRunner(plan);
    runners.push(runner);
    const out = await runner.run(img, B, [0, 1]);
    const maps: ((x: number, y: number) => [number, number])[] = [
      (x, y) => [W - 1 - x, H - 1 - y],
      (x, y) => [W - 1 - x, y],
      (x, y) => [x, H - 1 - y],
    ];
    const params = [
      [0.2, 2],
      [-0.1, 0.5],
      [0.3, 1.5],
    ];
    for (let b = 0; b < B; b++) {
      for (let q = 0; q < 3; q++) {
        for (let c = 0; c < C; c++) {
          for (let y = 0; y < H; y++) {
            for (let x = 0; x < W; x++) {
              const [sx, sy] = maps[q](x, y);
              const v = img[b * size + c * H * W + sy * W + sx];
              const [delta, g] = params[q];
              const expected = Math.min(1, Math.max(0, v + delta)) ** g;
              expect(out[(b * 3 + q) * size + c * H * W + y * W + x]).toBeCloseTo(expected, 6);
            }
          }
        }
      }
    }
  });

  it('the untransformed point joins a filled-warp group and stays exact', async () => {
    const N = 8;
    const img = randomImage(N * N, 12);
    const plan = compileTransformPlan(
      [[{ type: 'rotate', deg: 90, fill: 0.5 }], [], [{ type: 'rotate', deg: 45, fill: 0.5 }]],
      { height: N, width: N, channels: 1 },
    );
    expect(plan.groups.map((g) => g.signature)).toEqual(['warp:fill']);
    const runner = await createTransformRunner(plan);
    runners.push(runner);
    const out = await runner.run(img, 1, [0]);
    expect(Array.from(out.subarray(N * N, 2 * N * N))).toEqual(Array.from(img));
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) expect(out[i * N + j]).toBe(img[j * N + (N - 1 - i)]);
    }
    // rotate 45 with fill 0.5: the corners lie outside the rotated square and take the fill.
    expect(out[2 * N * N]).toBeCloseTo(0.5, 6);
  });

  it('feeds a model directly: accuracy of the fixture CNN under rotation equals the PyTorch reference', async () => {
    const fixtures = path.resolve(import.meta.dirname, '../fixtures');
    const raw = gunzipSync(readFileSync(path.join(fixtures, 'fmnist-test-1k-images-idx3-ubyte.gz'))).subarray(
      16,
    );
    const labels = gunzipSync(
      readFileSync(path.join(fixtures, 'fmnist-test-1k-labels-idx1-ubyte.gz')),
    ).subarray(8);
    const n = 1000;
    const images = Float32Array.from(raw.subarray(0, n * 784), (v) => v / 255);
    const model = await ort.InferenceSession.create(path.join(fixtures, 'fmnist-cnn-plain.onnx'), {
      intraOpNumThreads: 1,
    });
    try {
      for (const file of ['cnn-plain-rot90.json', 'cnn-plain-rot15.json']) {
        const ref = JSON.parse(readFileSync(path.join(fixtures, 'reference', file), 'utf8')) as {
          angles: number[];
          accuracy: number[];
        };
        const P = ref.angles.length;
        const plan = compileTransformPlan(
          ref.angles.map((deg) => [{ type: 'rotate', deg }]),
          { height: 28, width: 28, channels: 1, output: { mean: [0.286], std: [0.353] } },
        );
        const runner = await createTransformRunner(plan);
        runners.push(runner);
        const correct = new Array<number>(P).fill(0);
        const bs = 500;
        for (let s0 = 0; s0 < n; s0 += bs) {
          const indices = Array.from({ length: bs }, (_, i) => s0 + i);
          const x = await runner.run(images.subarray(s0 * 784, (s0 + bs) * 784), bs, indices);
          const { logits } = await model.run({ input: new ort.Tensor('float32', x, [bs * P, 1, 28, 28]) });
          const data = logits.data as Float32Array;
          for (let b = 0; b < bs; b++) {
            for (let q = 0; q < P; q++) {
              const row = data.subarray((b * P + q) * 10, (b * P + q + 1) * 10);
              let best = 0;
              for (let k = 1; k < 10; k++) if (row[k] > row[best]) best = k;
              if (best === labels[s0 + b]) correct[q]++;
            }
          }
        }
        expect(correct.map((c) => c / n)).toEqual(ref.accuracy);
      }
    } finally {
      await model.release();
    }
  });
});
