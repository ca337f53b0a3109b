// Hand-built ONNX models with answers known in advance, run through the real API (upload, run,
// queue, engine threads, merge, /results) on a small synthetic dataset:
// (a) a model invariant by construction under 90-degree rotations and flips (exact pixel
//     permutations): eKLD exactly 0, consistency 1, NV exactly 0 at its output (TV 0, SV > 0);
// (b) an identity-like model (logits = a fixed linear map of a few pixels) whose outputs under each
//     transform point are computed here, in float64, from the dataset and the transform
//     definitions (SPEC 3): TV, SV, NV per layer and aggregation, accuracy, consistency, eKLD;
// (c) a dead unit (a layer that is constant 0): NV 1 (0/0), counted as finite.
// (The SPEC 4.3 test vectors are checked on the domain code in test/domain.)
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OnnxModelBuilder } from '../src/engine/onnxBuilder.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';
import { submitRun, uploadIdxDataset, uploadModel, waitForRun } from './helpers/runs.js';

const S = 6; // square images, so 90-degree rotations are permutations
const N = 16;
const K = 3;
const CLASS_NAMES = ['zero', 'one', 'two'];

interface NvResult {
  layer: string;
  aggregation: 'none' | 'mean';
  dispersion: string;
  nv: number | null;
  tv: number | null;
  sv: number | null;
  finite: number;
  infinite: number;
  total: number;
  samples: number;
}
interface Results {
  samples: number;
  clean: { accuracy: number; perClassAccuracy: Array<number | null> };
  points: Array<{ params: Record<string, unknown>; accuracy: number; consistency: number; ekld: number }>;
  accuracy: { mean: number; min: number; max: number; worstCase: number };
  consistency: { mean: number; min: number };
  tta: { accuracy: number };
  ekld: {
    overall: number;
    infinitePairs: number;
    perClass: Array<{ class: number; count: number; value: number }>;
  };
  nv: NvResult[];
}

let t: TestApp;
let datasetId: string;
let pixels: Uint8Array; // N x S x S
let labels: number[];

/** Deterministic pseudo-random numbers in [0, 1). */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

async function uploadBytes(name: string, bytes: Uint8Array): Promise<{ id: string; layers: string[] }> {
  const file = path.join(t.dataDir, `${name}.onnx`);
  await writeFile(file, bytes);
  const m = await uploadModel(t, file, { name });
  return { id: m.id, layers: m.layers.map((l) => l.name) };
}

beforeAll(async () => {
  t = await createTestApp({}, { workers: true });
  const rnd = prng(2024);
  pixels = new Uint8Array(N * S * S);
  for (let i = 0; i < N; i++) {
    // Each image its own range of grey levels, so samples differ clearly from each other.
    const lo = Math.floor(rnd() * 128);
    const span = 64 + Math.floor(rnd() * 64);
    for (let p = 0; p < S * S; p++) pixels[i * S * S + p] = lo + Math.floor(rnd() * span);
  }
  labels = Array.from({ length: N }, (_, i) => i % K);
  datasetId = await uploadIdxDataset(t, {
    pixels,
    labels,
    size: S,
    name: 'synthetic-6x6',
    classNames: CLASS_NAMES,
  });
}, 60_000);
afterAll(async () => t?.close());

