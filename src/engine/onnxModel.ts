// Inspection of an ONNX model file, and the graph surgery the evaluation engine needs.
//
// The protobuf is walked field by field through a small window over the file (small messages
// such as ValueInfoProto and OperatorSetIdProto are decoded with onnx-proto's generated code).
// Neither the file nor a full decode is held in memory: tensor payloads are skipped by offset
// (only names, types and data locations are read), so a model of any size costs the memory of
// its graph structure, and `float_data` tensors never become JS arrays of numbers.
//
// Then an onnxruntime-node session is created from the file to prove that it loads, and a
// second one, from an in-memory copy with every node output exposed as a graph output, gives
// the types and shapes ONNX Runtime infers for the intermediate values (the layers). Then runs
// on a zero input of batch 1 and 2 (to tell batch-dependent dims apart) reveal what inference
// leaves symbolic or unknown, which layers are batch first (NV needs that), and a model that
// cannot run at all, which is refused.
import { randomUUID } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { appendFile, copyFile, rm } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { AppError } from '../http/problem.js';

const { onnx } = onnxProto;

/** A dimension: a size, a symbolic name (e.g. the batch dim 'N'), or null when unknown. */
export type Dim = number | string | null;

export interface TensorInfo {
  name: string;
  /** Element type for tensors ('float32', 'int64', ...); 'sequence', 'map', ... otherwise. */
  type: string;
  /** null when the rank is unknown. */
  shape: Dim[] | null;
}

export interface LayerInfo {
  /** ONNX value name, e.g. '/Relu_output_0'. */
  name: string;
  /** Op type of the node that produces it. */
  opType: string;
  shape: Dim[] | null;
  /** Element type: float32, float16, ... (absent in models stored before it was recorded). */
  type?: string;
  /**
   * Whether normalized variance can be measured on it: a float32 tensor whose first dimension
   * is the batch (absent, i.e. assumed, in models stored before it was recorded).
   */
  measurable?: boolean;
  /** Why it is not measurable. */
  reason?: string;
}

export interface ModelInfo {
  /** Version of the default (ai.onnx) operator set; null if the model does not import it. */
  opset: number | null;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  /** Float tensors produced by nodes of the main graph that depend on the input, in node order. */
  layers: LayerInfo[];
  /** Outputs a Softmax produces (directly or through reshapes): already probability vectors. */
  probabilityOutputs: string[];
}

export interface InspectOptions {
  /** Find missing layer types and shapes with ONNX Runtime (default true). */
  probe?: boolean;
  /** Skip the probe for larger model files (default 256 MiB). */
  maxProbeBytes?: number;
  /** Skip the probe for graphs with more node outputs than this (default 5000). */
  maxProbeValues?: number;
  /** Skip the probe run when one input sample has more elements than this (default 4 Mi). */
  maxProbeInputElements?: number;
}

// ---------------------------------------------------------------------------------------------
// Types

const ELEM_TYPES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  14: 'complex64',
  15: 'complex128',
  16: 'bfloat16',
  17: 'float8e4m3fn',
  18: 'float8e4m3fnuz',
  19: 'float8e5m2',
  20: 'float8e5m2fnuz',
  21: 'uint4',
  22: 'int4',
  23: 'float4e2m1',
};

/** Name of an ONNX TensorProto.DataType code. */
export function elemTypeName(code: number): string {
  return ELEM_TYPES[code] ?? `unknown(${code})`;
}

/** Element types whose values count as activations (layers). */
const LAYER_TYPES = new Set(['float32', 'float16', 'float64', 'bfloat16']);
/** Element types accepted for the image input. */
const INPUT_TYPES = new Set(['float32', 'float16', 'float64']);

// ---------------------------------------------------------------------------------------------
// Parsing

interface RawValueInfo {
  name: string;
  /** Element type name for tensors, the kind otherwise, null when no type is given. */
  type: string | null;
  /** TensorProto.DataType code for tensors, else 0. */
  code: number;
  isTensor: boolean;
  shape: Dim[] | null;
}

interface RawAttr {
  i: number | null;
  tensorType: number | null;
}

interface RawNode {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Map<string, RawAttr>;
  /** Names that subgraphs (If/Loop/Scan bodies) read, i.e. implicit inputs. */
  subgraphRefs: string[];
}

interface RawGraph {
  nodes: RawNode[];
  inputs: RawValueInfo[];
  outputs: RawValueInfo[];
  valueInfo: RawValueInfo[];
  /** Initializer name -> data type code. */
  initializers: Map<string, number>;
}

export interface ParsedModel {
  irVersion: number | null;
  opset: number | null;
  graph: RawGraph | null;
}

class ParseError extends Error {}

const MAX_SUBGRAPH_DEPTH = 32;
/** Nodes, value infos and initializers, over all graphs: a cap on the memory parsing can take. */
const MAX_ITEMS = 1_000_000;
/** Largest message decoded in memory (a ValueInfoProto, an OperatorSetIdProto). */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const MAX_STRING_BYTES = 1024 * 1024;
const WINDOW_BYTES = 256 * 1024;
const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/** Where the protobuf bytes come from: memory, or a file read piece by piece. */
interface ByteSource {
  readonly size: number;
  byteAt(offset: number): number;
  /** A view or copy of [offset, offset+length); the caller checked the bounds. */
  slice(offset: number, length: number): Uint8Array;
}

