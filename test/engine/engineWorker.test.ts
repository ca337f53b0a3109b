// The engine thread's building blocks that need no pool: which NV layers are fetched from the
// model and which are derived (Relu of a fetched layer, Identity/Flatten aliases), and the
// binary shard partials (with version-1 JSON partials still read).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClassificationAccumulator } from '../../src/domain/classification.js';
import { NormalizedVarianceAccumulator } from '../../src/domain/normalizedVariance.js';
import { mulberry32 } from '../../src/domain/stats.js';
import type { MergePartialsResult } from '../../src/engine/engineTasks.js';
import engineTask, { decodePartial, encodePartial, planLayerSources } from '../../src/engine/engineWorker.js';
import { OnnxModelBuilder } from '../../src/engine/onnxBuilder.js';

const PLAIN = path.resolve(import.meta.dirname, '..', 'fixtures', 'fmnist-cnn-plain.onnx');
const LAYERS = [
  '/conv1/Conv_output_0',
  '/Relu_output_0',
  '/MaxPool_output_0',
  '/conv2/Conv_output_0',
  '/Relu_1_output_0',
  '/MaxPool_1_output_0',
  '/Flatten_output_0',
  '/fc1/Gemm_output_0',
  '/Relu_2_output_0',
  'logits',
];

describe('planLayerSources', () => {
  it('derives ReLU layers from their fetched inputs and Flatten from its input', async () => {
    const model = new Uint8Array(await readFile(PLAIN));
    const plan = planLayerSources(model, LAYERS, true);
    expect(plan.map((p) => p.layer)).toEqual(LAYERS);
    expect(Object.fromEntries(plan.map((p) => [p.layer, p.kind]))).toEqual({
      '/conv1/Conv_output_0': 'fetch',
      '/Relu_output_0': 'relu',
      '/MaxPool_output_0': 'fetch',
      '/conv2/Conv_output_0': 'fetch',
      '/Relu_1_output_0': 'relu',
      '/MaxPool_1_output_0': 'fetch',
      '/Flatten_output_0': 'alias',
      '/fc1/Gemm_output_0': 'fetch',
      '/Relu_2_output_0': 'relu',
      logits: 'fetch',
    });
    expect(plan[1]).toEqual({ layer: '/Relu_output_0', kind: 'relu', output: '/conv1/Conv_output_0' });
    expect(plan[6]).toEqual({
      layer: '/Flatten_output_0',
      kind: 'alias',
      of: '/MaxPool_1_output_0',
      flatten: true,
    });
  });

  it('fetches a ReLU whose input is not asked for, and everything when derivation is off', async () => {
    const model = new Uint8Array(await readFile(PLAIN));
    expect(planLayerSources(model, ['/Relu_output_0', 'logits'], true).map((p) => p.kind)).toEqual([
      'fetch',
      'fetch',
    ]);
    expect(planLayerSources(model, LAYERS, false).every((p) => p.kind === 'fetch')).toBe(true);
  });

  it('follows chains: ReLU of an Identity of a fetched layer, Identity of a ReLU', () => {
    const b = new OnnxModelBuilder({ opset: 13 });
    b.input('x', 'float32', ['N', 4]);
    const lin = b.op('Mul', ['x', b.float32([2], [])]);
    const id = b.op('Identity', [lin]);
    const r = b.op('Relu', [id]);
    const id2 = b.op('Identity', [r]);
    const flat = b.op('Flatten', [r], { axis: 0 });
    b.output(id2, 'float32', null);
    b.output(flat, 'float32', null);
    const plan = planLayerSources(b.toBytes(), [lin, id, r, id2, flat], true);
    expect(plan).toEqual([
      { layer: lin, kind: 'fetch', output: lin },
      { layer: id, kind: 'alias', of: lin, flatten: false },
      { layer: r, kind: 'relu', output: lin },
      { layer: id2, kind: 'alias', of: r, flatten: false },
      // Flatten at axis 0 folds the batch dimension in: not the same per-sample values
      { layer: flat, kind: 'fetch', output: flat },
    ]);
  });
});

describe('shard partials', () => {
  function partial(seed = 5) {
    const rnd = mulberry32(seed);
    const classification = new ClassificationAccumulator({ points: 3, classes: 4 });
    const logits = Float32Array.from({ length: 6 * 4 * 4 }, () => rnd() * 4);
    for (let b = 0; b < 6; b++) classification.addSample(b % 4, logits, logits, b * 16, b * 16 + 4, 4);
    const nv = [
      new NormalizedVarianceAccumulator({ layer: 'a', shape: [2, 3], points: 3 }),
      new NormalizedVarianceAccumulator({ layer: 'b', shape: [5], points: 3, perClass: true, classes: 4 }),
    ];
    for (const acc of nv) {
      const acts = Float32Array.from({ length: 6 * 3 * acc.size }, () => rnd() - 0.5);
      acts[7] = Number.NaN;
      acc.addBatch([0, 1, 2, 3, 0, 1], acts);
    }
    return { samples: 6, classification: classification.toJSON(), nv: nv.map((a) => a.toRawState()) };
  }

  it('round-trip exactly through the binary format, at any byte offset', () => {
    const p = partial();
    const bytes = encodePartial(p);
    expect(Buffer.from(bytes.subarray(0, 8)).toString('ascii')).toBe('INVPART2');
    expect(decodePartial(bytes)).toEqual(p);
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    expect(decodePartial(shifted.subarray(3))).toEqual(p);
    expect(() => decodePartial(bytes.subarray(0, bytes.length - 8))).toThrow(/truncated/);
  });

  it('read version-1 (JSON) partials', () => {
    const p = partial();
    const v1 = new TextEncoder().encode(
      JSON.stringify({
        version: 1,
        samples: p.samples,
        classification: p.classification,
        nv: p.nv.map((s) => NormalizedVarianceAccumulator.fromRawState(s).toJSON()),
      }),
    );
    expect(decodePartial(v1)).toEqual(p);
    expect(() => decodePartial(new TextEncoder().encode('{"version":9}'))).toThrow(/unknown partial format/);
  });

  it('fold in order with the merge task exactly as merging every partial at once', async () => {
    const parts = [partial(1), partial(2), partial(3)];
    const bytes = parts.map(encodePartial);
    const m01 = (await engineTask({ kind: 'merge', partials: [bytes[0], bytes[1]] })) as MergePartialsResult;
    const m012 = (await engineTask({
      kind: 'merge',
      partials: [m01.partial, bytes[2]],
    })) as MergePartialsResult;
    const all = (await engineTask({ kind: 'merge', partials: bytes })) as MergePartialsResult;
    expect(Buffer.from(m012.partial).equals(Buffer.from(all.partial))).toBe(true);
    // and the same as the accumulators merged directly
    const folded = decodePartial(all.partial);
    expect(folded.samples).toBe(18);
    const c = ClassificationAccumulator.fromJSON(parts[0].classification);
    c.merge(ClassificationAccumulator.fromJSON(parts[1].classification));
    c.merge(ClassificationAccumulator.fromJSON(parts[2].classification));
    expect(folded.classification).toEqual(c.toJSON());
    parts[0].nv.forEach((state, l) => {
      const acc = NormalizedVarianceAccumulator.fromRawState(state);
      acc.merge(NormalizedVarianceAccumulator.fromRawState(parts[1].nv[l]));
      acc.merge(NormalizedVarianceAccumulator.fromRawState(parts[2].nv[l]));
      expect(folded.nv[l]).toEqual(acc.toRawState());
    });
  });
});
