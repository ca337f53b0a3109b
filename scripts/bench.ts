// `npm run bench`: the reference workload through the real engine in one process (no HTTP, no
// database), against bare ONNX Runtime inference of the same images (issue 3 point 7, issue 6 point 6).
//
// Workload: the 1,000 Fashion-MNIST fixture images (tiled to --samples N) x 12 rotations
// (-180..150 step 30) + the clean image = 13 images per sample; accuracy, eKLD and NV on every
// layer (aggregations none and mean), with the fixture CNN.
//
// - sweep: the shards of planShards (SHARD_INFERENCES from the environment, default 8,000)
//   executed by the engine pool (createEnginePool, WORKERS x ORT_THREADS) with the real shard task
//   (read, transform graph, model with layer outputs, accumulators, serialised partials), one
//   shard in flight per thread; finished partials folded in shard order with the merge task; then
//   the real finalize task (merge + results). The N x 13 images' RSS peak is that of this phase.
// - bare: the same N x 13 images, pre-transformed and normalised in memory (the model's input
//   format; the 1,000 distinct samples' views, cycled for N > 1,000), run through the plain model
//   (no extra outputs) in batches of --bare-batch, with the same
//   threads: WORKERS worker threads of one session with ORT_THREADS intra-op threads each
//   ("threads"), and one session with WORKERS x ORT_THREADS intra-op threads ("intra"); the faster
//   of the two is the baseline.
//
// Options: --samples N (default 1000), --workers W, --ort-threads T (defaults: env WORKERS,
// ORT_THREADS, else 2 x 1), --repeat R (timed repetitions, default 3), --bare-batch B (images
// per bare run, default 512), --metrics (default accuracy,ekld,nv; e.g. accuracy,ekld to see the
// engine without NV), --scaling (engine and bare throughput at 1 x 1 vs W x 1), --no-bare, --json.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { gunzipSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import type { Metric, RunSpec } from '../src/domain/runSpec.js';
import { expandSweep } from '../src/domain/sweep.js';
import {
  CONTROL_SLOTS,
  type EvaluateShardResult,
  type FinalizeRunResult,
} from '../src/engine/engineTasks.js';
import { toPlanarFloat } from '../src/engine/pixels.js';
import { toEngineOps } from '../src/engine/pointOps.js';
import { compileTransformPlan, createTransformRunner } from '../src/engine/transformGraph.js';
import { createEnginePool } from '../src/engine/workerPool.js';
import { ingestDataset, openCanonicalDataset } from '../src/ingest/index.js';
import { planShards } from '../src/services/runs.js';
import { FMNIST_CLASSES as CLASS_NAMES, FIXTURES, fixtureRunSpec } from '../test/helpers/fixtures.js';

const MODEL = path.join(FIXTURES, 'fmnist-cnn-plain.onnx');
const IMAGES_GZ = path.join(FIXTURES, 'fmnist-test-1k-images-idx3-ubyte.gz');
const LABELS_GZ = path.join(FIXTURES, 'fmnist-test-1k-labels-idx1-ubyte.gz');
const ANGLES = Array.from({ length: 12 }, (_, i) => -180 + 30 * i);

// ---------------------------------------------------------------------------------------------
// Bare inference thread

interface BarePrepare {
  datasetPath: string;
  modelPath: string;
  spec: RunSpec;
  /** Distinct samples this thread pre-transforms (the 1,000 fixture images, or its share). */
  sampleStart: number;
  sampleCount: number;
  /** Images this thread infers per timed run (cycling over its pre-built views). */
  images: number;
  batch: number;
  intraOpThreads: number;
}

type BareMessage = { kind: 'ready'; views: number } | { kind: 'done'; ms: number; images: number };