class MemorySource implements ByteSource {
  constructor(private readonly buf: Uint8Array) {}
  get size() {
    return this.buf.length;
  }
  byteAt(offset: number) {
    return this.buf[offset];
  }
  slice(offset: number, length: number) {
    return this.buf.subarray(offset, offset + length);
  }
}

/**
 * Reads a file through a small window, so that a model is never held whole in memory: the
 * walk skips tensor payloads by offset and reads only the structure around them.
 */
class FileSource implements ByteSource {
  private window: Buffer = Buffer.alloc(0);
  private windowStart = 0;
  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  private readAt(offset: number, length: number): Buffer {
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, length - done, offset + done);
      if (n === 0) throw new ParseError('the file ended while it was being read');
      done += n;
    }
    return buf;
  }

  byteAt(offset: number) {
    const i = offset - this.windowStart;
    if (i < 0 || i >= this.window.length) {
      this.window = this.readAt(offset, Math.min(WINDOW_BYTES, this.size - offset));
      this.windowStart = offset;
      return this.window[0];
    }
    return this.window[i];
  }

  slice(offset: number, length: number) {
    const i = offset - this.windowStart;
    if (i >= 0 && i + length <= this.window.length) return this.window.subarray(i, i + length);
    return this.readAt(offset, length);
  }
}

const utf8 = new TextDecoder('utf-8');

/** A position inside one protobuf message, [pos, end) of a source. */
class Cursor {
  constructor(
    private readonly src: ByteSource,
    public pos: number,
    readonly end: number,
  ) {}

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ParseError(`a number is cut off at byte ${this.pos}`);
      const b = this.src.byteAt(this.pos++);
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new ParseError(`malformed varint at byte ${this.pos}`);
  }

  /** A signed 64-bit varint (exact below 2^53, which is all ONNX needs). */
  int64(): number {
    const v = this.varint();
    return v >= 2 ** 63 ? v - 2 ** 64 : v;
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) {
      throw new ParseError(
        `a field of ${n} bytes at byte ${this.pos} runs past the end of its message ` +
          `(${this.end - this.pos} bytes left)`,
      );
    }
    this.pos += n;
  }

  /** The length-delimited field that follows, as a cursor of its own. */
  message(): Cursor {
    const n = this.varint();
    const start = this.pos;
    this.advance(n);
    return new Cursor(this.src, start, start + n);
  }

  bytes(max: number): Uint8Array {
    const n = this.varint();
    if (n > max)
      throw new ParseError(`a field of ${n} bytes at byte ${this.pos} is larger than ${max} bytes`);
    const start = this.pos;
    this.advance(n);
    return this.src.slice(start, n);
  }

  string(): string {
    return utf8.decode(this.bytes(MAX_STRING_BYTES));
  }

  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_I64:
        this.advance(8);
        return;
      case WIRE_LEN:
        this.advance(this.varint());
        return;
      case WIRE_I32:
        this.advance(4);
        return;
      default:
        throw new ParseError(`invalid wire type ${wire} at byte ${this.pos}`);
    }
  }
}

interface ParseContext {
  items: number;
}

function count(ctx: ParseContext): void {
  if (++ctx.items > MAX_ITEMS) {
    throw new ParseError(`the model has more than ${MAX_ITEMS} nodes, values and initializers`);
  }
}

function readFields(c: Cursor, visit: (c: Cursor, field: number, wire: number) => void): void {
  while (c.pos < c.end) {
    const at = c.pos;
    const tag = c.varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) throw new ParseError(`invalid protobuf field number 0 at byte ${at}`);
    visit(c, field, wire);
  }
}

function emptyGraph(): RawGraph {
  return { nodes: [], inputs: [], outputs: [], valueInfo: [], initializers: new Map() };
}

function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v && typeof v === 'object' && 'toNumber' in v && typeof v.toNumber === 'function') {
    return Number(v.toNumber());
  }
  return Number(v);
}

/** Reads a TensorProto's metadata, refusing external data. Returns name and data type. */
function visitTensor(c: Cursor, where: string): { name: string; dataType: number } {
  let name = '';
  let dataType = 0;
  let location = 0;
  let externalEntries = 0;
  readFields(c, (r, field, wire) => {
    if (field === 8 && wire === WIRE_LEN) name = r.string();
    else if (field === 2 && wire === WIRE_VARINT) dataType = r.int64();
    else if (field === 14 && wire === WIRE_VARINT) location = r.int64();
    else if (field === 13 && wire === WIRE_LEN) {
      externalEntries++;
      r.skip(wire);
    } else r.skip(wire);
  });
  if (location === 1 || externalEntries > 0) {
    throw new AppError(
      422,
      'EXTERNAL_DATA_UNSUPPORTED',
      `tensor ${name ? `"${name}" ` : ''}(${where}) keeps its data in an external file; ` +
        'only self-contained models are accepted (save the model with all tensors inside the .onnx file)',
    );
  }
  return { name, dataType };
}

