// A small, typed builder for ONNX models, on top of the protobufjs messages of `onnx-proto`.
//
//   const b = new OnnxModelBuilder({ opset: 17 });
//   b.input('x', 'float32', ['N', 4]);
//   b.initializer('W', new Float32Array([...]), [4, 3]);
//   b.node('Gemm', ['x', 'W'], ['y'], { transB: 0, alpha: float(1) });
//   b.output('y', 'float32', ['N', 3]);
//   const bytes = b.toBytes(); // feed to ort.InferenceSession.create(bytes)
//
// Attribute values: a `number` (or number[]) is an INT (INTS) attribute, a `string` (string[]) a
// STRING (STRINGS) one; floats must be wrapped with `float()` / `floats()` (ONNX Runtime checks the
// attribute type, and `1` vs `1.0` cannot be told apart in JavaScript); `tensorAttr()` for tensors.
import { endianness } from 'node:os';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export type OnnxDType = 'float32' | 'float64' | 'float16' | 'int8' | 'uint8' | 'int32' | 'int64' | 'bool';

const DTYPE_CODE: Record<OnnxDType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int8: onnx.TensorProto.DataType.INT8,
  uint8: onnx.TensorProto.DataType.UINT8,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
};

/** ONNX TensorProto.DataType code of a dtype. */
export function dtypeCode(dtype: OnnxDType): number {
  return DTYPE_CODE[dtype];
}

/** A dimension: a fixed size, a symbolic name (e.g. 'N'), or null for unknown. */
export type Dim = number | string | null;

/** Tensor data accepted for initializers and tensor attributes. */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int32Array
  | BigInt64Array
  | readonly number[];

export interface TensorValue {
  dtype: OnnxDType;
  dims: readonly number[];
  data: TensorData;
}

export type AttributeValue =
  | number
  | readonly number[]
  | string
  | readonly string[]
  | { readonly kind: 'float'; readonly value: number }
  | { readonly kind: 'floats'; readonly value: readonly number[] }
  | { readonly kind: 'tensor'; readonly value: TensorValue };

/** A FLOAT attribute. */
export function float(value: number): AttributeValue {
  return { kind: 'float', value };
}

/** A FLOATS attribute. */
export function floats(value: readonly number[]): AttributeValue {
  return { kind: 'floats', value };
}

/** A TENSOR attribute (e.g. for Constant's `value`). */
export function tensorAttr(value: TensorValue): AttributeValue {
  return { kind: 'tensor', value };
}

export interface OnnxModelBuilderOptions {
  /** Default-domain opset version (default 17). */
  opset?: number;
  /** IR version (default 8, which every opset up to 17 needs and onnx-proto knows). */
  irVersion?: number;
  graphName?: string;
  producerName?: string;
  /** Extra operator-set imports, e.g. { 'com.microsoft': 1 }. */
  extraOpsets?: Record<string, number>;
}

export interface NodeOptions {
  name?: string;
  domain?: string;
}

type ValueInfo = InstanceType<typeof onnx.ValueInfoProto>;
type TensorProto = InstanceType<typeof onnx.TensorProto>;
type NodeProto = InstanceType<typeof onnx.NodeProto>;

const LITTLE_ENDIAN = endianness() === 'LE';

function inferDType(data: TensorData): OnnxDType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  return 'float32';
}

function rawBytes(dtype: OnnxDType, data: TensorData): Uint8Array {
  let typed: ArrayBufferView;
  switch (dtype) {
    case 'float32':
      typed = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
      break;
    case 'float64':
      typed = data instanceof Float64Array ? data : Float64Array.from(data as ArrayLike<number>);
      break;
    case 'int8':
      typed = data instanceof Int8Array ? data : Int8Array.from(data as ArrayLike<number>);
      break;
    case 'uint8':
    case 'bool':
      typed =
        data instanceof Uint8Array ? data : Uint8Array.from(data as ArrayLike<number>, (v) => Number(v));
      break;
    case 'int32':
      typed = data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>);
      break;
    case 'int64':
      typed =
        data instanceof BigInt64Array
          ? data
          : BigInt64Array.from(Array.from(data as ArrayLike<number>, (v) => BigInt(Math.trunc(Number(v)))));
      break;
    case 'float16':
      if (!(data instanceof Uint8Array) && !(data instanceof Int8Array)) {
        throw new Error('float16 tensors take their raw bytes (Uint8Array, little-endian)');
      }
      typed = data;
      break;
  }
  if (!LITTLE_ENDIAN) throw new Error('ONNX raw_data is little-endian; big-endian hosts are not supported');
  // Copy: the message must not alias a buffer that the caller may change later.
  return new Uint8Array(typed.buffer.slice(typed.byteOffset, typed.byteOffset + typed.byteLength));
}

