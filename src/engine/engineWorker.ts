// Engine thread (piscina worker): evaluates shards of runs and merges their partials. Each
// thread keeps its ONNX Runtime sessions (model with extra layer outputs, transform graphs)
// between tasks, so a model is loaded once per thread, not once per shard.
import { readFile } from 'node:fs/promises';
import { workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { ClassificationAccumulator, type ClassificationState } from '../domain/classification.js';
import { ExamplesAccumulator, type ExamplesState } from '../domain/examples.js';
import {
  NormalizedVarianceAccumulator,
  type NvRawState,
  type NvState,
} from '../domain/normalizedVariance.js';
import type { RunSpec } from '../domain/runSpec.js';
import { expandSweep, type TransformPoint } from '../domain/sweep.js';
import {
  type CanonicalDataset,
  openCanonicalDataset,
  type SampleBatch,
  sampleBytes,
} from '../ingest/canonicalDataset.js';
import {
  CONTROL_DONE,
  CONTROL_STOP,
  type EngineTask,
  type EvaluateShardResult,
  type EvaluateShardTask,
  type FinalizeRunResult,
  type FinalizeRunTask,
  type MergePartialsResult,
  type MergePartialsTask,
} from './engineTasks.js';
import { parseOnnx, withExtraOutputs } from './onnxModel.js';
import { resizeBilinear, toPlanarFloat } from './pixels.js';
import { toEngineOps } from './pointOps.js';
import { buildResults } from './results.js';
import { compileTransformPlan, createTransformRunner, type TransformRunner } from './transformGraph.js';

interface ThreadConfig {
  ortThreads: number;
  executionProvider: 'cpu' | 'cuda';
}
const config: ThreadConfig = {
  ortThreads: 1,
  executionProvider: 'cpu',
  ...(workerData as Partial<ThreadConfig>),
};

/**
 * Bytes of model outputs (logits + layer activations) per batch. Moderate on purpose: ONNX Runtime
 * hands every output over in a fresh buffer, and peak memory grows with the batch, while its
 * throughput is flat beyond ~100 images (16 MiB: ~170 images of the fixture CNN with all layers).
 */
const BATCH_OUTPUT_BYTES = 16 * 1024 * 1024;
const MAX_BATCH_IMAGES = 256;
const FIRST_BATCH_IMAGES = 128;
/** Samples are read from the dataset file in blocks of at least this many bytes. */
const READ_BLOCK_BYTES = 4 * 1024 * 1024;

let resolvedProviders: string[] | null = null;

async function createSession(model: Uint8Array): Promise<ort.InferenceSession> {
  const base: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: config.ortThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
  if (resolvedProviders)
    return ort.InferenceSession.create(model, { ...base, executionProviders: resolvedProviders });
  if (config.executionProvider === 'cuda') {
    try {
      const s = await ort.InferenceSession.create(model, { ...base, executionProviders: ['cuda', 'cpu'] });
      resolvedProviders = ['cuda', 'cpu'];
      return s;
    } catch (err) {
      process.stderr.write(
        `engine: CUDA execution provider unavailable (${(err as Error).message.split('\n')[0]}); falling back to CPU\n`,
      );
    }
  }
  resolvedProviders = ['cpu'];
  return ort.InferenceSession.create(model, { ...base, executionProviders: resolvedProviders });
}

// Small LRU caches: a thread usually serves one or two runs at a time.
class Lru<V extends { release(): Promise<void> }> {
  private readonly map = new Map<string, Promise<V>>();
  constructor(private readonly capacity: number) {}
  async get(key: string, make: () => Promise<V>): Promise<V> {
    let hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit;
    }
    hit = make();
    this.map.set(key, hit);
    hit.catch(() => this.map.delete(key));
    while (this.map.size > this.capacity) {
      const [oldKey, old] = this.map.entries().next().value as [string, Promise<V>];
      this.map.delete(oldKey);
      void old.then((v) => v.release()).catch(() => undefined);
    }
    return hit;
  }
}