function visitSparseTensor(c: Cursor, where: string): string {
  let name = '';
  readFields(c, (r, field, wire) => {
    if (field === 1 && wire === WIRE_LEN) name = visitTensor(r.message(), where).name;
    else if (field === 2 && wire === WIRE_LEN) visitTensor(r.message(), where);
    else r.skip(wire);
  });
  return name;
}

function toDims(shape: onnxProto.onnx.ITensorShapeProto | null | undefined): Dim[] | null {
  if (!shape) return null;
  return (shape.dim ?? []).map((d): Dim => {
    if (Object.hasOwn(d, 'dimValue') && d.dimValue !== null && d.dimValue !== undefined) {
      const v = toNumber(d.dimValue);
      return Number.isSafeInteger(v) && v >= 0 ? v : null;
    }
    if (typeof d.dimParam === 'string' && d.dimParam !== '') return d.dimParam;
    return null;
  });
}

function visitValueInfo(c: Cursor, ctx: ParseContext): RawValueInfo {
  count(ctx);
  const v = onnx.ValueInfoProto.decode(c.bytes(MAX_MESSAGE_BYTES));
  const t = v.type;
  const base = { name: v.name ?? '' };
  if (!t) return { ...base, type: null, code: 0, isTensor: false, shape: null };
  if (t.tensorType) {
    const code = t.tensorType.elemType ?? 0;
    return {
      ...base,
      type: code ? elemTypeName(code) : null,
      code,
      isTensor: true,
      shape: toDims(t.tensorType.shape),
    };
  }
  const kind = t.sequenceType
    ? 'sequence'
    : t.mapType
      ? 'map'
      : t.optionalType
        ? 'optional'
        : t.sparseTensorType
          ? 'sparse_tensor'
          : null;
  return { ...base, type: kind, code: 0, isTensor: false, shape: null };
}

/** Every name a (sub)graph's nodes read, including those of nested subgraphs. */
function graphReads(g: RawGraph): string[] {
  const names = new Set<string>();
  for (const n of g.nodes) {
    for (const i of n.inputs) if (i) names.add(i);
    for (const i of n.subgraphRefs) names.add(i);
  }
  return [...names];
}

function visitNode(c: Cursor, depth: number, ctx: ParseContext): RawNode {
  count(ctx);
  const node: RawNode = {
    opType: '',
    domain: '',
    inputs: [],
    outputs: [],
    attrs: new Map(),
    subgraphRefs: [],
  };
  const refs: string[] = [];
  const subgraph = (sub: Cursor) => {
    const g = emptyGraph();
    parseGraphInto(g, sub, depth + 1, `a subgraph of a ${node.opType || 'node'}`, ctx);
    refs.push(...graphReads(g));
  };
  readFields(c, (r, field, wire) => {
    if (wire !== WIRE_LEN) return void r.skip(wire);
    if (field === 1) node.inputs.push(r.string());
    else if (field === 2) node.outputs.push(r.string());
    else if (field === 4) node.opType = r.string();
    else if (field === 7) node.domain = r.string();
    else if (field === 5) {
      let name = '';
      const attr: RawAttr = { i: null, tensorType: null };
      readFields(r.message(), (ar, af, aw) => {
        const where = `attribute of a ${node.opType || 'node'}`;
        if (af === 1 && aw === WIRE_LEN) name = ar.string();
        else if (af === 3 && aw === WIRE_VARINT) attr.i = ar.int64();
        else if (af === 5 && aw === WIRE_LEN) attr.tensorType = visitTensor(ar.message(), where).dataType;
        else if (af === 10 && aw === WIRE_LEN) visitTensor(ar.message(), where);
        else if ((af === 22 || af === 23) && aw === WIRE_LEN) visitSparseTensor(ar.message(), where);
        else if ((af === 6 || af === 11) && aw === WIRE_LEN) subgraph(ar.message());
        else ar.skip(aw);
      });
      node.attrs.set(name, attr);
    } else r.skip(wire);
  });
  node.subgraphRefs = refs;
  return node;
}

/** Parses a GraphProto into `g`; repeated fields append, as protobuf merges repeated messages. */
function parseGraphInto(g: RawGraph, c: Cursor, depth: number, where: string, ctx: ParseContext): void {
  if (depth > MAX_SUBGRAPH_DEPTH) {
    throw new ParseError(`subgraphs are nested deeper than ${MAX_SUBGRAPH_DEPTH} levels`);
  }
  readFields(c, (r, field, wire) => {
    if (wire !== WIRE_LEN) return void r.skip(wire);
    switch (field) {
      case 1:
        g.nodes.push(visitNode(r.message(), depth, ctx));
        break;
      case 5: {
        count(ctx);
        const t = visitTensor(r.message(), `initializer in ${where}`);
        g.initializers.set(t.name, t.dataType);
        break;
      }
      case 15:
        count(ctx);
        g.initializers.set(visitSparseTensor(r.message(), `sparse initializer in ${where}`), 0);
        break;
      case 11:
        g.inputs.push(visitValueInfo(r, ctx));
        break;
      case 12:
        g.outputs.push(visitValueInfo(r, ctx));
        break;
      case 13:
        g.valueInfo.push(visitValueInfo(r, ctx));
        break;
      default:
        r.skip(wire);
    }
  });
}

