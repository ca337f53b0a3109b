// The metric accumulators against the PyTorch / tmeasures reference values for the fixture models at
// multiples of 90 degrees, where a rotation is an exact pixel permutation (np.rot90), so the only
// differences left are float32 inference noise. The engine has its own end-to-end reference tests;
// this one pins the metric conventions (SPEC 4) independently of the transform graph.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { ClassificationAccumulator } from '../../src/domain/classification.js';
import { NormalizedVarianceAccumulator } from '../../src/domain/normalizedVariance.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures');
const W = 28;
const N = 1000;
const ANGLES = [0, 90, 180, 270];
const LAYERS: Array<[string, number[]]> = [
  ['/Relu_output_0', [16, 28, 28]],
  ['/Relu_1_output_0', [32, 14, 14]],
  ['/Relu_2_output_0', [128]],
  ['logits', [10]],
];

interface Reference {
  accuracy: number[];
  ekld: number;
  ekld_per_class: Record<string, number>;
  v: Record<string, { nv: number; tv: number; sv: number; finite: number; total: number }>;
}

/** np.rot90(img, k) for a W x W uint8 image: k counter-clockwise quarter turns. */
function rot90(src: Uint8Array, k: number): Uint8Array {
  let a = src;
  for (let t = 0; t < k; t++) {
    const o = new Uint8Array(W * W);
    for (let i = 0; i < W; i++) for (let j = 0; j < W; j++) o[i * W + j] = a[j * W + (W - 1 - i)];
    a = o;
  }
  return a;
}

function relErr(got: number | null, want: number): number {
  if (got === null) return Number.POSITIVE_INFINITY;
  return Math.abs(got - want) / Math.max(Math.abs(want), 1e-12);
}

describe('metrics against the reference values (rot90, exact permutations)', () => {
  const images = zlib
    .gunzipSync(fs.readFileSync(path.join(FIXTURES, 'fmnist-test-1k-images-idx3-ubyte.gz')))
    .subarray(16);
  const labels = zlib
    .gunzipSync(fs.readFileSync(path.join(FIXTURES, 'fmnist-test-1k-labels-idx1-ubyte.gz')))
    .subarray(8);

  for (const model of ['plain', 'rotaug']) {
    it(`cnn-${model}: accuracy, eKLD (overall, per class) and NV/TV/SV per layer and aggregation`, async () => {
      const ref = JSON.parse(
        fs.readFileSync(path.join(FIXTURES, 'reference', `cnn-${model}-rot90.json`), 'utf8'),
      ) as Reference;
      const proto = onnxProto.onnx.ModelProto.decode(
        fs.readFileSync(path.join(FIXTURES, `fmnist-cnn-${model}.onnx`)),
      );
      for (const [name] of LAYERS) {
        if (name !== 'logits') proto.graph?.output?.push(onnxProto.onnx.ValueInfoProto.create({ name }));
      }
      const session = await ort.InferenceSession.create(
        Buffer.from(onnxProto.onnx.ModelProto.encode(proto).finish()),
        { intraOpNumThreads: 1 },
      );
      const m = ANGLES.length;
      const cls = new ClassificationAccumulator({ points: m, classes: 10 });
      const nvs = LAYERS.map(
        ([layer, shape]) => new NormalizedVarianceAccumulator({ layer, shape, points: m }),
      );
      const B = 100;
      for (let s = 0; s < N; s += B) {
        // B clean images, then B x m rotated ones (sample-major)
        const input = new Float32Array(B * (1 + m) * W * W);
        const put = (slot: number, px: Uint8Array) => {
          for (let p = 0; p < W * W; p++) input[slot * W * W + p] = (px[p] / 255 - 0.286) / 0.353;
        };
        for (let b = 0; b < B; b++) {
          const img = images.subarray((s + b) * W * W, (s + b + 1) * W * W);
          put(b, img);
          for (let j = 0; j < m; j++) put(B + b * m + j, rot90(img, ANGLES[j] / 90));
        }
        const out = await session.run({ input: new ort.Tensor('float32', input, [B * (1 + m), 1, W, W]) });
        const batchLabels = Array.from(labels.subarray(s, s + B));
        const logits = out.logits.data as Float32Array;
        cls.addBatch(batchLabels, logits.subarray(0, B * 10), logits.subarray(B * 10));
        LAYERS.forEach(([name, shape], i) => {
          const D = shape.reduce((a, b) => a * b, 1);
          nvs[i].addBatch(batchLabels, (out[name].data as Float32Array).subarray(B * D));
        });
      }
      await session.release();

      const r = cls.finalize({ params: ANGLES.map((rotate) => ({ rotate })) });
      expect(r.samples).toBe(N);
      r.points.forEach((p, j) => {
        expect(relErr(p.accuracy, ref.accuracy[j])).toBeLessThan(1e-9);
      });
      expect(relErr(r.ekld.overall, ref.ekld)).toBeLessThan(1e-5);
      for (const c of r.ekld.perClass)
        expect(relErr(c.value, ref.ekld_per_class[String(c.class)])).toBeLessThan(1e-5);
      for (const [key, want] of Object.entries(ref.v)) {
        const [layer, aggregation] = key.split('|') as [string, 'none' | 'mean'];
        const acc = nvs.find((a) => a.layer === layer);
        const got = acc?.finalize(aggregation, 'std');
        expect(got, key).toBeDefined();
        if (!got) continue;
        expect({ key, finite: got.finite, total: got.total }).toEqual({
          key,
          finite: want.finite,
          total: want.total,
        });
        for (const f of ['nv', 'tv', 'sv'] as const) {
          expect(relErr(got[f], want[f]), `${key} ${f}`).toBeLessThan(1e-5);
        }
      }
    });
  }
});