/** The model's input images of samples [start, start+count): Q views each, normalised. */
async function buildViews(spec: RunSpec, datasetPath: string, start: number, count: number) {
  const points = expandSweep(spec.transforms, { maxPoints: spec.points });
  const ops = [[], ...points.map((p) => toEngineOps(p.ops))];
  const { height, width, channels } = spec.input;
  const plan = compileTransformPlan(ops, {
    height,
    width,
    channels,
    output: { mean: spec.preprocessing.mean, std: spec.preprocessing.std, layout: spec.preprocessing.layout },
  });
  const runner = await createTransformRunner(plan, { intraOpNumThreads: 1 });
  const dataset = await openCanonicalDataset(datasetPath);
  const Q = ops.length;
  const imageSize = channels * height * width;
  const views = new Float32Array(count * Q * imageSize);
  try {
    for (let s = 0; s < count; s += 100) {
      const B = Math.min(100, count - s);
      const batch = await dataset.readSamples(start + s, B);
      const planar = toPlanarFloat(batch.pixels, B, height, width, channels);
      const out = await runner.run(
        planar,
        B,
        Array.from({ length: B }, (_, b) => start + s + b),
      );
      views.set(out.subarray(0, B * Q * imageSize), s * Q * imageSize);
    }
  } finally {
    await dataset.close();
    await runner.release();
  }
  return { views, count: count * Q, imageSize };
}