function parseSource(src: ByteSource): ParsedModel {
  const model: ParsedModel = { irVersion: null, opset: null, graph: null };
  const ctx: ParseContext = { items: 0 };
  readFields(new Cursor(src, 0, src.size), (r, field, wire) => {
    if (field === 1 && wire === WIRE_VARINT) model.irVersion = r.int64();
    else if (field === 8 && wire === WIRE_LEN) {
      const op = onnx.OperatorSetIdProto.decode(r.bytes(MAX_MESSAGE_BYTES));
      if (!op.domain || op.domain === 'ai.onnx') model.opset = toNumber(op.version ?? 0);
    } else if (field === 7 && wire === WIRE_LEN) {
      model.graph ??= emptyGraph();
      parseGraphInto(model.graph, r.message(), 0, 'the main graph', ctx);
    } else if (field === 20 && wire === WIRE_LEN) {
      // TrainingInfoProto: initialization (1) and algorithm (2) graphs.
      readFields(r.message(), (tr, tf, tw) => {
        if ((tf === 1 || tf === 2) && tw === WIRE_LEN) {
          parseGraphInto(emptyGraph(), tr.message(), 1, 'training info', ctx);
        } else tr.skip(tw);
      });
    } else if (field === 25 && wire === WIRE_LEN) {
      // FunctionProto: nodes (7).
      readFields(r.message(), (fr, ff, fw) => {
        if (ff === 7 && fw === WIRE_LEN) visitNode(fr.message(), 1, ctx);
        else fr.skip(fw);
      });
    } else r.skip(wire);
  });
  return model;
}

/**
 * Parses the parts of a ModelProto that inspection needs. Throws AppError 422
 * EXTERNAL_DATA_UNSUPPORTED for any tensor with external data (in the main graph, subgraphs,
 * functions or training info), and other errors for malformed protobuf.
 */
export function parseOnnx(bytes: Uint8Array): ParsedModel {
  return parseSource(new MemorySource(bytes));
}

/** parseOnnx for a file, read through a small window instead of loaded whole. */
export function parseOnnxFile(filePath: string): ParsedModel {
  const fd = openSync(filePath, 'r');
  try {
    return parseSource(new FileSource(fd, fstatSync(fd).size));
  } finally {
    closeSync(fd);
  }
}

function invalid(reason: string): AppError {
  return new AppError(422, 'INVALID_MODEL', `not a valid ONNX model: ${reason}`);
}

function unsupported(reason: string): AppError {
  return new AppError(422, 'UNSUPPORTED_MODEL', reason);
}

function parseOrRefuse(filePath: string): ParsedModel & { graph: RawGraph } {
  let parsed: ParsedModel;
  try {
    if (statSync(filePath).size === 0) throw invalid('the file is empty');
    parsed = parseOnnxFile(filePath);
  } catch (err) {
    if (err instanceof AppError) throw err;
    // File system trouble is ours, not the model's.
    if (err instanceof Error && 'syscall' in err) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    throw invalid(`protobuf decoding failed (${reason}); the file is truncated or not ONNX`);
  }
  const graph = parsed.graph;
  if (!graph) throw invalid('the file has no graph (is it an ONNX model?)');
  if (graph.nodes.length === 0) throw invalid('the graph has no nodes');
  return { ...parsed, graph };
}

// ---------------------------------------------------------------------------------------------
// Checks

function formatShape(shape: Dim[] | null): string {
  return shape ? `[${shape.map((d) => d ?? '?').join(',')}]` : 'unknown';
}

function imageInput(graph: RawGraph): RawValueInfo {
  const inputs = graph.inputs.filter((i) => !graph.initializers.has(i.name));
  if (inputs.length !== 1) {
    const names = inputs.map((i) => i.name).join(', ');
    throw unsupported(
      `model has ${inputs.length} inputs${names ? ` (${names})` : ''}; exactly one image input is supported`,
    );
  }
  const input = inputs[0];
  if (!input.isTensor || !input.type || !INPUT_TYPES.has(input.type)) {
    throw unsupported(
      `input ${input.name} is ${input.type ?? 'of unknown type'}, expected a float tensor (float32, float16 or float64)`,
    );
  }
  if (input.shape?.length !== 4) {
    throw unsupported(
      `input ${input.name} has ${input.shape ? `rank ${input.shape.length}` : 'no declared shape'} ` +
        `(${formatShape(input.shape)}); expected rank 4, an NCHW or NHWC image batch`,
    );
  }
  if (input.shape.includes(0)) {
    // ONNX Runtime holds inputs to their declared sizes: this one only takes empty tensors.
    throw unsupported(
      `input ${input.name} declares a dimension of size 0 (${formatShape(input.shape)}); it can only take empty tensors`,
    );
  }
  if (graph.outputs.length === 0) throw unsupported('model has no outputs');
  return input;
}

// ---------------------------------------------------------------------------------------------
// ONNX Runtime

const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  executionProviders: ['cpu'],
  // No constant folding at load: a hostile model could make it allocate without bound.
  graphOptimizationLevel: 'disabled',
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  enableCpuMemArena: false,
  logSeverityLevel: 3,
};

interface ValueMeta {
  type: string | null;
  shape: Dim[] | null;
}

