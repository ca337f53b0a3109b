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