function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Builds a TensorProto (raw_data encoding). */
export function makeTensor(name: string, value: TensorValue): TensorProto {
  const { dtype, dims, data } = value;
  const expected = elementCount(dims);
  const length = data.length;
  if (dtype !== 'float16' && length !== expected) {
    throw new Error(`tensor ${name}: ${length} values for dims [${dims.join(', ')}] (${expected} expected)`);
  }
  return onnx.TensorProto.create({
    name,
    dataType: DTYPE_CODE[dtype],
    dims: [...dims],
    rawData: rawBytes(dtype, data),
  });
}

function makeValueInfo(name: string, dtype: OnnxDType, shape: readonly Dim[] | null): ValueInfo {
  const tensorType: { elemType: number; shape?: InstanceType<typeof onnx.TensorShapeProto> } = {
    elemType: DTYPE_CODE[dtype],
  };
  if (shape) {
    tensorType.shape = onnx.TensorShapeProto.create({
      dim: shape.map((d) =>
        typeof d === 'number'
          ? onnx.TensorShapeProto.Dimension.create({ dimValue: d })
          : typeof d === 'string'
            ? onnx.TensorShapeProto.Dimension.create({ dimParam: d })
            : onnx.TensorShapeProto.Dimension.create({}),
      ),
    });
  }
  return onnx.ValueInfoProto.create({ name, type: onnx.TypeProto.create({ tensorType }) });
}

const utf8 = new TextEncoder();

function makeAttribute(name: string, value: AttributeValue) {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) {
      throw new Error(`attribute ${name}: ${value} is not an integer; wrap floats with float()`);
    }
    return onnx.AttributeProto.create({ name, type: A.INT, i: value });
  }
  if (typeof value === 'string') {
    return onnx.AttributeProto.create({ name, type: A.STRING, s: utf8.encode(value) });
  }
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'string')) {
      return onnx.AttributeProto.create({
        name,
        type: A.STRINGS,
        strings: (value as readonly string[]).map((s) => utf8.encode(s)),
      });
    }
    const ints = value as readonly number[];
    for (const v of ints) {
      if (!Number.isInteger(v)) throw new Error(`attribute ${name}: ${v} is not an integer; use floats()`);
    }
    return onnx.AttributeProto.create({ name, type: A.INTS, ints: [...ints] });
  }
  const tagged = value as Exclude<AttributeValue, number | string | readonly number[] | readonly string[]>;
  switch (tagged.kind) {
    case 'float':
      return onnx.AttributeProto.create({ name, type: A.FLOAT, f: tagged.value });
    case 'floats':
      return onnx.AttributeProto.create({ name, type: A.FLOATS, floats: [...tagged.value] });
    case 'tensor':
      return onnx.AttributeProto.create({ name, type: A.TENSOR, t: makeTensor('', tagged.value) });
  }
}