async function bareThread(): Promise<void> {
  const port = parentPort;
  if (!port) return;
  const job = workerData as BarePrepare;
  const { views, count, imageSize } = await buildViews(
    job.spec,
    job.datasetPath,
    job.sampleStart,
    job.sampleCount,
  );
  const session = await ort.InferenceSession.create(new Uint8Array(await readFile(job.modelPath)), {
    intraOpNumThreads: job.intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
  const { height: H, width: W, channels: C } = job.spec.input;
  const dims = job.spec.preprocessing.layout === 'NHWC' ? [H, W, C] : [C, H, W];
  const inputName = job.spec.input.name;
  const outputName = job.spec.output;
  const runBatch = async (at: number, n: number) => {
    const data = views.subarray(at * imageSize, (at + n) * imageSize);
    const out = await session.run({ [inputName]: new ort.Tensor('float32', data, [n, ...dims]) }, [
      outputName,
    ]);
    out[outputName].dispose?.();
  };
  await runBatch(0, Math.min(job.batch, count)); // warm-up (first-run allocations)
  port.postMessage({ kind: 'ready', views: count } satisfies BareMessage);
  port.on('message', async (msg: { kind: 'run' } | { kind: 'exit' }) => {
    if (msg.kind === 'exit') {
      await session.release();
      port.close();
      return;
    }
    const t0 = performance.now();
    let at = 0;
    for (let left = job.images; left > 0; ) {
      const n = Math.min(job.batch, left, count - at);
      await runBatch(at, n);
      left -= n;
      at = (at + n) % count;
    }
    port.postMessage({ kind: 'done', ms: performance.now() - t0, images: job.images } satisfies BareMessage);
  });
}

// ---------------------------------------------------------------------------------------------
// Main thread

interface Options {
  samples: number;
  metrics: Metric[];
  workers: number;
  ortThreads: number;
  repeat: number;
  bareBatch: number;
  scaling: boolean;
  bare: boolean;
  json: boolean;
}

function positiveInt(v: string | undefined, fallback: number, what: string): number {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${what} must be a positive integer (got ${v})`);
  return n;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      samples: { type: 'string' },
      workers: { type: 'string' },
      'ort-threads': { type: 'string' },
      repeat: { type: 'string' },
      'bare-batch': { type: 'string' },
      metrics: { type: 'string' },
      scaling: { type: 'boolean', default: false },
      'no-bare': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const metrics = (values.metrics ?? 'accuracy,ekld,nv').split(',').map((m) => m.trim());
  for (const m of metrics) {
    if (m !== 'accuracy' && m !== 'ekld' && m !== 'nv') throw new Error(`unknown metric ${m}`);
  }
  return {
    samples: positiveInt(values.samples, 1000, '--samples'),
    metrics: metrics as Metric[],
    workers: positiveInt(values.workers ?? process.env.WORKERS, 2, '--workers'),
    ortThreads: positiveInt(values['ort-threads'] ?? process.env.ORT_THREADS, 1, '--ort-threads'),
    repeat: positiveInt(values.repeat, 3, '--repeat'),
    bareBatch: positiveInt(values['bare-batch'], 512, '--bare-batch'),
    scaling: values.scaling === true,
    bare: values['no-bare'] !== true,
    json: values.json === true,
  };
}

/** Peak RSS of the process (all threads) while `fn` runs, sampled every 5 ms. */
async function withPeakRss<T>(fn: () => Promise<T>): Promise<{ value: T; peakRss: number }> {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    const rss = process.memoryUsage.rss();
    if (rss > peak) peak = rss;
  }, 5);
  try {
    const value = await fn();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { value, peakRss: peak };
  } finally {
    clearInterval(timer);
  }
}

/** Writes raw IDX files holding the 1,000 fixture images tiled to `samples`. */
async function tiledIdx(dir: string, samples: number): Promise<{ imagesPath: string; labelsPath: string }> {
  const images = gunzipSync(await readFile(IMAGES_GZ));
  const labels = gunzipSync(await readFile(LABELS_GZ));
  const n = images.readUInt32BE(4);
  const rows = images.readUInt32BE(8);
  const cols = images.readUInt32BE(12);
  const per = rows * cols;
  const outImages = Buffer.alloc(16 + samples * per);
  images.copy(outImages, 0, 0, 16);
  outImages.writeUInt32BE(samples, 4);
  const outLabels = Buffer.alloc(8 + samples);
  labels.copy(outLabels, 0, 0, 8);
  outLabels.writeUInt32BE(samples, 4);
  for (let i = 0; i < samples; i++) {
    const src = i % n;
    images.copy(outImages, 16 + i * per, 16 + src * per, 16 + (src + 1) * per);
    outLabels[8 + i] = labels[8 + src];
  }
  const imagesPath = path.join(dir, 'images-idx3-ubyte');
  const labelsPath = path.join(dir, 'labels-idx1-ubyte');
  await writeFile(imagesPath, outImages);
  await writeFile(labelsPath, outLabels);
  return { imagesPath, labelsPath };
}

interface Setup {
  dir: string;
  datasetPath: string;
  modelSha256: string;
  spec: RunSpec;
  distinct: number;
}

async function setup(samples: number, metrics: Metric[]): Promise<Setup> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'invariance-bench-'));
  const datasetPath = path.join(dir, 'dataset.invds');
  const source =
    samples === 1000
      ? { kind: 'idx' as const, imagesPath: IMAGES_GZ, labelsPath: LABELS_GZ }
      : { kind: 'idx' as const, ...(await tiledIdx(dir, samples)) };
  const ingested = await ingestDataset(source, datasetPath, {
    limits: {
      maxDatasetImages: 10_000_000,
      maxUncompressedBytes: 2 ** 40,
      maxImagePixels: 2 ** 24,
      maxArchiveEntries: 1_100_000,
    },
    classNames: CLASS_NAMES,
  });
  const spec = await fixtureRunSpec(
    {
      modelId: 'bench-model',
      datasetId: 'bench-dataset',
      transforms: [{ type: 'rotate', values: ANGLES }],
      metrics,
      nv: { layers: 'all', aggregation: ['mean', 'none'] },
    },
    MODEL,
    ingested,
    { maxRunInferences: 50_000_000, maxPoints: 100_000 },
  );
  const modelSha256 = createHash('sha256')
    .update(await readFile(MODEL))
    .digest('hex');
  return { dir, datasetPath, modelSha256, spec, distinct: Math.min(samples, 1000) };
}

interface Timings {
  readMs: number;
  transformMs: number;
  inferenceMs: number;
  accumulateMs: number;
}

interface SweepRun {
  ms: number;
  /** CPU time of the whole process (all threads) during the run. */
  cpuMs: number;
  shardsMs: number;
  finalizeMs: number;
  timings: Timings;
  partialBytes: number;
  summary: Record<string, unknown>;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function benchSweep(s: Setup, workers: number, ortThreads: number, repeat: number) {
  const shardInferences = positiveInt(process.env.SHARD_INFERENCES, 8000, 'SHARD_INFERENCES');
  const shards = planShards(s.spec.limit, s.spec.points + 1, shardInferences, workers);
  const t0 = performance.now();
  const pool = createEnginePool({ workers, ortThreads, executionProvider: 'cpu' });
  const runs: SweepRun[] = [];
  /** The whole buffer of `bytes`, to transfer it to a thread instead of copying it. */
  const transferable = (bytes: Uint8Array): ArrayBuffer[] =>
    bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
      ? [bytes.buffer as ArrayBuffer]
      : [];
  // As the service's scheduler: at most one shard in flight per thread; each finished partial is
  // folded (in shard order, with the engine's merge task) into one, so the partials held do not
  // grow with the number of shards; the finalize task merges the last ones and builds the results.
  const once = async (): Promise<SweepRun> => {
    const start = performance.now();
    const cpu0 = process.cpuUsage();
    const timings: Timings = { readMs: 0, transformMs: 0, inferenceMs: 0, accumulateMs: 0 };
    let partialBytes = 0;
    let merged: Uint8Array | null = null;
    let nextToMerge = 0;
    const waiting = new Map<number, Uint8Array>();
    let folding: Promise<void> = Promise.resolve();
    const fold = async () => {
      while (waiting.has(nextToMerge)) {
        const p = waiting.get(nextToMerge) as Uint8Array;
        waiting.delete(nextToMerge);
        nextToMerge++;
        if (!merged) {
          merged = p;
          continue;
        }
        const prev: Uint8Array = merged;
        const r = await pool.run({ kind: 'merge', partials: [prev, p] }, [
          ...transferable(prev),
          ...transferable(p),
        ]);
        merged = r.partial;
      }
    };
    let nextShard = 0;
    const slot = async () => {
      while (nextShard < shards.length) {
        const index = nextShard++;
        const sh = shards[index];
        const r = (await pool.run({
          kind: 'evaluate',
          modelPath: MODEL,
          modelSha256: s.modelSha256,
          datasetPath: s.datasetPath,
          spec: s.spec,
          start: sh.start,
          count: sh.count,
          control: new SharedArrayBuffer(CONTROL_SLOTS * 4),
        })) as EvaluateShardResult;
        if (!r.partial) throw new Error('a shard stopped early');
        for (const k of Object.keys(timings) as (keyof Timings)[]) timings[k] += r.timings[k];
        partialBytes += r.partial.byteLength;
        waiting.set(index, r.partial);
        folding = folding.then(fold);
      }
    };
    await Promise.all(Array.from({ length: pool.size }, slot));
    await folding;
    const mid = performance.now();
    const last = merged as Uint8Array | null;
    if (!last) throw new Error('no partials');
    const final = (await pool.run(
      { kind: 'finalize', spec: s.spec, partials: [last], classNames: CLASS_NAMES },
      transferable(last),
    )) as FinalizeRunResult;
    const end = performance.now();
    const cpu = process.cpuUsage(cpu0);
    return {
      ms: end - start,
      cpuMs: (cpu.user + cpu.system) / 1000,
      shardsMs: mid - start,
      finalizeMs: end - mid,
      timings,
      partialBytes,
      summary: final.summary,
    };
  };
  let coldMs = 0;
  try {
    const { value, peakRss } = await withPeakRss(async () => {
      const cold = await once(); // includes thread start and session creation
      coldMs = performance.now() - t0;
      for (let i = 0; i < repeat; i++) runs.push(await once());
      return cold;
    });
    const first = JSON.stringify(value.summary);
    for (const r of runs) {
      if (JSON.stringify(r.summary) !== first) throw new Error('sweep results differ between repetitions');
    }
    const best = runs.reduce((a, b) => (b.ms < a.ms ? b : a));
    return {
      workers,
      ortThreads,
      shards: shards.length,
      images: s.spec.limit * (s.spec.points + 1),
      coldMs,
      bestMs: best.ms,
      medianMs: median(runs.map((r) => r.ms)),
      allMs: runs.map((r) => Math.round(r.ms)),
      cpuMs: Math.min(...runs.map((r) => r.cpuMs)),
      best,
      peakRss,
    };
  } finally {
    await pool.destroy();
  }
}

async function benchBare(
  s: Setup,
  threads: number,
  intraOpThreads: number,
  batch: number,
  repeat: number,
): Promise<{
  mode: string;
  bestMs: number;
  medianMs: number;
  allMs: number[];
  cpuMs: number;
  images: number;
  peakRss: number;
}> {
  const Q = s.spec.points + 1;
  const totalImages = s.spec.limit * Q;
  const filename = fileURLToPath(import.meta.url);
  const { value, peakRss } = await withPeakRss(async () => {
    const workers: Worker[] = [];
    const waiters: ((m: BareMessage) => void)[] = [];
    const next = (i: number) => new Promise<BareMessage>((resolve) => (waiters[i] = resolve));
    try {
      const ready: Promise<BareMessage>[] = [];
      for (let i = 0; i < threads; i++) {
        const share = (n: number) => Math.floor((n * (i + 1)) / threads) - Math.floor((n * i) / threads);
        const start = Math.floor((s.distinct * i) / threads);
        // Evaluated bootstrap: the thread registers tsx's loader, then imports this file.
        const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
        const self = JSON.stringify(pathToFileURL(filename).href);
        const w = new Worker(`import(${tsx}).then((api) => { api.register(); return import(${self}); })`, {
          eval: true,
          workerData: {
            datasetPath: s.datasetPath,
            modelPath: MODEL,
            spec: s.spec,
            sampleStart: start,
            sampleCount: share(s.distinct),
            images: share(s.spec.limit) * Q,
            batch,
            intraOpThreads,
          } satisfies BarePrepare,
        });
        w.on('message', (m: BareMessage) => waiters[i]?.(m));
        w.on('error', (err) => {
          throw err;
        });
        workers.push(w);
        ready.push(next(i));
      }
      await Promise.all(ready);
      const times: number[] = [];
      const cpus: number[] = [];
      for (let r = 0; r < repeat; r++) {
        const t0 = performance.now();
        const cpu0 = process.cpuUsage();
        const done = workers.map((_, i) => next(i));
        for (const w of workers) w.postMessage({ kind: 'run' });
        await Promise.all(done);
        times.push(performance.now() - t0);
        const cpu = process.cpuUsage(cpu0);
        cpus.push((cpu.user + cpu.system) / 1000);
      }
      return { times, cpus };
    } finally {
      for (const w of workers) w.postMessage({ kind: 'exit' });
      await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
    }
  });
  return {
    mode: threads > 1 ? `${threads} threads x ${intraOpThreads}` : `1 session x ${intraOpThreads} intra-op`,
    bestMs: Math.min(...value.times),
    medianMs: median(value.times),
    allMs: value.times.map((v) => Math.round(v)),
    cpuMs: Math.min(...value.cpus),
    images: totalImages,
    peakRss,
  };
}

const mib = (bytes: number) => Math.round(bytes / 1048576);
const sec = (ms: number) => (ms / 1000).toFixed(3);
const rate = (images: number, ms: number) => Math.round(images / (ms / 1000));

async function main(): Promise<void> {
  const o = options();
  const log = (line: string) => {
    if (!o.json) process.stdout.write(`${line}\n`);
  };
  const s = await setup(o.samples, o.metrics);
  const Q = s.spec.points + 1;
  const images = s.spec.limit * Q;
  const report: Record<string, unknown> = {
    machine: {
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      node: process.version,
      loadavg: os.loadavg(),
    },
    samples: s.spec.limit,
    points: s.spec.points,
    images,
    layers: s.spec.nv.layers,
  };
  log(
    `workload: ${s.spec.limit} samples x ${Q} images (clean + ${s.spec.points} rotations) = ${images} images; ` +
      `${s.spec.metrics.join(', ')}${s.spec.metrics.includes('nv') ? ` on ${s.spec.nv.layers.length} layers (none, mean)` : ''}; ` +
      `${os.cpus().length} CPUs, ` +
      `load average ${os.loadavg()[0].toFixed(2)}`,
  );
  try {
    const configs: Array<[number, number]> = o.scaling
      ? [
          [1, 1],
          [o.workers, 1],
        ]
      : [[o.workers, o.ortThreads]];
    const sweeps = [];
    for (const [w, t] of configs) {
      const r = await benchSweep(s, w, t, o.repeat);
      sweeps.push(r);
      const tm = r.best.timings;
      log(
        `sweep   ${w} x ${t}: best ${sec(r.bestMs)} s (${rate(images, r.bestMs)} images/s), median ${sec(r.medianMs)} s, ` +
          `runs ${r.allMs.join(' ')} ms; CPU ${sec(r.cpuMs)} s; cold (pool start + sessions) ${sec(r.coldMs)} s; ${r.shards} shards`,
      );
      log(
        `          thread time: read ${Math.round(tm.readMs)} ms, transform ${Math.round(tm.transformMs)} ms, ` +
          `inference ${Math.round(tm.inferenceMs)} ms, accumulate ${Math.round(tm.accumulateMs)} ms; ` +
          `finalize ${Math.round(r.best.finalizeMs)} ms; partials ${(r.best.partialBytes / 1e6).toFixed(1)} MB; ` +
          `peak RSS ${mib(r.peakRss)} MiB`,
      );
    }
    report.sweep = sweeps.map(({ best, ...rest }) => ({
      ...rest,
      imagesPerSecond: rate(images, rest.bestMs),
      timings: best.timings,
      finalizeMs: best.finalizeMs,
      partialBytes: best.partialBytes,
      summary: best.summary,
    }));
    if (o.scaling) {
      const speedup = sweeps[0].bestMs / sweeps[1].bestMs;
      report.scaling = { engine: speedup };
      log(`scaling engine: ${o.workers} x 1 is ${speedup.toFixed(2)}x 1 x 1`);
    }
    if (o.bare) {
      const bares = [];
      if (o.scaling) {
        bares.push(await benchBare(s, 1, 1, o.bareBatch, o.repeat));
        bares.push(await benchBare(s, o.workers, 1, o.bareBatch, o.repeat));
      } else {
        bares.push(await benchBare(s, o.workers, o.ortThreads, o.bareBatch, o.repeat));
        if (o.workers > 1) bares.push(await benchBare(s, 1, o.workers * o.ortThreads, o.bareBatch, o.repeat));
      }
      for (const b of bares) {
        log(
          `bare    ${b.mode}: best ${sec(b.bestMs)} s (${rate(images, b.bestMs)} images/s), median ${sec(b.medianMs)} s, ` +
            `runs ${b.allMs.join(' ')} ms; CPU ${sec(b.cpuMs)} s; peak RSS ${mib(b.peakRss)} MiB`,
        );
      }
      report.bare = bares.map((b) => ({ ...b, imagesPerSecond: rate(images, b.bestMs) }));
      if (o.scaling) {
        const speedup = bares[0].bestMs / bares[1].bestMs;
        (report.scaling as Record<string, number>).bare = speedup;
        log(`scaling bare:   ${o.workers} x 1 is ${speedup.toFixed(2)}x 1 x 1`);
      } else {
        const baseline = bares.reduce((a, b) => (b.bestMs < a.bestMs ? b : a));
        const sweep = sweeps[0];
        const ratio = sweep.bestMs / baseline.bestMs;
        const ratioMedian = sweep.medianMs / baseline.medianMs;
        const ratioCpu = sweep.cpuMs / baseline.cpuMs;
        report.ratio = { best: ratio, median: ratioMedian, cpu: ratioCpu, baseline: baseline.mode };
        log(
          `ratio   sweep / bare (${baseline.mode}): ${ratio.toFixed(2)} (best), ${ratioMedian.toFixed(2)} (median), ` +
            `${ratioCpu.toFixed(2)} (CPU time)`,
        );
      }
    }
    const peak = process.resourceUsage().maxRSS * 1024;
    report.peakRss = peak;
    log(`peak RSS of the process: ${mib(peak)} MiB`);
    if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    await rm(s.dir, { recursive: true, force: true });
  }
}

if (isMainThread) {
  await main();
} else {
  await bareThread();
}
