// Tiny hand-built ONNX models (via onnx-proto) for tests of model inspection and upload.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export type Dims = Array<number | string>;
export const FLOAT = 1;
export const INT64 = 7;

export function valueInfo(name: string, elemType: number, dims?: Dims): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        ...(dims
          ? { shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } }
          : {}),
      },
    },
  };
}

export function floatTensor(name: string, dims: number[], values: number[]): onnxProto.onnx.ITensorProto {
  return { name, dims, dataType: FLOAT, rawData: new Uint8Array(new Float32Array(values).buffer) };
}

export function int64Tensor(name: string, dims: number[], values: number[]): onnxProto.onnx.ITensorProto {
  return {
    name,
    dims,
    dataType: INT64,
    rawData: new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer),
  };
}

export function encodeModel(graph: onnxProto.onnx.IGraphProto, opset = 17): Buffer {
  return Buffer.from(
    onnx.ModelProto.encode({
      irVersion: 8,
      producerName: 'invariance-tests',
      opsetImport: [{ domain: '', version: opset }],
      graph: { name: 'g', ...graph },
    }).finish(),
  );
}

/** x [N,C,H,W] -> Relu -> GlobalAveragePool -> Flatten -> y [N,C]: the smallest valid "classifier". */
export function tinyClassifier(opts: { channels?: number; size?: number; batch?: string } = {}): Buffer {
  const c = opts.channels ?? 1;
  const s = opts.size ?? 4;
  return encodeModel({
    input: [valueInfo('x', FLOAT, [opts.batch ?? 'N', c, s, s])],
    output: [valueInfo('y', FLOAT, [opts.batch ?? 'N', c])],
    node: [
      { opType: 'Relu', input: ['x'], output: ['r'], name: 'relu' },
      { opType: 'GlobalAveragePool', input: ['r'], output: ['p'], name: 'pool' },
      { opType: 'Flatten', input: ['p'], output: ['y'], name: 'flatten' },
    ],
  });
}

// Models for what upload learns by running a model on zeros (all on x [N,1,4,4]).

/**
 * r = Relu(x), h = float16 Cast of r, h32 = float32 Cast of h, y = Flatten(h32) [N,16]; and
 * three values whose first dim is not the batch: t (batch moved to dim 1), f (Reshape [-1]),
 * m (ReduceMean to a scalar).
 */
export function mixedLayersModel(): Buffer {
  return encodeModel({
    input: [valueInfo('x', FLOAT, ['N', 1, 4, 4])],
    output: [valueInfo('y', FLOAT, ['N', 16])],
    initializer: [int64Tensor('all', [1], [-1])],
    node: [
      { opType: 'Relu', input: ['x'], output: ['r'] },
      { opType: 'Cast', input: ['r'], output: ['h'], attribute: [{ name: 'to', type: 2, i: 10 }] },
      { opType: 'Cast', input: ['h'], output: ['h32'], attribute: [{ name: 'to', type: 2, i: FLOAT }] },
      {
        opType: 'Transpose',
        input: ['r'],
        output: ['t'],
        attribute: [{ name: 'perm', type: 7, ints: [1, 0, 2, 3] }],
      },
      { opType: 'Reshape', input: ['r', 'all'], output: ['f'] },
      { opType: 'ReduceMean', input: ['r'], output: ['m'], attribute: [{ name: 'keepdims', type: 2, i: 0 }] },
      { opType: 'Flatten', input: ['h32'], output: ['y'] },
    ],
  });
}

/** Flatten then MatMul to 10 scores, declared as y [N, 'K']. */
export function symbolicClassesModel(weight = 0.5): Buffer {
  return encodeModel({
    input: [valueInfo('x', FLOAT, ['N', 1, 4, 4])],
    output: [valueInfo('y', FLOAT, ['N', 'K'])],
    initializer: [floatTensor('w', [16, 10], new Array(160).fill(weight))],
    node: [
      { opType: 'Flatten', input: ['x'], output: ['v'] },
      { opType: 'MatMul', input: ['v', 'w'], output: ['y'] },
    ],
  });
}

/** Reshapes the 16 values of each image to [-1, 7]: fails for every input. */
export function failingReshapeModel(): Buffer {
  return encodeModel({
    input: [valueInfo('x', FLOAT, ['N', 1, 4, 4])],
    output: [valueInfo('y', FLOAT)],
    initializer: [int64Tensor('bad', [2], [-1, 7])],
    node: [
      { opType: 'Flatten', input: ['x'], output: ['v'] },
      { opType: 'Reshape', input: ['v', 'bad'], output: ['y'] },
    ],
  });
}

/** y = Relu(x) with the input declared as `dims`. */
export function reluModel(dims: Dims): Buffer {
  return encodeModel({
    input: [valueInfo('x', FLOAT, dims)],
    output: [valueInfo('y', FLOAT)],
    node: [{ opType: 'Relu', input: ['x'], output: ['y'] }],
  });
}
