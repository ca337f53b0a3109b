import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyWithExtraOutputs,
  inspectModel,
  parseOnnx,
  parseOnnxFile,
  withExtraOutputs,
} from '../../src/engine/onnxModel.js';
import { AppError } from '../../src/http/problem.js';
import {
  encodeModel,
  FLOAT,
  failingReshapeModel,
  floatTensor,
  INT64,
  int64Tensor,
  mixedLayersModel,
  reluModel,
  symbolicClassesModel,
  tinyClassifier,
  valueInfo,
} from '../helpers/onnxModels.js';

const { onnx } = onnxProto;
const FIXTURES = path.resolve(import.meta.dirname, '..', 'fixtures');
const PLAIN = path.join(FIXTURES, 'fmnist-cnn-plain.onnx');
const ROTAUG = path.join(FIXTURES, 'fmnist-cnn-rotaug.onnx');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'invariance-onnx-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

let counter = 0;
async function fileOf(bytes: Uint8Array): Promise<string> {
  const p = path.join(dir, `m${counter++}.onnx`);
  await writeFile(p, bytes);
  return p;
}

/** The AppError that inspecting these bytes throws. */
async function refusal(bytes: Uint8Array): Promise<AppError> {
  try {
    await inspectModel(await fileOf(bytes));
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected the model to be refused');
}

/** The fixture CNN's layers: all float32 and batch first. */
const FIXTURE_LAYERS = (
  [
    ['/conv1/Conv_output_0', 'Conv', ['batch', 16, 28, 28]],
    ['/Relu_output_0', 'Relu', ['batch', 16, 28, 28]],
    ['/MaxPool_output_0', 'MaxPool', ['batch', 16, 14, 14]],
    ['/conv2/Conv_output_0', 'Conv', ['batch', 32, 14, 14]],
    ['/Relu_1_output_0', 'Relu', ['batch', 32, 14, 14]],
    ['/MaxPool_1_output_0', 'MaxPool', ['batch', 32, 7, 7]],
    ['/Flatten_output_0', 'Flatten', ['batch', 1568]],
    ['/fc1/Gemm_output_0', 'Gemm', ['batch', 128]],
    ['/Relu_2_output_0', 'Relu', ['batch', 128]],
    ['logits', 'Gemm', ['batch', 10]],
  ] as Array<[string, string, Array<string | number>]>
).map(([name, opType, shape]) => ({ name, opType, shape, type: 'float32', measurable: true }));

describe('inspectModel on the fixtures', () => {
  it('lists input, output and every activation of the plain CNN with shapes', async () => {
    const info = await inspectModel(PLAIN);
    expect(info).toEqual({
      opset: 13,
      inputs: [{ name: 'input', type: 'float32', shape: ['batch', 1, 28, 28] }],
      outputs: [{ name: 'logits', type: 'float32', shape: ['batch', 10] }],
      layers: FIXTURE_LAYERS,
      // logits, not probabilities: no Softmax at the end
      probabilityOutputs: [],
    });
  });

  it('gives the same layers for the rotation-augmented CNN', async () => {
    const info = await inspectModel(ROTAUG);
    expect(info.layers).toEqual(FIXTURE_LAYERS);
  });

  it('without the ONNX Runtime probe, only recorded shapes are known', async () => {
    const info = await inspectModel(PLAIN, { probe: false });
    expect(info.layers.map((l) => l.name)).toEqual(FIXTURE_LAYERS.map((l) => l.name));
    expect(info.layers.find((l) => l.name === '/Relu_output_0')?.shape).toBeNull();
    expect(info.layers.find((l) => l.name === 'logits')?.shape).toEqual(['batch', 10]);
  });
});

describe('inspectModel on hand-built models', () => {
  it('finds shapes ONNX cannot infer by running once, keeps the batch symbol, skips constants', async () => {
    // Flatten as old exporters wrote it: Reshape(x, Concat(Shape(x)[0], -1)).
    const bytes = encodeModel({
      input: [valueInfo('x', FLOAT, ['B', 1, 4, 4])],
      output: [valueInfo('y', FLOAT)],
      initializer: [int64Tensor('zero', [1], [0]), int64Tensor('minus1', [1], [-1])],
      node: [
        { opType: 'Shape', input: ['x'], output: ['s'] },
        { opType: 'Gather', input: ['s', 'zero'], output: ['n'] },
        {
          opType: 'Concat',
          input: ['n', 'minus1'],
          output: ['ns'],
          attribute: [{ name: 'axis', type: 2, i: 0 }],
        },
        { opType: 'Relu', input: ['x'], output: ['r'] },
        { opType: 'Reshape', input: ['r', 'ns'], output: ['flat'] },
        {
          opType: 'Constant',
          output: ['two'],
          attribute: [{ name: 'value', type: 4, t: floatTensor('', [], [2]) }],
        },
        { opType: 'Mul', input: ['flat', 'two'], output: ['y'] },
      ],
    });
    const info = await inspectModel(await fileOf(bytes));
    expect(info.layers).toEqual([
      { name: 'r', opType: 'Relu', shape: ['B', 1, 4, 4], type: 'float32', measurable: true },
      { name: 'flat', opType: 'Reshape', shape: ['B', 16], type: 'float32', measurable: true },
      { name: 'y', opType: 'Mul', shape: ['B', 16], type: 'float32', measurable: true },
    ]);
    expect(info.outputs).toEqual([{ name: 'y', type: 'float32', shape: ['B', 16] }]);
    expect(info.opset).toBe(17);
  });

  it('accepts an NHWC input and an initializer listed among the inputs (IR < 4 style)', async () => {
    const bytes = encodeModel({
      input: [valueInfo('img', FLOAT, ['N', 8, 8, 3]), valueInfo('w', FLOAT, [1])],
      output: [valueInfo('y', FLOAT, ['N', 8, 8, 3])],
      initializer: [floatTensor('w', [1], [0.5])],
      node: [{ opType: 'Mul', input: ['img', 'w'], output: ['y'] }],
    });
    const info = await inspectModel(await fileOf(bytes));
    expect(info.inputs).toEqual([{ name: 'img', type: 'float32', shape: ['N', 8, 8, 3] }]);
    expect(info.layers).toEqual([
      { name: 'y', opType: 'Mul', shape: ['N', 8, 8, 3], type: 'float32', measurable: true },
    ]);
  });

  it('refuses initializers with external data before ONNX Runtime could read the path', async () => {
    const bytes = encodeModel({
      input: [valueInfo('x', FLOAT, ['N', 1, 2, 2])],
      output: [valueInfo('y', FLOAT, ['N', 1, 2, 2])],
      initializer: [
        {
          name: 'w',
          dims: [1],
          dataType: FLOAT,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [{ key: 'location', value: '../../../etc/passwd' }],
        },
      ],
      node: [{ opType: 'Mul', input: ['x', 'w'], output: ['y'] }],
    });
    const err = await refusal(bytes);
    expect(err.status).toBe(422);
    expect(err.code).toBe('EXTERNAL_DATA_UNSUPPORTED');
    expect(err.message).toContain('"w"');
  });

  it('refuses external data hidden in a Constant inside an If branch', async () => {
    const branch = (value: onnxProto.onnx.ITensorProto) => ({
      name: 'branch',
      output: [valueInfo('c', FLOAT, [1])],
      node: [{ opType: 'Constant', output: ['c'], attribute: [{ name: 'value', type: 4, t: value }] }],
    });
    const bytes = encodeModel({
      input: [valueInfo('x', FLOAT, ['N', 1, 2, 2])],
      output: [valueInfo('y', FLOAT)],
      initializer: [{ name: 'cond', dims: [], dataType: 9, rawData: new Uint8Array([1]) }],
      node: [
        {
          opType: 'If',
          input: ['cond'],
          output: ['k'],
          attribute: [
            { name: 'then_branch', type: 5, g: branch(floatTensor('t', [1], [1])) },
            {
              name: 'else_branch',
              type: 5,
              g: branch({
                name: 'e',
                dims: [1],
                dataType: FLOAT,
                externalData: [{ key: 'location', value: 'x.bin' }],
              }),
            },
          ],
        },
        { opType: 'Mul', input: ['x', 'k'], output: ['y'] },
      ],
    });
    const err = await refusal(bytes);
    expect(err.code).toBe('EXTERNAL_DATA_UNSUPPORTED');
    expect(err.message).toContain('"e"');
  });

  it('refuses two inputs, a non-float input, a non-image rank and a graph without outputs', async () => {
    const twoInputs = encodeModel({
      input: [valueInfo('a', FLOAT, ['N', 1, 2, 2]), valueInfo('b', FLOAT, ['N', 1, 2, 2])],
      output: [valueInfo('y', FLOAT)],
      node: [{ opType: 'Add', input: ['a', 'b'], output: ['y'] }],
    });
    let err = await refusal(twoInputs);
    expect([err.status, err.code]).toEqual([422, 'UNSUPPORTED_MODEL']);
    expect(err.message).toBe('model has 2 inputs (a, b); exactly one image input is supported');

    const intInput = encodeModel({
      input: [valueInfo('x', INT64, ['N', 1, 2, 2])],
      output: [valueInfo('y', INT64)],
      node: [{ opType: 'Neg', input: ['x'], output: ['y'] }],
    });
    err = await refusal(intInput);
    expect(err.code).toBe('UNSUPPORTED_MODEL');
    expect(err.message).toMatch(/^input x is int64, expected a float tensor/);

    const rank2 = encodeModel({
      input: [valueInfo('x', FLOAT, ['N', 784])],
      output: [valueInfo('y', FLOAT)],
      node: [{ opType: 'Relu', input: ['x'], output: ['y'] }],
    });
    err = await refusal(rank2);
    expect(err.code).toBe('UNSUPPORTED_MODEL');
    expect(err.message).toContain('rank 2 ([N,784]); expected rank 4');

    const noOutputs = encodeModel({
      input: [valueInfo('x', FLOAT, ['N', 1, 2, 2])],
      node: [{ opType: 'Relu', input: ['x'], output: ['y'] }],
    });
    err = await refusal(noOutputs);
    expect(err.code).toBe('UNSUPPORTED_MODEL');
    expect(err.message).toBe('model has no outputs');
  });

  it('refuses what is not ONNX: empty, garbage, text, truncated, graphless, unloadable', async () => {
    const fixture = await readFile(PLAIN);
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['empty', new Uint8Array(0), /the file is empty/],
      [
        'garbage',
        Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256),
        /protobuf decoding failed|no graph/,
      ],
      ['text', Buffer.from('{"this": "is json, not onnx"}\n'), /protobuf decoding failed|no graph/],
      ['truncated', fixture.subarray(0, Math.floor(fixture.length / 2)), /protobuf decoding failed/],
      ['only an ir_version', new Uint8Array([0x08, 0x07]), /no graph/],
      ['a graph without nodes', encodeModel({ input: [valueInfo('x', FLOAT, ['N', 1, 2, 2])] }), /no nodes/],
      [
        'an unknown operator',
        encodeModel({
          input: [valueInfo('x', FLOAT, ['N', 1, 2, 2])],
          output: [valueInfo('y', FLOAT)],
          node: [{ opType: 'NoSuchOp', input: ['x'], output: ['y'] }],
        }),
        /ONNX Runtime cannot load the model: .*NoSuchOp/,
      ],
    ];
    for (const [what, bytes, reason] of cases) {
      const err = await refusal(bytes);
      expect([what, err.status, err.code]).toEqual([what, 422, 'INVALID_MODEL']);
      expect(err.message, what).toMatch(reason);
      expect(err.message, what).not.toContain(dir);
    }
  });

  it('refuses value names PostgreSQL could not store (NUL characters)', async () => {
    const bytes = encodeModel({
      input: [valueInfo('x', FLOAT, ['N', 1, 2, 2])],
      output: [valueInfo('y', FLOAT)],
      node: [
        { opType: 'Relu', input: ['x'], output: ['r\u0000'] },
        { opType: 'Neg', input: ['r\u0000'], output: ['y'] },
      ],
    });
    const err = await refusal(bytes);
    expect(err.code).toBe('UNSUPPORTED_MODEL');
    expect(err.message).toMatch(/NUL/);
  });

  it('reads large files through a window: the same result as parsing the bytes in memory', async () => {
    // A 1.2 MB initializer (float_data, not raw_data) between the nodes, well over the 256 KiB window.
    const weights = Array.from({ length: 300_000 }, (_, i) => i % 7);
    const bytes = encodeModel({
      input: [valueInfo('x', FLOAT, ['N', 1, 2, 2])],
      output: [valueInfo('y', FLOAT, ['N', 1, 2, 2])],
      initializer: [
        { name: 'big', dims: [300_000], dataType: FLOAT, floatData: weights },
        floatTensor('w', [1], [2]),
      ],
      node: [
        { opType: 'Relu', input: ['x'], output: ['r'] },
        { opType: 'Mul', input: ['r', 'w'], output: ['y'] },
      ],
    });
    expect(bytes.length).toBeGreaterThan(1_200_000);
    const file = await fileOf(bytes);
    const fromFile = parseOnnxFile(file);
    expect(fromFile).toEqual(parseOnnx(bytes));
    expect([...(fromFile.graph?.initializers.keys() ?? [])]).toEqual(['big', 'w']);
    const info = await inspectModel(file);
    expect(info.layers).toEqual([
      { name: 'r', opType: 'Relu', shape: ['N', 1, 2, 2], type: 'float32', measurable: true },
      { name: 'y', opType: 'Mul', shape: ['N', 1, 2, 2], type: 'float32', measurable: true },
    ]);
  });

  it('refuses subgraphs nested without bound', async () => {
    let graph: onnxProto.onnx.IGraphProto = { name: 'leaf', node: [] };
    for (let i = 0; i < 40; i++) {
      graph = {
        name: `g${i}`,
        node: [
          {
            opType: 'If',
            input: ['c'],
            output: ['o'],
            attribute: [{ name: 'then_branch', type: 5, g: graph }],
          },
        ],
      };
    }
    const bytes = encodeModel({
      input: [valueInfo('x', FLOAT, ['N', 1, 2, 2])],
      output: [valueInfo('y', FLOAT)],
      node: [...(graph.node ?? []), { opType: 'Relu', input: ['x'], output: ['y'] }],
    });
    const err = await refusal(bytes);
    expect(err.code).toBe('INVALID_MODEL');
    expect(err.message).toMatch(/nested deeper than 32/);
  });
});

