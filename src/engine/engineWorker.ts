// Engine thread (piscina worker): evaluates shards of runs and merges their partials. Each
// thread keeps its ONNX Runtime sessions (model with extra layer outputs, transform graphs)
// between tasks, so a model is loaded once per thread, not once per shard.
import { readFile } from 'node:fs/promises';
import { workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { ClassificationAccumulator, type ClassificationState } from '../domain/classification.js';
import { NormalizedVarianceAccumulator, type NvState } from '../domain/normalizedVariance.js';
import type { RunSpec } from '../domain/runSpec.js';
import { expandSweep, type TransformPoint } from '../domain/sweep.js';
import { openCanonicalDataset } from '../ingest/canonicalDataset.js';
import {
  CONTROL_DONE,
  CONTROL_STOP,
  type EngineTask,
  type EvaluateShardResult,
  type EvaluateShardTask,
  type FinalizeRunResult,
  type FinalizeRunTask,
} from './engineTasks.js';
import { withExtraOutputs } from './onnxModel.js';
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

/** Bytes of model outputs (logits + layer activations) held per batch. */
const BATCH_OUTPUT_BYTES = 64 * 1024 * 1024;
const MAX_BATCH_IMAGES = 2048;
const FIRST_BATCH_IMAGES = 256;

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

const models = new Lru<ort.InferenceSession>(2);
const transforms = new Lru<TransformRunner>(4);

function modelSession(task: EvaluateShardTask): Promise<ort.InferenceSession> {
  const layers = task.spec.metrics.includes('nv') ? task.spec.nv.layers : [];
  return models.get(`${task.modelSha256}|${layers.join('\u0000')}`, async () => {
    const bytes = new Uint8Array(await readFile(task.modelPath));
    return createSession(layers.length ? withExtraOutputs(bytes, layers) : bytes);
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

/** Serialized partial of one shard. */
interface ShardPartial {
  version: 1;
  samples: number;
  classification: ClassificationState | null;
  nv: NvState[];
}

function encodePartial(p: ShardPartial): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(p));
}

function decodePartial(bytes: Uint8Array): ShardPartial {
  const p = JSON.parse(new TextDecoder().decode(bytes)) as ShardPartial;
  if (p?.version !== 1) throw new Error('unknown partial format');
  return p;
}

const sizeOf = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/** Runs the model on `images` (Q per sample), honouring a fixed batch dimension. */
async function runModel(
  session: ort.InferenceSession,
  spec: RunSpec,
  images: Float32Array,
  count: number,
  outputNames: string[],
): Promise<Map<string, { data: Float32Array; perImage: number[] }>> {
  const { height: H, width: W, channels: C } = spec.input;
  const dims = spec.preprocessing.layout === 'NHWC' ? [H, W, C] : [C, H, W];
  const imageSize = C * H * W;
  const fixed = spec.input.batch;
  const chunk = fixed && fixed > 0 ? fixed : count;
  const out = new Map<string, { data: Float32Array; perImage: number[] }>();
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
      t.dispose?.();
    }
  }
  return out;
}