/**
 * Where the statistics of one NV layer come from. Most layers are fetched from the model as
 * extra outputs. Two kinds are derived instead, which saves ONNX Runtime's copy of their values
 * (the largest cost of a sweep after the model itself) and, for aliases, their accumulation:
 * - 'relu': the layer is Relu(another layer that is fetched): its accumulator takes max(x, 0) of
 *   that layer's values, which is exactly what ONNX Runtime's CPU Relu computes (NaN and -0 kept;
 *   only on the CPU provider, where this holds);
 * - 'alias': the layer is Identity or Flatten(axis 1) of another NV layer: the same values in the
 *   same order, so the same statistics under its own name and shape.
 */
type LayerSource =
  | { layer: string; kind: 'fetch'; output: string }
  | { layer: string; kind: 'relu'; output: string }
  | { layer: string; kind: 'alias'; of: string; flatten: boolean };

type GraphNode = {
  opType: string;
  domain: string;
  inputs: string[];
  attrs: Map<string, { i: number | null }>;
};

/** The sources of `layers` (see LayerSource); `derive` false: every layer is fetched. */
export function planLayerSources(
  model: Uint8Array,
  layers: readonly string[],
  derive: boolean,
): LayerSource[] {
  const producer = new Map<string, GraphNode>();
  if (derive) {
    for (const node of parseOnnx(model).graph?.nodes ?? []) {
      for (const out of node.outputs) producer.set(out, node);
    }
  }
  const wanted = new Set(layers);
  const plans = new Map<string, LayerSource>();
  const resolve = (layer: string, depth: number): LayerSource => {
    const known = plans.get(layer);
    if (known) return known;
    let plan: LayerSource = { layer, kind: 'fetch', output: layer };
    const node = producer.get(layer);
    const input = node?.inputs[0];
    if (node && input && wanted.has(input) && input !== layer && depth < 64 && isStandard(node)) {
      if (node.opType === 'Relu' && node.inputs.length === 1) {
        const from = resolve(input, depth + 1);
        if (from.kind === 'alias') {
          const root = resolve(from.of, depth + 1);
          if (root.kind !== 'alias') plan = { layer, kind: 'relu', output: root.output };
        } else {
          plan = { layer, kind: 'relu', output: from.output };
        }
      } else if (
        (node.opType === 'Identity' && node.inputs.length === 1) ||
        (node.opType === 'Flatten' && flattenAxis(node) === 1)
      ) {
        const from = resolve(input, depth + 1);
        plan = {
          layer,
          kind: 'alias',
          of: from.kind === 'alias' ? from.of : from.layer,
          flatten: node.opType === 'Flatten' || (from.kind === 'alias' && from.flatten),
        };
      }
    }
    plans.set(layer, plan);
    return plan;
  };
  return layers.map((l) => resolve(l, 0));
}

/** Flatten's axis: 1 when the attribute is absent, 0 when present without a value (protobuf default). */
function flattenAxis(node: GraphNode): number {
  const attr = node.attrs.get('axis');
  return attr ? (attr.i ?? 0) : 1;
}

function isStandard(node: GraphNode): boolean {
  return node.domain === '' || node.domain === 'ai.onnx';
}

interface ModelEntry {
  session: ort.InferenceSession;
  sources: LayerSource[];
  /** Model outputs fetched per batch: the classifier output first, then the layers' sources. */
  outputs: string[];
  release(): Promise<void>;
}

const models = new Lru<ModelEntry>(2);
const transforms = new Lru<TransformRunner>(4);