async function runToResults(request: Record<string, unknown>): Promise<Results> {
  const { id } = await submitRun(t, { datasetId, ...request });
  const done = await waitForRun(t, id, 60_000);
  expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
  const res = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}/results`, headers: t.auth });
  expect(res.statusCode, res.body).toBe(200);
  expectMatchesSpec('GET', '/v1/runs/{id}/results', res);
  return res.json() as Results;
}

function nvOf(r: Results, layer: string, aggregation: 'none' | 'mean'): NvResult {
  const found = r.nv.find((x) => x.layer === layer && x.aggregation === aggregation);
  expect(found, `${layer}|${aggregation}`).toBeDefined();
  return found as NvResult;
}

function close(actual: number | null, expected: number, rel = 1e-6, abs = 1e-9, what = '') {
  expect(actual, what).not.toBeNull();
  const tol = Math.max(abs, rel * Math.abs(expected));
  expect(
    Math.abs((actual as number) - expected),
    `${what}: ${actual} vs ${expected} (tolerance ${tol})`,
  ).toBeLessThanOrEqual(tol);
}

// ---------------------------------------------------------------------------------------------
// Transforms of SPEC 3 on an S x S greyscale image (row-major, values in [0,1]), in float64.

type Image = Float64Array;
const at = (y: number, x: number) => y * S + x;
/** rotate(90): counter-clockwise on screen, np.rot90: out[y][x] = in[x][S-1-y]. */
function rot90(img: Image): Image {
  const out = new Float64Array(S * S);
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) out[at(y, x)] = img[at(x, S - 1 - y)];
  return out;
}
function hflip(img: Image): Image {
  const out = new Float64Array(S * S);
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) out[at(y, x)] = img[at(y, S - 1 - x)];
  return out;
}
function vflip(img: Image): Image {
  const out = new Float64Array(S * S);
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) out[at(y, x)] = img[at(S - 1 - y, x)];
  return out;
}
const brightness = (delta: number) => (img: Image) => img.map((v) => Math.min(1, Math.max(0, v + delta)));
const compose =
  (...fs: Array<(img: Image) => Image>) =>
  (img: Image) =>
    fs.reduce((acc, f) => f(acc), img);

/** Sample i as the engine sees it: uint8 / 255 (stored as float32), in [0,1]. */
function image(i: number): Image {
  return Float64Array.from(pixels.subarray(i * S * S, (i + 1) * S * S), (p) => Math.fround(p / 255));
}

// ---------------------------------------------------------------------------------------------
// Metrics of SPEC 4, written out directly from the definitions.

const mean = (xs: ArrayLike<number>) => Array.from(xs).reduce((a, b) => a + b, 0) / xs.length;
function std(xs: number[]): number {
  const mu = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - mu) ** 2, 0) / (xs.length - 1));
}
const argmax = (v: number[]) => v.reduce((best, x, k) => (x > v[best] ? k : best), 0);
function logSoftmax(v: number[]): number[] {
  const mx = Math.max(...v);
  const lse = mx + Math.log(v.reduce((a, x) => a + Math.exp(x - mx), 0));
  return v.map((x) => x - lse);
}
function kl(p: number[], q: number[]): number {
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  return lp.reduce((a, l, k) => a + Math.exp(l) * (l - lq[k]), 0);
}

/** acts[i][j][d]: sample i, transform point j, activation d. TV and SV per activation (std, ddof 1). */
function tvSv(acts: number[][][]): { tv: number[]; sv: number[] } {
  const n = acts.length;
  const m = acts[0].length;
  const D = acts[0][0].length;
  const tv: number[] = [];
  const sv: number[] = [];
  for (let d = 0; d < D; d++) {
    tv.push(mean(Array.from({ length: n }, (_, i) => std(acts[i].map((a) => a[d])))));
    sv.push(mean(Array.from({ length: m }, (_, j) => std(acts.map((a) => a[j][d])))));
  }
  return { tv, sv };
}
const nvRatio = (tv: number, sv: number) => (sv === 0 ? (tv === 0 ? 1 : Number.POSITIVE_INFINITY) : tv / sv);

/** The layer result for aggregation none (each element) or mean (one channel: averaged first). */
function layerNv(acts: number[][][], aggregation: 'none' | 'mean') {
  const { tv, sv } = tvSv(acts);
  if (aggregation === 'mean') {
    const T = mean(tv);
    const V = mean(sv);
    return { tv: T, sv: V, nv: nvRatio(T, V), total: 1 };
  }
  const nvs = tv.map((x, d) => nvRatio(x, sv[d])).filter(Number.isFinite);
  return { tv: mean(tv), sv: mean(sv), nv: mean(nvs), total: tv.length };
}

// ---------------------------------------------------------------------------------------------

describe('(a) a model invariant under rotations by 90 degrees and flips', () => {
  // image -> x255 -> Round (exact integers) -> GlobalAveragePool -> [N,1] -> MatMul -> Add -> logits.
  // The pool sums integers below 2^24, exact in float32 in any order, so permuting the pixels
  // cannot change a single bit of the logits.
  function invariantModel(): Uint8Array {
    const b = new OnnxModelBuilder();
    b.input('image', 'float32', ['N', 1, S, S]);
    b.node('Mul', ['image', b.float32([255], [])], ['scaled']);
    b.node('Round', ['scaled'], ['grey']);
    b.node('GlobalAveragePool', ['grey'], ['pooled']);
    b.node('Flatten', ['pooled'], ['feature'], { axis: 1 });
    b.initializer('W', Float32Array.of(-6 / 255, 0.5 / 255, 6 / 255), [1, K]);
    b.initializer('B', Float32Array.of(3, 0, -3), [K]);
    b.node('MatMul', ['feature', 'W'], ['mm']);
    b.node('Add', ['mm', 'B'], ['logits']);
    b.output('logits', 'float32', ['N', K]);
    return b.toBytes();
  }

  let r: Results;
  beforeAll(async () => {
    const model = await uploadBytes('invariant', invariantModel());
    expect(model.layers).toEqual(expect.arrayContaining(['grey', 'pooled', 'logits']));
    r = await runToResults({
      modelId: model.id,
      transforms: [
        { type: 'rotate', values: [90, 180, 270, -90, 360] },
        { type: 'hflip' },
        { type: 'vflip', values: [true] },
        { type: 'grid', of: [{ type: 'rotate', values: [90] }, { type: 'hflip' }] },
      ],
      nv: { layers: ['grey', 'pooled', 'logits'], aggregation: ['none', 'mean'] },
    });
  }, 60_000);

  it('eKLD is exactly 0 overall, per point and per class; consistency is 1', () => {
    expect(r.samples).toBe(N);
    expect(r.points).toHaveLength(8);
    expect(r.ekld.overall).toBe(0);
    expect(r.ekld.infinitePairs).toBe(0);
    for (const p of r.points) {
      expect(p.ekld, JSON.stringify(p.params)).toBe(0);
      expect(p.consistency).toBe(1);
      expect(p.accuracy).toBe(r.clean.accuracy);
    }
    for (const c of r.ekld.perClass) if (c.count > 0) expect(c.value).toBe(0);
    expect(r.consistency).toEqual({ mean: 1, min: 1 });
    expect(r.accuracy.worstCase).toBe(r.clean.accuracy);
    expect(r.tta.accuracy).toBe(r.clean.accuracy);
  });

  it('NV is exactly 0 at the output and the pooled feature (TV = 0, SV > 0), not at the image', () => {
    for (const layer of ['pooled', 'logits']) {
      for (const aggregation of ['none', 'mean'] as const) {
        const v = nvOf(r, layer, aggregation);
        expect(v.tv, `${layer}|${aggregation}`).toBe(0);
        expect(v.sv as number).toBeGreaterThan(0);
        expect(v.nv).toBe(0);
        expect(v.infinite).toBe(0);
        expect(v.finite).toBe(v.total);
      }
    }
    expect(nvOf(r, 'logits', 'none').total).toBe(K);
    // The transforms do move the pixels: the image itself is far from invariant.
    const grey = nvOf(r, 'grey', 'none');
    expect(grey.total).toBe(S * S);
    expect(grey.nv as number).toBeGreaterThan(0.3);
    expect(nvOf(r, 'grey', 'mean').total).toBe(1);
  });
});

describe('(b) an identity-like model with outputs computed here, (c) a dead unit', () => {
  // image -> Neg -> Flatten -> MatMul (a few pixels per class) -> Add -> pre; dead = pre * 0;
  // logits = pre + dead. Layers: neg [1,S,S] (the normalised image, negated), logits, dead.
  const weights: Array<[number, number, number, number]> = [
    // [class, y, x, weight]
    [0, 1, 1, 2],
    [0, 1, 4, -1.5],
    [1, 4, 1, 1.8],
    [1, 2, 3, 1],
    [2, 4, 4, -2],
    [2, 3, 2, 1.2],
    [2, 0, 5, 0.7],
  ];
  const bias = [0.1, -0.2, 0.05];
  const MEAN = 0.5;
  const STD = 0.25;

  function linearModel(): Uint8Array {
    const W = new Float32Array(S * S * K);
    for (const [k, y, x, w] of weights) W[at(y, x) * K + k] = w;
    const b = new OnnxModelBuilder();
    b.input('image', 'float32', ['N', 1, S, S]);
    b.node('Neg', ['image'], ['neg']);
    b.node('Flatten', ['neg'], ['flat'], { axis: 1 });
    b.initializer('W', W, [S * S, K]);
    b.initializer('B', Float32Array.from(bias), [K]);
    b.initializer('Z', new Float32Array(K), [K]);
    b.node('MatMul', ['flat', 'W'], ['lin']);
    b.node('Add', ['lin', 'B'], ['pre']);
    b.node('Mul', ['pre', 'Z'], ['dead']);
    b.node('Add', ['pre', 'dead'], ['logits']);
    b.output('logits', 'float32', ['N', K]);
    return b.toBytes();
  }

  // The sweep and the same transforms written out here.
  const transforms = [
    { type: 'rotate', values: [90, 180] },
    { type: 'brightness', values: [-0.3, 0.25] },
    { type: 'grid', of: [{ type: 'vflip' }, { type: 'brightness', values: [0.1] }] },
    { type: 'hflip' },
  ];
  const pointFns: Array<(img: Image) => Image> = [
    rot90,
    compose(rot90, rot90),
    brightness(-0.3),
    brightness(0.25),
    compose(vflip, brightness(0.1)),
    hflip,
  ];
  const m = pointFns.length;

  /** The model's input (normalised) and layers, from the definitions. */
  const normalise = (img: Image) => img.map((v) => (v - MEAN) / STD);
  function forward(img: Image) {
    const x = normalise(img);
    const neg = Array.from(x, (v) => -v);
    const logits = bias.slice();
    for (const [k, y, xx, w] of weights) logits[k] += w * neg[at(y, xx)];
    return { neg, logits };
  }

  let r: Results;
  let model: { id: string; layers: string[] };
  const clean: ReturnType<typeof forward>[] = [];
  const transformed: ReturnType<typeof forward>[][] = [];

  beforeAll(async () => {
    for (let i = 0; i < N; i++) {
      clean.push(forward(image(i)));
      transformed.push(pointFns.map((f) => forward(f(image(i)))));
    }
    // Well-posed: no argmax is within float32 noise of a tie, so accuracies compare exactly.
    for (const out of [...clean, ...transformed.flat()]) {
      const sorted = [...out.logits].sort((a, b) => b - a);
      expect(sorted[0] - sorted[1]).toBeGreaterThan(1e-3);
    }
    model = await uploadBytes('linear', linearModel());
    expect(model.layers).toEqual(expect.arrayContaining(['neg', 'logits', 'dead']));
    r = await runToResults({
      modelId: model.id,
      transforms,
      preprocessing: { mean: [MEAN], std: [STD] },
      nv: { layers: ['neg', 'logits', 'dead'], aggregation: ['none', 'mean'] },
    });
  }, 60_000);

  it('reports the points with their parameters, in sweep order', () => {
    expect(r.points.map((p) => p.params)).toEqual([
      { rotate: 90 },
      { rotate: 180 },
      { brightness: -0.3 },
      { brightness: 0.25 },
      { vflip: true, brightness: 0.1 },
      { hflip: true },
    ]);
  });

  it('accuracy, consistency, worst case and TTA per point equal the independent computation', () => {
    const correct = (out: { logits: number[] }, i: number) => argmax(out.logits) === labels[i];
    expect(r.clean.accuracy).toBe(clean.filter(correct).length / N);
    for (let j = 0; j < m; j++) {
      const acc = transformed.filter((outs, i) => correct(outs[j], i)).length / N;
      const cons =
        transformed.filter((outs, i) => argmax(outs[j].logits) === argmax(clean[i].logits)).length / N;
      expect(r.points[j].accuracy, `point ${j}`).toBe(acc);
      expect(r.points[j].consistency, `point ${j}`).toBe(cons);
    }
    const worst = transformed.filter((outs, i) => outs.every((o) => correct(o, i))).length / N;
    expect(r.accuracy.worstCase).toBe(worst);
    const tta =
      transformed.filter((outs, i) => {
        const sum = new Array(K).fill(0);
        for (const o of outs) {
          const l = logSoftmax(o.logits);
          for (let k = 0; k < K; k++) sum[k] += Math.exp(l[k]);
        }
        return argmax(sum) === labels[i];
      }).length / N;
    expect(r.tta.accuracy).toBe(tta);
    // The sweep is not trivial for this model: some points change predictions.
    expect(r.consistency.min).toBeLessThan(1);
  });

  it('eKLD per point and overall equal KL(p(x) || p(t(x))) computed here', () => {
    const perPoint = Array.from({ length: m }, (_, j) =>
      mean(transformed.map((outs, i) => kl(clean[i].logits, outs[j].logits))),
    );
    for (let j = 0; j < m; j++) close(r.points[j].ekld, perPoint[j], 1e-6, 1e-9, `ekld point ${j}`);
    close(r.ekld.overall, mean(perPoint), 1e-6, 1e-9, 'ekld overall');
    for (let c = 0; c < K; c++) {
      const rows = transformed.flatMap((outs, i) =>
        labels[i] === c ? outs.map((o) => kl(clean[i].logits, o.logits)) : [],
      );
      close(r.ekld.perClass[c].value, mean(rows), 1e-6, 1e-9, `ekld class ${c}`);
      expect(r.ekld.perClass[c].count).toBe(rows.length / m);
    }
  });

  it('TV, SV and NV of the output layer (and of the image layer, both aggregations) match', () => {
    const logitActs = transformed.map((outs) => outs.map((o) => o.logits));
    const negActs = transformed.map((outs) => outs.map((o) => o.neg));
    for (const [layer, acts] of [
      ['logits', logitActs],
      ['neg', negActs],
    ] as const) {
      for (const aggregation of ['none', 'mean'] as const) {
        const want = layerNv(acts, layer === 'logits' ? 'none' : aggregation);
        const got = nvOf(r, layer, aggregation);
        const what = `${layer}|${aggregation}`;
        close(got.tv, want.tv, 1e-6, 1e-9, `${what} tv`);
        close(got.sv, want.sv, 1e-6, 1e-9, `${what} sv`);
        close(got.nv, want.nv, 1e-6, 1e-9, `${what} nv`);
        expect(got.total, what).toBe(layer === 'logits' ? K : aggregation === 'mean' ? 1 : S * S);
        expect(got.finite, what).toBe(got.total);
        expect(got.samples).toBe(N);
        expect(got.dispersion).toBe('std');
      }
    }
    // A 1-D layer has no spatial positions: both aggregations agree exactly.
    expect(nvOf(r, 'logits', 'mean')).toEqual({ ...nvOf(r, 'logits', 'none'), aggregation: 'mean' });
  });

  it('(c) a dead unit (constant 0): TV = SV = 0, NV = 0/0 = 1, counted as finite', () => {
    for (const aggregation of ['none', 'mean'] as const) {
      const dead = nvOf(r, 'dead', aggregation);
      expect(dead).toMatchObject({ tv: 0, sv: 0, nv: 1, finite: K, infinite: 0, total: K });
    }
  });
});