function metaOf(session: ort.InferenceSession): Map<string, ValueMeta> {
  const out = new Map<string, ValueMeta>();
  for (const m of session.outputMetadata ?? []) {
    if (!m.isTensor) continue;
    // ONNX Runtime reports '' for an unknown dim and [] for an unknown rank (or a scalar).
    const shape = m.shape.length === 0 ? null : m.shape.map((d): Dim => (d === '' || d === -1 ? null : d));
    out.set(m.name, { type: m.type, shape });
  }
  return out;
}

/** Creates a session from the file (never modified) to prove that ONNX Runtime loads it. */
async function proveLoads(filePath: string): Promise<Map<string, ValueMeta>> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(filePath, SESSION_OPTIONS);
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).replaceAll(filePath, '<upload>');
    throw new AppError(422, 'INVALID_MODEL', `ONNX Runtime cannot load the model: ${reason}`);
  }
  try {
    return metaOf(session);
  } finally {
    await session.release().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Graph surgery

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** The serialized `graph { output: [{name}, ...] }` fragment, to append to a ModelProto. */
function extraOutputsSuffix(names: readonly string[]): Uint8Array {
  return onnx.ModelProto.encode({ graph: { output: names.map((name) => ({ name })) } }).finish();
}

/** The names to append: known values of the main graph that are not outputs yet, deduplicated. */
function newOutputNames(parsed: ParsedModel, valueNames: readonly string[]): string[] {
  const graph = parsed.graph;
  if (!graph) throw new RangeError('the model has no graph');
  const existing = new Set(graph.outputs.map((o) => o.name));
  const known = new Set(graph.inputs.map((i) => i.name));
  for (const n of graph.nodes) for (const o of n.outputs) if (o) known.add(o);
  const names: string[] = [];
  for (const name of valueNames) {
    if (!known.has(name)) throw new RangeError(`no value named "${name}" in the model's main graph`);
    if (!existing.has(name)) {
      existing.add(name);
      names.push(name);
    }
  }
  return names;
}

/**
 * An in-memory copy of the model with `valueNames` added as graph outputs (the given bytes are
 * not modified). The model is not decoded and re-encoded: a second `graph` field holding only
 * the new outputs (ValueInfoProto with just a name) is appended, which protobuf parsers merge
 * into the first (repeated fields concatenate), so fields this code does not know survive.
 * ONNX Runtime infers the type and shape of outputs given by name only. Names that already are
 * graph outputs, and repeats, are skipped; a name that is neither produced by a node of the
 * main graph nor a graph input is a RangeError.
 */
export function withExtraOutputs(modelBytes: Uint8Array, valueNames: string[]): Uint8Array {
  const names = newOutputNames(parseOnnx(modelBytes), valueNames);
  return concatBytes(modelBytes, names.length ? extraOutputsSuffix(names) : new Uint8Array(0));
}

/** withExtraOutputs from file to file, for models one would rather not hold in memory. */
export async function copyWithExtraOutputs(
  srcPath: string,
  destPath: string,
  valueNames: string[],
): Promise<void> {
  const names = newOutputNames(parseOnnxFile(srcPath), valueNames);
  await copyFile(srcPath, destPath);
  if (names.length) await appendFile(destPath, extraOutputsSuffix(names));
}

// ---------------------------------------------------------------------------------------------
// Layers

const INT64_OPS = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin', 'NonMaxSuppression']);
const BOOL_OPS = new Set([
  'Equal',
  'Less',
  'Greater',
  'LessOrEqual',
  'GreaterOrEqual',
  'Not',
  'And',
  'Or',
  'Xor',
  'IsNaN',
  'IsInf',
]);
const SECOND_OUTPUT_INT64 = new Set(['TopK', 'MaxPool', 'Unique']);

/** A static guess of a node output's element type code, used only when nothing better is known. */
function staticType(node: RawNode, index: number, typeOf: (name: string) => number | null): number | null {
  if (node.domain !== '' && node.domain !== 'ai.onnx' && node.domain !== 'com.microsoft') return null;
  const attr = (name: string) => node.attrs.get(name);
  const first = node.inputs.find((i) => i !== '');
  const op = node.opType;
  if (INT64_OPS.has(op)) return 7;
  if (BOOL_OPS.has(op)) return 9;
  if (SECOND_OUTPUT_INT64.has(op) && index >= 1) return 7;
  switch (op) {
    case 'Cast':
      return attr('to')?.i ?? null;
    case 'CastLike':
      return node.inputs[1] ? typeOf(node.inputs[1]) : null;
    case 'Constant': {
      const value = attr('value')?.tensorType;
      if (value) return value;
      if (attr('value_float') || attr('value_floats')) return 1;
      if (attr('value_int') || attr('value_ints')) return 7;
      if (attr('value_string') || attr('value_strings')) return 8;
      return null;
    }
    case 'ConstantOfShape':
      return attr('value')?.tensorType ?? 1;
    case 'RandomNormal':
    case 'RandomUniform':
      return attr('dtype')?.i ?? 1;
    case 'RandomNormalLike':
    case 'RandomUniformLike':
    case 'EyeLike':
      return attr('dtype')?.i ?? (first ? typeOf(first) : null);
    case 'Multinomial':
      return attr('dtype')?.i ?? 6;
    case 'QuantizeLinear':
      return (node.inputs[2] ? typeOf(node.inputs[2]) : null) ?? 2;
    case 'DequantizeLinear':
      return (node.inputs[1] ? typeOf(node.inputs[1]) : null) ?? 1;
    case 'DynamicQuantizeLinear':
      return index === 1 ? 1 : 2;
    case 'MatMulInteger':
    case 'ConvInteger':
      return 6;
    case 'Where':
      return node.inputs[1] ? typeOf(node.inputs[1]) : null;
    case 'OneHot':
      return node.inputs[2] ? typeOf(node.inputs[2]) : null;
    case 'If':
    case 'Loop':
    case 'Scan':
      return null;
    default:
      return first ? typeOf(first) : null;
  }
}

interface Candidate {
  name: string;
  opType: string;
  /** From value_info or the graph outputs. */
  declaredType: string | null;
  /** From ONNX Runtime's inference. */
  ortType: string | null;
  /** From staticType, the last resort. */
  guessedType: string | null;
  shape: Dim[] | null;
  /** Whether dim 0 followed the batch size of the runs on zeros; null when unknown. */
  batched: boolean | null;
}

const typeOfCandidate = (c: Candidate) => c.declaredType ?? c.ortType ?? c.guessedType;

/**
 * A layer as the model document lists it, with whether NV can be measured on it: the engine
 * fetches float32 values batch-first. Without a run on zeros, a value whose declared first dim
 * is not the input's batch dim counts as not batch-first only when both are known sizes.
 */
function layerInfo(c: Candidate, inputShape: Dim[]): LayerInfo {
  const type = typeOfCandidate(c) as string;
  const layer: LayerInfo = { name: c.name, opType: c.opType, shape: c.shape, type, measurable: true };
  let batched = c.batched;
  if (batched === null && c.shape) {
    const [first] = c.shape;
    const batch = inputShape[0];
    if (c.shape.length === 0) batched = false;
    else if (typeof first === 'number' && typeof batch === 'number') batched = first === batch;
  }
  if (type !== 'float32') {
    layer.measurable = false;
    layer.reason = `a ${type} tensor; normalized variance is measured on float32 values`;
  } else if (batched === false) {
    layer.measurable = false;
    layer.reason = 'its first dimension is not the batch (one value per image is needed)';
  }
  return layer;
}
const isLayer = (c: Candidate) => {
  const type = typeOfCandidate(c);
  return type !== null && LAYER_TYPES.has(type);
};

/** Node outputs of the main graph that depend on the input, in node order, with what ONNX records. */
function candidates(graph: RawGraph, inputName: string): Candidate[] {
  // Which values depend on the input: breadth-first over consumers (robust to unsorted nodes).
  const consumers = new Map<string, number[]>();
  graph.nodes.forEach((n, idx) => {
    for (const name of new Set([...n.inputs, ...n.subgraphRefs])) {
      if (!name) continue;
      const list = consumers.get(name);
      if (list) list.push(idx);
      else consumers.set(name, [idx]);
    }
  });
  const dependent = new Set<string>([inputName]);
  const reached = new Set<number>();
  const queue = [inputName];
  while (queue.length) {
    const value = queue.pop() as string;
    for (const idx of consumers.get(value) ?? []) {
      if (reached.has(idx)) continue;
      reached.add(idx);
      for (const out of graph.nodes[idx].outputs) {
        if (out && !dependent.has(out)) {
          dependent.add(out);
          queue.push(out);
        }
      }
    }
  }

  const declared = new Map<string, RawValueInfo>();
  for (const v of [...graph.valueInfo, ...graph.outputs]) {
    const prev = declared.get(v.name);
    declared.set(v.name, {
      name: v.name,
      type: v.type ?? prev?.type ?? null,
      code: v.code || prev?.code || 0,
      isTensor: v.type ? v.isTensor : (prev?.isTensor ?? v.isTensor),
      shape: v.shape ?? prev?.shape ?? null,
    });
  }

  // Static element types, in node order, as a fallback for what value_info does not give.
  const codes = new Map<string, number>();
  for (const [name, t] of graph.initializers) if (t) codes.set(name, t);
  for (const v of [...graph.inputs, ...declared.values()]) if (v.code) codes.set(v.name, v.code);
  const typeOf = (name: string) => codes.get(name) ?? null;

  const out: Candidate[] = [];
  const seen = new Set<string>();
  const excluded = new Set([...graph.inputs.map((i) => i.name), ...graph.initializers.keys()]);
  for (const node of graph.nodes) {
    node.outputs.forEach((name, index) => {
      if (!codes.has(name)) {
        const guess = staticType(node, index, typeOf);
        if (guess) codes.set(name, guess);
      }
      if (!name || seen.has(name) || excluded.has(name) || !dependent.has(name)) return;
      seen.add(name);
      const d = declared.get(name);
      const code = codes.get(name);
      out.push({
        name,
        opType: node.opType,
        declaredType: d?.type ?? null,
        ortType: null,
        guessedType: code ? elemTypeName(code) : null,
        shape: d?.shape ?? null,
        batched: null,
      });
    });
  }
  return out;
}

function mergeShapes(primary: Dim[] | null, secondary: Dim[] | null): Dim[] | null {
  if (!primary) return secondary;
  if (!secondary || secondary.length !== primary.length) return primary;
  return primary.map((d, i) => d ?? secondary[i]);
}

function zeroInput(type: string, dims: number[]): ort.Tensor {
  const size = dims.reduce((a, b) => a * b, 1);
  if (type === 'float16') return new ort.Tensor('float16', new Uint16Array(size), dims);
  if (type === 'float64') return new ort.Tensor('float64', new Float64Array(size), dims);
  return new ort.Tensor('float32', new Float32Array(size), dims);
}

/** `shape` with the sizes a run revealed in place of symbolic or unknown dims (the batch kept named). */
function refineShape(shape: Dim[] | null, revealed: Dim[] | null): Dim[] | null {
  if (!revealed) return shape;
  if (!shape || shape.length !== revealed.length) return revealed;
  return shape.map((d, i) => {
    const r = revealed[i];
    if (typeof r === 'number') return r;
    return d ?? r;
  });
}

function runFailure(err: unknown, filePath: string): string {
  return (err instanceof Error ? err.message : String(err)).replaceAll(filePath, '<upload>').slice(0, 500);
}

/** Bytes of values a run on zeros may fetch (per run), judged by the sizes known before it. */
const PROBE_OUTPUT_BYTES = 1024 * 1024 * 1024;

interface ProbeResult {
  /** The model ran with batch 1 but not with batch 2 although its batch dim is symbolic. */
  batchOneOnly: boolean;
}

/**
 * Types and shapes from ONNX Runtime: the metadata of a session whose outputs include every
 * candidate, then runs on zeros (batch 1 and 2 for a symbolic batch) that reveal the sizes of
 * symbolic and unknown dims (the classes of an output [N, 'K'], say) and which values have the
 * batch as their first dim (normalized variance needs that). A model that cannot run at all on
 * a zero input is refused (422 INVALID_MODEL): every run of it would fail.
 */
async function probe(
  filePath: string,
  graph: RawGraph,
  input: RawValueInfo,
  found: Candidate[],
  opts: Required<Omit<InspectOptions, 'probe'>>,
): Promise<ProbeResult> {
  const none: ProbeResult = { batchOneOnly: false };
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const extra = found.map((c) => c.name).filter((n) => !outputs.has(n));
  if (statSync(filePath).size > opts.maxProbeBytes || extra.length > opts.maxProbeValues) return none;
  // The copy with extra outputs goes next to the file (DATA_DIR/tmp for uploads), not in memory.
  const copy = path.join(path.dirname(filePath), `.probe-${randomUUID()}.onnx`);
  let session: ort.InferenceSession;
  try {
    await copyFile(filePath, copy);
    await appendFile(copy, extraOutputsSuffix(extra));
    session = await ort.InferenceSession.create(copy, SESSION_OPTIONS);
  } catch {
    return none;
  } finally {
    await rm(copy, { force: true });
  }
  try {
    const meta = metaOf(session);
    for (const c of found) {
      const m = meta.get(c.name);
      if (!m) continue;
      c.ortType = m.type;
      c.shape = mergeShapes(c.shape, m.shape);
    }

    const shape = input.shape as Dim[];
    const sample = shape.slice(1);
    if (!sample.every((d) => typeof d === 'number' && d > 0)) return none;
    const perSample = (sample as number[]).reduce((a, b) => a * b, 1);
    const batchDim = shape[0];
    const fixedBatch = typeof batchDim === 'number' && batchDim > 0;
    const batches = fixedBatch ? [batchDim] : [1, 2];
    if (perSample * batches[batches.length - 1] > opts.maxProbeInputElements) return none;
    const batchName = typeof batchDim === 'string' ? batchDim : 'N';

    // onnxruntime-node returns tensors only: sequence and map outputs are not fetched.
    const tensorOutputs = graph.outputs.filter((o) => o.isTensor || o.type === null).map((o) => o.name);
    // Float values (layers and float outputs) and the graph outputs; the layers only where what
    // ONNX Runtime already knows of their sizes stays within the probe's output budget.
    const layers = found.filter(isLayer);
    const knownFloats = layers.reduce(
      (sum, c) => sum + (c.shape ?? []).reduce<number>((n, d) => n * (typeof d === 'number' ? d : 1), 1),
      0,
    );
    const affordable = knownFloats * 4 * batches[batches.length - 1] <= PROBE_OUTPUT_BYTES;
    const fetches = [...new Set([...(affordable ? layers.map((c) => c.name) : []), ...tensorOutputs])];
    if (fetches.length === 0) return none;
    const runAt = async (b: number, names: string[]) => {
      const feed = { [input.name]: zeroInput(input.type as string, [b, ...(sample as number[])]) };
      const result = await session.run(feed, names);
      const dims = new Map(Object.entries(result).map(([k, v]) => [k, [...v.dims]]));
      for (const v of Object.values(result)) v.dispose?.();
      return dims;
    };
    const runs: Array<Map<string, number[]>> = [];
    for (const b of batches) {
      try {
        runs.push(await runAt(b, fetches));
      } catch {
        if (runs.length > 0) break;
        // Not one run worked: with the model's own outputs only, does it run at all?
        try {
          if (tensorOutputs.length) await runAt(b, tensorOutputs);
        } catch (bare) {
          const where = `[${[b, ...sample].join(',')}]`;
          throw new AppError(
            422,
            'INVALID_MODEL',
            `ONNX Runtime cannot run the model on an all-zero input ${where}: ${runFailure(bare, filePath)}`,
          );
        }
        return none;
      }
    }
    const [one, two] = runs;
    const batchOneOnly = !fixedBatch && !two;
    for (const c of found) {
      const d1 = one.get(c.name);
      if (!d1) continue;
      const d2 = two?.get(c.name);
      // The dims the runs show (the batch dim named), and whether dim 0 followed the batch.
      let revealed: Dim[] | null = null;
      if (fixedBatch) {
        revealed = d1;
        c.batched = d1.length > 0 && d1[0] === batchDim;
      } else if (d2 && d2.length === d1.length) {
        revealed = d1.map((d, i): Dim => (d2[i] === d ? d : d === 1 && d2[i] === 2 ? batchName : null));
        c.batched = d1.length > 0 && d1[0] === 1 && d2[0] === 2;
      } else if (!d2) {
        // Only batch 1 ran: its leading 1 is the batch the model takes.
        revealed = d1.map((d, i): Dim => (i === 0 && d === 1 ? batchName : d));
        c.batched = d1.length > 0 && d1[0] === 1;
      } else {
        c.batched = false;
      }
      c.shape = refineShape(c.shape, revealed);
    }
    return { batchOneOnly };
  } finally {
    await session.release().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs that are probabilities

/** Ops that only move or relabel the values of their first input (probabilities stay probabilities). */
const SHAPE_ONLY_OPS = new Set(['Identity', 'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze']);

/**
 * The graph outputs that a Softmax produces, directly or through reshaping ops only (Identity,
 * Reshape, Flatten, Squeeze, Unsqueeze): outputs that already are probability vectors (SPEC 4:
 * "detect or accept outputIsProbability").
 */
function softmaxOutputs(graph: RawGraph): Set<string> {
  const found = new Set<string>();
  const producer = new Map<string, RawNode>();
  for (const node of graph.nodes) for (const out of node.outputs) if (out) producer.set(out, node);
  for (const output of graph.outputs) {
    let name = output.name;
    for (let depth = 0; depth < 64; depth++) {
      const node = producer.get(name);
      if (!node || (node.domain !== '' && node.domain !== 'ai.onnx')) break;
      if (node.opType === 'Softmax') {
        found.add(output.name);
        break;
      }
      if (!SHAPE_ONLY_OPS.has(node.opType) || !node.inputs[0]) break;
      name = node.inputs[0];
    }
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Entry point

/**
 * Inspects the ONNX model at `filePath`. Throws AppError 422 with code INVALID_MODEL (not ONNX,
 * truncated, no graph, ONNX Runtime cannot load it), EXTERNAL_DATA_UNSUPPORTED, or
 * UNSUPPORTED_MODEL (not exactly one float rank-4 input, or no output).
 */
export async function inspectModel(filePath: string, options: InspectOptions = {}): Promise<ModelInfo> {
  const opts = {
    maxProbeBytes: options.maxProbeBytes ?? 256 * 1024 * 1024,
    maxProbeValues: options.maxProbeValues ?? 5000,
    maxProbeInputElements: options.maxProbeInputElements ?? 4 * 1024 * 1024,
  };
  const parsed = parseOrRefuse(filePath);
  const graph = parsed.graph;
  const input = imageInput(graph);
  const outputMeta = await proveLoads(filePath);

  const found = candidates(graph, input.name);
  const probed = options.probe !== false ? await probe(filePath, graph, input, found, opts) : null;

  const byName = new Map(found.map((c) => [c.name, c]));
  const outputs: TensorInfo[] = graph.outputs.map((o) => {
    const m = outputMeta.get(o.name);
    const c = byName.get(o.name);
    const declared = mergeShapes(mergeShapes(o.shape, m?.shape ?? null), c?.shape ?? null);
    return {
      name: o.name,
      type: o.type ?? m?.type ?? (c ? typeOfCandidate(c) : null) ?? 'unknown',
      // Sizes the probe found (in c.shape) replace symbolic dims the file declares.
      shape: refineShape(declared, c?.shape ?? null),
    };
  });
  // A symbolic batch that only runs with batch 1 (an export that reshapes to [1, -1], say) is
  // recorded as the batch 1 it is, so that runs feed one image at a time.
  const inputShape = probed?.batchOneOnly ? [1, ...(input.shape as Dim[]).slice(1)] : input.shape;
  const info: ModelInfo = {
    opset: parsed.opset,
    inputs: [{ name: input.name, type: input.type as string, shape: inputShape }],
    outputs,
    layers: found.filter(isLayer).map((c) => layerInfo(c, input.shape as Dim[])),
    probabilityOutputs: [...softmaxOutputs(graph)],
  };
  // PostgreSQL cannot store U+0000 in text or jsonb.
  if (JSON.stringify(info).includes('\\u0000')) {
    throw unsupported('value names, op types and dimension names must not contain NUL characters');
  }
  return info;
}