function modelSession(task: EvaluateShardTask): Promise<ModelEntry> {
  const layers = task.spec.metrics.includes('nv') ? task.spec.nv.layers : [];
  return models.get(`${task.modelSha256}|${layers.join('\u0000')}`, async () => {
    const bytes = new Uint8Array(await readFile(task.modelPath));
    // The derivations hold for ONNX Runtime's CPU kernels: not planned when CUDA is asked for.
    const sources = planLayerSources(bytes, layers, config.executionProvider === 'cpu');
    const fetched = new Set<string>([task.spec.output]);
    for (const s of sources) if (s.kind !== 'alias') fetched.add(s.output);
    const outputs = [...fetched];
    const extra = outputs.slice(1);
    const session = await createSession(extra.length ? withExtraOutputs(bytes, extra) : bytes);
    return { session, sources, outputs, release: () => session.release() };
  });
}

function transformRunner(spec: RunSpec, points: TransformPoint[]): Promise<TransformRunner> {
  const ops = [[], ...points.map((p) => toEngineOps(p.ops))];
  const { height, width, channels } = spec.input;
  const output = {
    mean: spec.preprocessing.mean,
    std: spec.preprocessing.std,
    layout: spec.preprocessing.layout,
  };
  const key = JSON.stringify({ ops, height, width, channels, output });
  return transforms.get(key, async () => {
    const plan = compileTransformPlan(ops, { height, width, channels, output });
    return createTransformRunner(plan, {
      executionProviders: resolvedProviders ?? [config.executionProvider === 'cuda' ? 'cuda' : 'cpu', 'cpu'],
      intraOpNumThreads: config.ortThreads,
    });
  });
}

function sweepPoints(spec: RunSpec): TransformPoint[] {
  return expandSweep(spec.transforms, { maxPoints: Math.max(spec.points, 1) });
}

// ---------------------------------------------------------------------------------------------
// Partials

/** Statistics of one shard (mergeable). */
export interface ShardPartial {
  samples: number;
  classification: ClassificationState | null;
  /** The samples whose prediction flips most (null in partials written before it existed). */
  examples?: ExamplesState | null;
  nv: NvRawState[];
}

// Version 2 (binary): magic, u32 LE header length, JSON header (the NV arrays replaced by their
// lengths), zero padding to a multiple of 8, then every NV array's float64 values (little-endian),
// in header order. Against version 1 (JSON with base64 arrays, still read) it is a quarter
// smaller and several times faster to write and read.
const PARTIAL_MAGIC = 'INVPART2';
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

interface PartialHeaderV2 {
  version: 2;
  samples: number;
  classification: ClassificationState | null;
  examples?: ExamplesState | null;
  nv: Array<
    Omit<NvRawState, 'groups'> & { groups: Array<{ class: number | null; count: number; lengths: number[] }> }
  >;
}

const ARRAYS = ['tvStd', 'tvVar', 'mean', 'm2'] as const;

export function encodePartial(p: ShardPartial): Uint8Array {
  if (!LITTLE_ENDIAN) throw new Error('binary partials need a little-endian host');
  const arrays: Float64Array[] = [];
  const header: PartialHeaderV2 = {
    version: 2,
    samples: p.samples,
    classification: p.classification,
    examples: p.examples ?? null,
    nv: p.nv.map((state) => ({
      ...state,
      groups: state.groups.map((g) => {
        for (const k of ARRAYS) arrays.push(g[k]);
        return { class: g.class, count: g.count, lengths: ARRAYS.map((k) => g[k].length) };
      }),
    })),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const payloadAt = Math.ceil((12 + json.length) / 8) * 8;
  let size = payloadAt;
  for (const a of arrays) size += a.byteLength;
  const out = new Uint8Array(size);
  out.set(Buffer.from(PARTIAL_MAGIC, 'ascii'), 0);
  new DataView(out.buffer).setUint32(8, json.length, true);
  out.set(json, 12);
  let at = payloadAt;
  for (const a of arrays) {
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at);
    at += a.byteLength;
  }
  return out;
}

