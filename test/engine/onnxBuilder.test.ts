import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { float, OnnxModelBuilder, tensorAttr } from '../../src/engine/onnxBuilder.js';

async function session(bytes: Uint8Array) {
  return ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, executionProviders: ['cpu'] });
}

describe('OnnxModelBuilder', () => {
  it('builds a Gemm model that ONNX Runtime runs with the expected outputs', async () => {
    // y = 2 * x @ W + b, x [N, 3], W [3, 2]
    const W = new Float32Array([1, 2, 3, 4, 5, 6]);
    const bias = new Float32Array([0.5, -1]);
    const b = new OnnxModelBuilder();
    b.input('x', 'float32', ['N', 3])
      .initializer('W', W, [3, 2])
      .initializer('b', bias, [2])
      .node('Gemm', ['x', 'W', 'b'], ['y'], { alpha: float(2), beta: float(1), transB: 0 })
      .output('y', 'float32', ['N', 2]);
    const s = await session(b.toBytes());
    try {
      expect(s.inputNames).toEqual(['x']);
      expect(s.outputNames).toEqual(['y']);
      const x = new Float32Array([1, 0, 0, 1, 1, 1]);
      const { y } = await s.run({ x: new ort.Tensor('float32', x, [2, 3]) });
      expect(y.dims).toEqual([2, 2]);
      // row 0: 2*[1,2] + b = [2.5, 3]; row 1: 2*[9,12] + b = [18.5, 23]
      expect(Array.from(y.data as Float32Array)).toEqual([2.5, 3, 18.5, 23]);
    } finally {
      await s.release();
    }
  });

  it('supports int64 initializers, int and tensor attributes, fresh names and op()', async () => {
    // z = Reshape(x, [-1]) + Constant([10, 20, 30, 40]); m = ReduceMax(x, axes=[1], keepdims=0)
    const b = new OnnxModelBuilder({ opset: 17 });
    b.input('x', 'float32', [2, 2]);
    const flat = b.op('Reshape', ['x', b.int64([-1])]);
    const c = b.op('Constant', [], {
      value: tensorAttr({ dtype: 'float32', dims: [4], data: [10, 20, 30, 40] }),
    });
    b.node('Add', [flat, c], ['z']);
    b.node('ReduceMax', ['x'], ['m'], { axes: [1], keepdims: 0 });
    b.node('Cast', ['m'], ['mi'], { to: 7 });
    b.output('z', 'float32').output('mi', 'int64', [2]);
    const s = await session(b.toBytes());
    try {
      const out = await s.run({ x: new ort.Tensor('float32', new Float32Array([1, 5, 3, 2]), [2, 2]) });
      expect(Array.from(out.z.data as Float32Array)).toEqual([11, 25, 33, 42]);
      expect(Array.from(out.mi.data as BigInt64Array)).toEqual([5n, 3n]);
    } finally {
      await s.release();
    }
  });

  it('builds a model invariant by construction (global average pool then linear)', async () => {
    const b = new OnnxModelBuilder();
    b.input('input', 'float32', ['N', 1, 4, 4]);
    const pooled = b.op('GlobalAveragePool', ['input']);
    const flat = b.op('Flatten', [pooled], { axis: 1 });
    b.node('Gemm', [flat, b.float32([1, -1], [1, 2]), b.float32([0, 1], [2])], ['logits']);
    b.output('logits', 'float32', ['N', 2]);
    const s = await session(b.toBytes());
    try {
      const img = Float32Array.from({ length: 16 }, (_, i) => i);
      const rotated = new Float32Array(16);
      for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) rotated[y * 4 + x] = img[x * 4 + (3 - y)];
      const a = await s.run({ input: new ort.Tensor('float32', img, [1, 1, 4, 4]) });
      const r = await s.run({ input: new ort.Tensor('float32', rotated, [1, 1, 4, 4]) });
      expect(Array.from(a.logits.data as Float32Array)).toEqual([7.5, -6.5]);
      expect(Array.from(r.logits.data as Float32Array)).toEqual([7.5, -6.5]);
    } finally {
      await s.release();
    }
  });

  it('rejects non-integer values for int attributes and mismatched tensor sizes', () => {
    const b = new OnnxModelBuilder();
    expect(() => b.node('Gemm', ['a', 'b'], ['c'], { alpha: 0.5 })).toThrow(/float\(\)/);
    expect(() => b.initializer('w', new Float32Array(3), [2, 2])).toThrow(/3 values/);
    expect(b.fresh('t')).not.toBe(b.fresh('t'));
  });
});
