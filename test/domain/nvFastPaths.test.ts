// The NV accumulator's fast paths (used by the engine) give exactly the statistics of the plain
// path: the `relu` option, activations read in place from batchBuffer(), and raw (binary) states.
import { describe, expect, it } from 'vitest';
import { NormalizedVarianceAccumulator, type NvOptions } from '../../src/domain/normalizedVariance.js';
import { type KernelKind, wasmKernelAvailable } from '../../src/domain/nvKernel.js';
import { mulberry32 } from '../../src/domain/stats.js';

const KERNELS: KernelKind[] = wasmKernelAvailable() ? ['wasm', 'js'] : ['js'];

/** B samples x Q = m + 1 images (the clean one first, as the engine lays them out) x D values. */
function engineBatch(
  B: number,
  m: number,
  D: number,
  seed: number,
): { acts: Float32Array; labels: number[] } {
  const rnd = mulberry32(seed);
  const acts = new Float32Array(B * (m + 1) * D);
  for (let i = 0; i < acts.length; i++) {
    const r = rnd();
    // negatives, zeros of both signs, NaN now and then: what ReLU must treat as ONNX Runtime does
    acts[i] = r < 0.02 ? Number.NaN : r < 0.1 ? -0 : r < 0.15 ? 0 : (rnd() - 0.45) * 4;
  }
  const labels = Array.from({ length: B }, () => Math.floor(rnd() * 3));
  return { acts, labels };
}

// std::max(x, 0), as ONNX Runtime's Relu: NaN and -0 kept (Math.max would give NaN and 0)
// biome-ignore lint/complexity/useMathMinMax: not Math.max's semantics
const relu = (x: number) => (x < 0 ? 0 : x);

describe.each(KERNELS)('NV accumulator fast paths (%s kernel)', (kernel) => {
  for (const perClass of [false, true]) {
    const base = (D: number, m: number): NvOptions => ({
      layer: 'l',
      shape: [D],
      points: m,
      perClass,
      classes: 3,
      kernel,
    });

    it(`relu: accumulates exactly the statistics of max(x, 0)${perClass ? ' (per class)' : ''}`, () => {
      for (const [B, m, D, seed] of [
        [9, 12, 37, 1],
        [4, 2, 6, 2],
        [11, 5, 130, 3],
      ]) {
        const { acts, labels } = engineBatch(B, m, D, seed);
        const layout = { count: B, offset: D, sampleStride: (m + 1) * D, pointStride: D };
        const viaOption = new NormalizedVarianceAccumulator({ ...base(D, m), relu: true });
        viaOption.addBatch(labels, acts, layout);
        viaOption.addBatch(labels, acts, layout);
        const plain = new NormalizedVarianceAccumulator(base(D, m));
        const rectified = acts.map(relu);
        plain.addBatch(labels, rectified, layout);
        plain.addBatch(labels, rectified, layout);
        expect(JSON.stringify(viaOption.toJSON())).toBe(JSON.stringify(plain.toJSON()));
      }
    });

    it(`batchBuffer: values read in place give the state of a copy${perClass ? ' (per class)' : ''}`, () => {
      for (const [B, m, D, seed] of [
        [7, 12, 41, 4],
        [3, 3, 8, 5],
      ]) {
        const copied = new NormalizedVarianceAccumulator(base(D, m));
        const inPlace = new NormalizedVarianceAccumulator({ ...base(D, m), stagingBytes: 64 });
        for (let round = 0; round < 3; round++) {
          const { acts, labels } = engineBatch(B, m, D, seed + round);
          const layout = { count: B, offset: D, sampleStride: (m + 1) * D, pointStride: D };
          copied.addBatch(labels, acts, layout);
          const buf = inPlace.batchBuffer(acts.length);
          buf.set(acts);
          inPlace.addBatch(labels, buf, layout);
        }
        expect(JSON.stringify(inPlace.toJSON())).toBe(JSON.stringify(copied.toJSON()));
        // rows not contiguous (point-major data in the buffer) still work, through a copy
        const { acts, labels } = engineBatch(B, m, D, seed + 9);
        const pm = new Float32Array(B * m * D);
        for (let b = 0; b < B; b++)
          for (let j = 0; j < m; j++)
            pm.set(acts.subarray((b * (m + 1) + 1 + j) * D, (b * (m + 1) + 2 + j) * D), (j * B + b) * D);
        copied.addBatch(labels, pm, { count: B, sampleStride: D, pointStride: B * D });
        const buf = inPlace.batchBuffer(pm.length);
        buf.set(pm);
        inPlace.addBatch(labels, buf, { count: B, sampleStride: D, pointStride: B * D });
        expect(JSON.stringify(inPlace.toJSON())).toBe(JSON.stringify(copied.toJSON()));
      }
    });
  }

  it('raw states round-trip exactly and agree with the JSON states', () => {
    const { acts, labels } = engineBatch(6, 4, 9, 7);
    const acc = new NormalizedVarianceAccumulator({
      layer: 'l',
      shape: [9],
      points: 4,
      perClass: true,
      classes: 3,
      kernel,
    });
    acc.addBatch(labels, acts, { count: 6, offset: 9, sampleStride: 45, pointStride: 9 });
    const raw = acc.toRawState();
    const back = NormalizedVarianceAccumulator.fromRawState(raw, kernel);
    expect(JSON.stringify(back.toJSON())).toBe(JSON.stringify(acc.toJSON()));
    const viaJson = NormalizedVarianceAccumulator.fromJSON(JSON.parse(JSON.stringify(acc.toJSON())), kernel);
    expect(viaJson.toRawState()).toEqual(raw);
    expect(() =>
      NormalizedVarianceAccumulator.fromRawState({
        ...raw,
        groups: [{ ...raw.groups[0], mean: new Float64Array(3) }],
      }),
    ).toThrow(RangeError);
  });
});