export function decodePartial(bytes: Uint8Array): ShardPartial {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length >= 12 && buf.toString('ascii', 0, 8) === PARTIAL_MAGIC) {
    if (!LITTLE_ENDIAN) throw new Error('binary partials need a little-endian host');
    const len = buf.readUInt32LE(8);
    if (12 + len > buf.length) throw new Error('truncated partial');
    const header = JSON.parse(buf.toString('utf8', 12, 12 + len)) as PartialHeaderV2;
    if (header?.version !== 2 || !Array.isArray(header.nv)) throw new Error('unknown partial format');
    let at = Math.ceil((12 + len) / 8) * 8;
    const take = (n: number): Float64Array => {
      if (!Number.isSafeInteger(n) || n < 0 || at + 8 * n > buf.length) throw new Error('truncated partial');
      const values = new Float64Array(n); // a copy: aligned whatever the offset of `bytes`
      new Uint8Array(values.buffer).set(buf.subarray(at, at + 8 * n));
      at += 8 * n;
      return values;
    };
    return {
      samples: header.samples,
      classification: header.classification,
      ...(header.examples ? { examples: header.examples } : {}),
      nv: header.nv.map((state) => ({
        ...state,
        groups: state.groups.map((g) => {
          const [tvStd, tvVar, mean, m2] = ARRAYS.map((_, i) => take(g.lengths?.[i]));
          return { class: g.class, count: g.count, tvStd, tvVar, mean, m2 };
        }),
      })),
    };
  }
  // Version 1: JSON, arrays in base64.
  const p = JSON.parse(new TextDecoder().decode(bytes)) as {
    version: number;
    samples: number;
    classification: ClassificationState | null;
    nv: NvState[];
  };
  if (p?.version !== 1) throw new Error('unknown partial format');
  return {
    samples: p.samples,
    classification: p.classification,
    nv: p.nv.map((state) => NormalizedVarianceAccumulator.fromJSON(state).toRawState()),
  };
}

// ---------------------------------------------------------------------------------------------
// Evaluation

const sizeOf = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

type Outputs = Map<string, { data: Float32Array; perImage: number[] }>;

/**
 * Runs the model on `images` (Q per sample), honouring a fixed batch dimension. `targets`: arrays
 * (of `count` x the output's per-image size) ONNX Runtime writes the outputs into directly, as
 * pre-allocated outputs (used when the batch is one run); the values are then read there.
 */
async function runModel(
  session: ort.InferenceSession,
  spec: RunSpec,
  images: Float32Array,
  count: number,
  outputNames: string[],
  targets: Map<string, { data: Float32Array; perImage: number[] }> | null,
): Promise<Outputs> {
  const { height: H, width: W, channels: C } = spec.input;
  const dims = spec.preprocessing.layout === 'NHWC' ? [H, W, C] : [C, H, W];
  const imageSize = C * H * W;
  const fixed = spec.input.batch;
  const chunk = fixed && fixed > 0 ? fixed : count;
  const out: Outputs = new Map();
  if (targets && chunk === count) {
    const feeds = {
      [spec.input.name]: new ort.Tensor('float32', images.subarray(0, count * imageSize), [count, ...dims]),
    };
    const fetches: Record<string, ort.Tensor> = {};
    for (const name of outputNames) {
      const t = targets.get(name)!;
      fetches[name] = new ort.Tensor('float32', t.data, [count, ...t.perImage]);
    }
    // The result holds copies of the pre-allocated outputs: the values are read from `targets`.
    await session.run(feeds, fetches);
    return targets;
  }
  for (let start = 0; start < count; start += chunk) {
    const n = Math.min(chunk, count - start);
    let data = images.subarray(start * imageSize, (start + n) * imageSize);
    if (n < chunk) {
      const padded = new Float32Array(chunk * imageSize);
      padded.set(data);
      data = padded;
    }
    const feeds = { [spec.input.name]: new ort.Tensor('float32', data, [chunk, ...dims]) };
    const result = await session.run(feeds, outputNames);
    for (const name of outputNames) {
      const t = result[name];
      if (!t) throw new Error(`the model did not produce output ${name}`);
      if (t.type !== 'float32') throw new Error(`output ${name} is ${t.type}, expected float32`);
      const perImage = t.dims.slice(1).map(Number);
      const per = sizeOf(perImage);
      if (Number(t.dims[0]) !== chunk) {
        throw new Error(`output ${name} has batch dimension ${t.dims[0]}, expected ${chunk}`);
      }
      const values = t.data as Float32Array;
      if (chunk >= count) {
        out.set(name, { data: values, perImage });
      } else {
        let entry = out.get(name);
        if (!entry) {
          entry = { data: new Float32Array(count * per), perImage };
          out.set(name, entry);
        }
        entry.data.set(values.subarray(0, n * per), start * per);
      }
    }
  }
  return out;
}