describe('withExtraOutputs', () => {
  it('exposes chosen layers as outputs that ONNX Runtime returns with the right shapes', async () => {
    const original = new Uint8Array(await readFile(PLAIN));
    const copyOfOriginal = original.slice();
    const names = ['/Relu_output_0', '/Relu_1_output_0', '/Relu_2_output_0', 'logits'];
    const bytes = withExtraOutputs(original, names);
    // Lossless: the original bytes, untouched, followed by the appended outputs.
    expect(Buffer.compare(original, copyOfOriginal)).toBe(0);
    expect(Buffer.compare(bytes.subarray(0, original.length), original)).toBe(0);
    expect(parseOnnx(bytes).graph?.outputs.map((o) => o.name)).toEqual([
      'logits',
      '/Relu_output_0',
      '/Relu_1_output_0',
      '/Relu_2_output_0',
    ]);

    const session = await ort.InferenceSession.create(bytes);
    const plain = await ort.InferenceSession.create(PLAIN);
    try {
      expect(session.outputNames).toEqual([
        'logits',
        '/Relu_output_0',
        '/Relu_1_output_0',
        '/Relu_2_output_0',
      ]);
      const x = Float32Array.from({ length: 3 * 784 }, (_, i) => ((i * 37) % 101) / 101);
      const input = new ort.Tensor('float32', x, [3, 1, 28, 28]);
      const out = await session.run({ input });
      expect(out['/Relu_output_0'].dims).toEqual([3, 16, 28, 28]);
      expect(out['/Relu_1_output_0'].dims).toEqual([3, 32, 14, 14]);
      expect(out['/Relu_2_output_0'].dims).toEqual([3, 128]);
      expect(out.logits.dims).toEqual([3, 10]);
      const reference = await plain.run({ input });
      expect(Array.from(out.logits.data as Float32Array)).toEqual(
        Array.from(reference.logits.data as Float32Array),
      );
      // ReLU outputs are non-negative and not all zero.
      const relu = out['/Relu_2_output_0'].data as Float32Array;
      expect(relu.every((v) => v >= 0)).toBe(true);
      expect(relu.some((v) => v > 0)).toBe(true);
    } finally {
      await session.release();
      await plain.release();
    }
  });

  it('also works file to file, leaving the source untouched', async () => {
    const dest = path.join(dir, 'with-outputs.onnx');
    await copyWithExtraOutputs(PLAIN, dest, ['/Relu_1_output_0']);
    const original = await readFile(PLAIN);
    const copy = await readFile(dest);
    expect(copy.subarray(0, original.length).equals(original)).toBe(true);
    expect(copy.equals(Buffer.from(withExtraOutputs(original, ['/Relu_1_output_0'])))).toBe(true);
    const session = await ort.InferenceSession.create(dest);
    try {
      const out = await session.run({
        input: new ort.Tensor('float32', new Float32Array(784), [1, 1, 28, 28]),
      });
      expect(out['/Relu_1_output_0'].dims).toEqual([1, 32, 14, 14]);
    } finally {
      await session.release();
    }
  });

  it('refuses names that are not values of the main graph', async () => {
    const bytes = tinyClassifier();
    expect(() => withExtraOutputs(bytes, ['nope'])).toThrow(RangeError);
    expect(withExtraOutputs(bytes, []).length).toBe(bytes.length);
  });
});