export class OnnxModelBuilder {
  readonly opset: number;
  private readonly irVersion: number;
  private readonly graphName: string;
  private readonly producerName: string;
  private readonly extraOpsets: Record<string, number>;
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly valueInfos: ValueInfo[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly nodes: NodeProto[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  constructor(options: OnnxModelBuilderOptions = {}) {
    this.opset = options.opset ?? 17;
    this.irVersion = options.irVersion ?? 8;
    this.graphName = options.graphName ?? 'graph';
    this.producerName = options.producerName ?? 'invariance-service';
    this.extraOpsets = options.extraOpsets ?? {};
  }

  /** A fresh value name that no other value of this builder uses. */
  fresh(prefix = 't'): string {
    let name: string;
    do {
      name = `${prefix}_${this.counter++}`;
    } while (this.names.has(name));
    this.names.add(name);
    return name;
  }

  private claim(name: string): void {
    this.names.add(name);
  }

  /** Declares a graph input. `shape` null = rank unknown. */
  input(name: string, dtype: OnnxDType, shape: readonly Dim[] | null): this {
    this.claim(name);
    this.inputs.push(makeValueInfo(name, dtype, shape));
    return this;
  }

  /** Declares a graph output (shape optional: ONNX Runtime infers it). */
  output(name: string, dtype: OnnxDType, shape: readonly Dim[] | null = null): this {
    this.outputs.push(makeValueInfo(name, dtype, shape));
    return this;
  }

  /** Declares the type/shape of an intermediate value (optional; helps shape inference). */
  valueInfo(name: string, dtype: OnnxDType, shape: readonly Dim[] | null): this {
    this.valueInfos.push(makeValueInfo(name, dtype, shape));
    return this;
  }

  /**
   * Adds a constant tensor. dtype is inferred from a typed array (Float32Array -> float32,
   * BigInt64Array -> int64, ...) unless given; plain number arrays default to float32.
   */
  initializer(name: string, data: TensorData, dims: readonly number[], dtype?: OnnxDType): this {
    this.claim(name);
    this.initializers.push(makeTensor(name, { dtype: dtype ?? inferDType(data), dims, data }));
    return this;
  }

  /** Adds a constant with a fresh name and returns the name. */
  constant(data: TensorData, dims: readonly number[], dtype?: OnnxDType, prefix = 'const'): string {
    const name = this.fresh(prefix);
    this.initializers.push(makeTensor(name, { dtype: dtype ?? inferDType(data), dims, data }));
    return name;
  }

  /** An int64 constant (shapes, axes, pads) with a fresh name. Scalars for dims []. */
  int64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.constant(values, dims, 'int64', 'i64');
  }

  /** A float32 constant with a fresh name. Scalars for dims []. */
  float32(values: readonly number[] | Float32Array, dims: readonly number[] = [values.length]): string {
    return this.constant(
      values instanceof Float32Array ? values : Float32Array.from(values),
      dims,
      'float32',
      'f32',
    );
  }

  /** Adds a node. Empty strings in `inputs` mark omitted optional inputs. */
  node(
    opType: string,
    inputs: readonly string[],
    outputs: readonly string[],
    attributes: Record<string, AttributeValue> = {},
    options: NodeOptions = {},
  ): this {
    for (const o of outputs) this.claim(o);
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: [...inputs],
        output: [...outputs],
        name: options.name ?? `${opType}_${this.nodes.length}`,
        domain: options.domain ?? '',
        attribute: Object.entries(attributes).map(([k, v]) => makeAttribute(k, v)),
      }),
    );
    return this;
  }

  /** Adds a single-output node with a fresh output name and returns that name. */
  op(
    opType: string,
    inputs: readonly string[],
    attributes: Record<string, AttributeValue> = {},
    options: NodeOptions = {},
  ): string {
    const out = this.fresh(opType.toLowerCase());
    this.node(opType, inputs, [out], attributes, options);
    return out;
  }

  /** The ModelProto message (for callers that want to inspect or extend it). */
  toProto(): InstanceType<typeof onnx.ModelProto> {
    const opsetImport = [
      onnx.OperatorSetIdProto.create({ domain: '', version: this.opset }),
      ...Object.entries(this.extraOpsets).map(([domain, version]) =>
        onnx.OperatorSetIdProto.create({ domain, version }),
      ),
    ];
    return onnx.ModelProto.create({
      irVersion: this.irVersion,
      producerName: this.producerName,
      opsetImport,
      graph: onnx.GraphProto.create({
        name: this.graphName,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
        valueInfo: this.valueInfos,
      }),
    });
  }

  /** Serialised model, ready for `InferenceSession.create(bytes)`. */
  toBytes(): Uint8Array {
    return onnx.ModelProto.encode(this.toProto()).finish();
  }
}