/**
 * Samples of a shard, read in blocks of at least READ_BLOCK_BYTES (one positioned read each),
 * the next block while the current one is computed. A batch never spans two blocks (it is cut
 * short at a block's end).
 */
class SampleReader {
  private block: { start: number; data: SampleBatch } | null = null;
  private next: Promise<{ start: number; data: SampleBatch }> | null = null;
  private readonly perSample: number;
  private readonly blockSamples: number;

  constructor(
    private readonly dataset: CanonicalDataset,
    private readonly end: number,
  ) {
    this.perSample = Math.max(1, sampleBytes(dataset.meta));
    this.blockSamples = Math.max(1, Math.floor(READ_BLOCK_BYTES / this.perSample));
  }

  private readBlock(at: number, atLeast: number) {
    const n = Math.min(Math.max(this.blockSamples, atLeast), this.end - at);
    return this.dataset.readSamples(at, n).then((data) => ({ start: at, data }));
  }

  /** Up to `n` samples from `at` (fewer at the end of a block). */
  async read(at: number, n: number): Promise<SampleBatch> {
    let block = this.block;
    if (!block || at < block.start || at >= block.start + block.data.labels.length) {
      const ahead = this.next ? await this.next : null;
      this.next = null;
      block = ahead && ahead.start === at ? ahead : await this.readBlock(at, n);
      this.block = block;
    }
    const size = block.data.labels.length;
    const blockEnd = block.start + size;
    if (!this.next && blockEnd < this.end) this.next = this.readBlock(blockEnd, n);
    const from = at - block.start;
    const count = Math.min(n, size - from);
    const scale = this.perSample / block.data.pixels.BYTES_PER_ELEMENT;
    return {
      pixels: block.data.pixels.subarray(from * scale, (from + count) * scale),
      labels: block.data.labels.subarray(from, from + count),
    };
  }

  /** Waits for a read still in flight (before the dataset is closed). */
  async settle(): Promise<void> {
    await this.next?.catch(() => undefined);
  }
}