// What the runs on zeros at upload find out (batch 1 and 2 for a symbolic batch).
describe('inspectModel: what running the model on zeros reveals', () => {
  it('marks layers normalized variance cannot be measured on: not float32, or not batch first', async () => {
    const bytes = mixedLayersModel();
    const info = await inspectModel(await fileOf(bytes));
    const byName = new Map(info.layers.map((l) => [l.name, l]));
    expect([...byName.keys()]).toEqual(['r', 'h', 'h32', 't', 'f', 'm', 'y']);
    for (const name of ['r', 'h32', 'y'])
      expect(byName.get(name)).toMatchObject({ type: 'float32', measurable: true });
    expect(byName.get('h')).toMatchObject({ type: 'float16', measurable: false });
    expect(byName.get('h')?.reason).toMatch(/float16/);
    for (const name of ['t', 'f', 'm']) {
      expect(byName.get(name)).toMatchObject({ type: 'float32', measurable: false });
      expect(byName.get(name)?.reason).toMatch(/batch/);
    }
    expect(byName.get('t')?.shape).toEqual([1, 'N', 4, 4]);
  });

  it('resolves a symbolic class dim of the output to its size', async () => {
    const bytes = symbolicClassesModel();
    const info = await inspectModel(await fileOf(bytes));
    expect(info.outputs).toEqual([{ name: 'y', type: 'float32', shape: ['N', 10] }]);
  });

  it('records the batch of 1 that a model with a symbolic batch really takes', async () => {
    const bytes = encodeModel({
      input: [valueInfo('x', FLOAT, ['N', 1, 4, 4])],
      output: [valueInfo('y', FLOAT)],
      initializer: [int64Tensor('one', [2], [1, 16])],
      node: [{ opType: 'Reshape', input: ['x', 'one'], output: ['y'] }],
    });
    const info = await inspectModel(await fileOf(bytes));
    expect(info.inputs[0].shape).toEqual([1, 1, 4, 4]);
    expect(info.outputs[0].shape).toEqual([1, 16]);
    expect(info.layers[0]).toMatchObject({ name: 'y', measurable: true });
  });

  it('refuses a model that cannot run on any input (422 INVALID_MODEL) and one with a 0-sized input dim', async () => {
    const failing = failingReshapeModel();
    const err = await refusal(failing);
    expect(err.code).toBe('INVALID_MODEL');
    expect(err.message).toMatch(/cannot run the model on an all-zero input \[1,1,4,4\]/);
    for (const dims of [
      ['N', 1, 0, 0],
      [0, 1, 28, 28],
    ]) {
      const empty = reluModel(dims);
      const e = await refusal(empty);
      expect(e.code).toBe('UNSUPPORTED_MODEL');
      expect(e.message).toMatch(/size 0/);
    }
  });
});