async function evaluate(task: EvaluateShardTask): Promise<EvaluateShardResult> {
  const { spec } = task;
  const control = new Int32Array(task.control);
  const timings = { readMs: 0, transformMs: 0, inferenceMs: 0, accumulateMs: 0 };
  const points = sweepPoints(spec);
  const m = points.length;
  const Q = m + 1; // the clean image first, then every point
  const [session, runner, dataset] = await Promise.all([
    modelSession(task),
    transformRunner(spec, points),
    openCanonicalDataset(task.datasetPath),
  ]);
  const wantNv = spec.metrics.includes('nv');
  const layers = wantNv ? spec.nv.layers : [];
  const outputNames = [spec.output, ...layers.filter((l) => l !== spec.output)];
  let classification: ClassificationAccumulator | null = null;
  const nv = new Map<string, NormalizedVarianceAccumulator>();
  const { height: H, width: W, channels: C } = spec.input;
  let samplesPerBatch = Math.max(1, Math.floor(FIRST_BATCH_IMAGES / Q));
  let done = 0;
  let inferences = 0;
  try {
    for (let s = task.start; s < task.start + task.count; ) {
      if (Atomics.load(control, CONTROL_STOP) !== 0) {
        return { partial: null, stopped: true, inferences, timings };
      }
      const B = Math.min(samplesPerBatch, task.start + task.count - s);
      let t0 = performance.now();
      const batch = await dataset.readSamples(s, B);
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
      const outputs = await runModel(session, spec, images, B * Q, outputNames);
      t1 = performance.now();
      timings.inferenceMs += t1 - t0;

      const logits = outputs.get(spec.output)!;
      const K = sizeOf(logits.perImage);
      if (!classification) {
        classification = new ClassificationAccumulator({
          points: m,
          classes: K,
          outputIsProbability: spec.preprocessing.outputIsProbability,
        });
      }
      for (let b = 0; b < B; b++) {
        // sample b: clean at (b*Q)*K, point j at (b*Q + 1 + j)*K
        classification.addSample(batch.labels[b], logits.data, logits.data, b * Q * K, (b * Q + 1) * K, K);
      }
      for (const layer of layers) {
        const out = outputs.get(layer)!;
        const D = sizeOf(out.perImage);
        let acc = nv.get(layer);
        if (!acc) {
          acc = new NormalizedVarianceAccumulator({
            layer,
            shape: out.perImage,
            points: m,
            perClass: spec.nv.perClass,
            classes: K,
          });
          nv.set(layer, acc);
        }
        acc.addBatch(batch.labels, out.data, { count: B, offset: D, sampleStride: Q * D, pointStride: D });
      }
      t0 = performance.now();
      timings.accumulateMs += t0 - t1;

      // Size later batches by what one image's outputs weigh.
      if (done === 0) {
        let floats = 0;
        for (const o of outputs.values()) floats += sizeOf(o.perImage);
        const images = Math.min(MAX_BATCH_IMAGES, Math.floor(BATCH_OUTPUT_BYTES / (4 * Math.max(1, floats))));
        samplesPerBatch = Math.max(1, Math.floor(images / Q));
      }
      s += B;
      done += B;
      inferences += B * Q;
      Atomics.store(control, CONTROL_DONE, inferences);
    }
  } finally {
    await dataset.close();
  }
  const partial: ShardPartial = {
    version: 1,
    samples: done,
    classification: classification?.toJSON() ?? null,
    nv: layers.map((l) => nv.get(l)!.toJSON()),
  };
  return { partial: encodePartial(partial), stopped: false, inferences, timings };
}

function finalize(task: FinalizeRunTask): FinalizeRunResult {
  const partials = task.partials.map(decodePartial);
  let classification: ClassificationAccumulator | null = null;
  const nv = new Map<string, NormalizedVarianceAccumulator>();
  // Merge in shard order: the result does not depend on which worker ran what, or when.
  for (const p of partials) {
    if (p.classification) {
      const c = ClassificationAccumulator.fromJSON(p.classification);
      classification = classification ? classification.merge(c) : c;
    }
    for (const state of p.nv) {
      const acc = NormalizedVarianceAccumulator.fromJSON(state);
      const prev = nv.get(state.layer);
      nv.set(state.layer, prev ? prev.merge(acc) : acc);
    }
  }
  if (!classification) throw new Error('no partial statistics to merge');
  return buildResults(task.spec, sweepPoints(task.spec), classification, nv, task.classNames);
}

export default async function engineTask(task: EngineTask): Promise<EvaluateShardResult | FinalizeRunResult> {
  switch (task.kind) {
    case 'evaluate':
      return evaluate(task);
    case 'finalize':
      return finalize(task);
  }
}