async function evaluate(task: EvaluateShardTask): Promise<EvaluateShardResult> {
  const { spec } = task;
  const control = new Int32Array(task.control);
  const timings = { readMs: 0, transformMs: 0, inferenceMs: 0, accumulateMs: 0 };
  const points = sweepPoints(spec);
  const m = points.length;
  const Q = m + 1; // the clean image first, then every point
  const [model, runner, dataset] = await Promise.all([
    modelSession(task),
    transformRunner(spec, points),
    openCanonicalDataset(task.datasetPath),
  ]);
  const wantNv = spec.metrics.includes('nv');
  const sources = wantNv ? model.sources : [];
  let classification: ClassificationAccumulator | null = null;
  let examples: ExamplesAccumulator | null = null;
  /** Accumulators of the fetched and Relu-derived layers (aliases share their target's). */
  const nv = new Map<string, NormalizedVarianceAccumulator>();
  const shapes = new Map<string, number[]>();
  /** Per-image dims of every model output, known after the first batch. */
  let outputDims: Map<string, number[]> | null = null;
  /** Output -> the accumulator of the layer fetched as that output (it hosts the batch's values). */
  const hosts = new Map<string, NormalizedVarianceAccumulator>();
  /** Plain buffers for outputs no accumulator hosts (the classifier's, without NV). */
  const spare = new Map<string, Float32Array>();
  const { height: H, width: W, channels: C } = spec.input;
  const end = task.start + task.count;
  let samplesPerBatch = Math.max(1, Math.floor(FIRST_BATCH_IMAGES / Q));
  let done = 0;
  let inferences = 0;
  const reader = new SampleReader(dataset, end);
  try {
    for (let s = task.start; s < end; ) {
      if (Atomics.load(control, CONTROL_STOP) !== 0) {
        return { partial: null, stopped: true, inferences, timings };
      }
      let t0 = performance.now();
      const batch = await reader.read(s, Math.min(samplesPerBatch, end - s));
      const B = batch.labels.length;
      if (B === 0) throw new Error(`the dataset has no sample ${s}`);
      const meta = dataset.meta;
      let planar = toPlanarFloat(batch.pixels, B, meta.height, meta.width, meta.channels);
      if (meta.height !== H || meta.width !== W)
        planar = resizeBilinear(planar, B * C, meta.height, meta.width, H, W);
      const indices = Array.from({ length: B }, (_, b) => s + b);
      let t1 = performance.now();
      timings.readMs += t1 - t0;
      const images = await runner.run(planar, B, indices);
      t0 = performance.now();
      timings.transformMs += t0 - t1;
      let targets: Outputs | null = null;
      if (outputDims) {
        targets = new Map();
        for (const [name, perImage] of outputDims) {
          const length = B * Q * sizeOf(perImage);
          const host = hosts.get(name);
          let data: Float32Array;
          if (host) {
            data = host.batchBuffer(length);
          } else {
            let buf = spare.get(name);
            if (!buf || buf.length < length) {
              buf = new Float32Array(length);
              spare.set(name, buf);
            }
            data = buf.subarray(0, length);
          }
          targets.set(name, { data, perImage });
        }
      }
      const outputs = await runModel(model.session, spec, images, B * Q, model.outputs, targets);
      t1 = performance.now();
      timings.inferenceMs += t1 - t0;
      // Size later batches by what one image's outputs weigh.
      if (done === 0) {
        let floats = 0;
        for (const o of outputs.values()) floats += sizeOf(o.perImage);
        const perBatch = Math.min(
          MAX_BATCH_IMAGES,
          Math.floor(BATCH_OUTPUT_BYTES / (4 * Math.max(1, floats))),
        );
        samplesPerBatch = Math.max(1, Math.floor(perBatch / Q));
      }

      const logits = outputs.get(spec.output)!;
      const K = sizeOf(logits.perImage);
      if (!classification) {
        classification = new ClassificationAccumulator({
          points: m,
          classes: K,
          outputIsProbability: spec.preprocessing.outputIsProbability,
        });
        examples = new ExamplesAccumulator({ points: m, classes: K });
      }
      for (let b = 0; b < B; b++) {
        // sample b: clean at (b*Q)*K, point j at (b*Q + 1 + j)*K
        classification.addSample(batch.labels[b], logits.data, logits.data, b * Q * K, (b * Q + 1) * K, K);
        examples?.addSample(s + b, batch.labels[b], logits.data, logits.data, b * Q * K, (b * Q + 1) * K, K);
      }
      // A Relu-derived layer reads its input's values where they are (its host's buffer).
      for (const src of sources) {
        if (src.kind === 'alias') continue;
        const out = outputs.get(src.output)!;
        const D = sizeOf(out.perImage);
        let acc = nv.get(src.layer);
        if (!acc) {
          shapes.set(src.layer, out.perImage);
          acc = new NormalizedVarianceAccumulator({
            layer: src.layer,
            shape: out.perImage,
            points: m,
            perClass: spec.nv.perClass,
            classes: K,
            relu: src.kind === 'relu',
            // the whole batch in one kernel call: the state stays in cache across its samples
            stagingBytes: BATCH_OUTPUT_BYTES,
          });
          nv.set(src.layer, acc);
          if (src.kind === 'fetch' && !hosts.has(src.output)) hosts.set(src.output, acc);
        }
        acc.addBatch(batch.labels, out.data, { count: B, offset: D, sampleStride: Q * D, pointStride: D });
      }
      if (!outputDims) {
        outputDims = new Map([...outputs].map(([name, o]) => [name, o.perImage]));
      }
      t0 = performance.now();
      timings.accumulateMs += t0 - t1;
      s += B;
      done += B;
      inferences += B * Q;
      Atomics.store(control, CONTROL_DONE, inferences);
    }
  } finally {
    await reader.settle();
    await dataset.close();
  }
  const t0 = performance.now();
  const states = new Map<string, NvRawState>();
  for (const [layer, acc] of nv) states.set(layer, acc.toRawState());
  const encoded = encodePartial({
    samples: done,
    classification: classification?.toJSON() ?? null,
    examples: examples?.toJSON() ?? null,
    nv: sources.map((src) => {
      if (src.kind !== 'alias') return states.get(src.layer)!;
      const of = states.get(src.of)!;
      const shape = src.flatten ? [sizeOf(shapes.get(src.of)!)] : [...of.shape];
      return { ...of, layer: src.layer, shape };
    }),
  });
  timings.accumulateMs += performance.now() - t0;
  return { partial: encoded, stopped: false, inferences, timings };
}

/** Merges partials in the order given (the order decides the float rounding, nothing else). */
function mergePartials(partials: readonly Uint8Array[]): {
  samples: number;
  classification: ClassificationAccumulator | null;
  examples: ExamplesAccumulator | null;
  nv: Map<string, NormalizedVarianceAccumulator>;
} {
  let samples = 0;
  // Examples only when every shard recorded them (partials of older versions did not).
  let allExamples = true;
  let classification: ClassificationAccumulator | null = null;
  let examples: ExamplesAccumulator | null = null;
  const nv = new Map<string, NormalizedVarianceAccumulator>();
  // One partial decoded at a time: memory does not grow with the number of partials.
  for (const bytes of partials) {
    const p = decodePartial(bytes);
    samples += p.samples;
    if (p.classification) {
      const c = ClassificationAccumulator.fromJSON(p.classification);
      classification = classification ? classification.merge(c) : c;
    }
    if (p.examples && allExamples) {
      const e = ExamplesAccumulator.fromJSON(p.examples);
      examples = examples ? examples.merge(e) : e;
    } else {
      allExamples = false;
      examples = null;
    }
    for (const state of p.nv) {
      const acc = NormalizedVarianceAccumulator.fromRawState(state);
      const prev = nv.get(state.layer);
      nv.set(state.layer, prev ? prev.merge(acc) : acc);
    }
  }
  return { samples, classification, examples, nv };
}

function merge(task: MergePartialsTask): MergePartialsResult {
  const { samples, classification, examples, nv } = mergePartials(task.partials);
  return {
    partial: encodePartial({
      samples,
      classification: classification?.toJSON() ?? null,
      examples: examples?.toJSON() ?? null,
      nv: [...nv.values()].map((acc) => acc.toRawState()),
    }),
  };
}

function finalize(task: FinalizeRunTask): FinalizeRunResult {
  // Merged in shard order: the result does not depend on which worker ran what, or when.
  const { classification, examples, nv } = mergePartials(task.partials);
  if (!classification) throw new Error('no partial statistics to merge');
  return buildResults(task.spec, sweepPoints(task.spec), classification, nv, task.classNames, examples);
}

export default async function engineTask(
  task: EngineTask,
): Promise<EvaluateShardResult | FinalizeRunResult | MergePartialsResult> {
  switch (task.kind) {
    case 'evaluate':
      return evaluate(task);
    case 'finalize':
      return finalize(task);
    case 'merge':
      return merge(task);
  }
}
