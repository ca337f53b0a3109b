// ENGINE_NICE: the engine threads (and the ONNX Runtime threads they start) run at a lower CPU
// priority than the process's main thread, so a sweep yields the cores to the API and
// PostgreSQL. Linux only: nice values are per thread there, read back from /proc.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import type { RunSpec } from '../../src/domain/runSpec.js';
import { CONTROL_SLOTS } from '../../src/engine/engineTasks.js';
import { createEnginePool, type EnginePool } from '../../src/engine/workerPool.js';
import { ingestDataset } from '../../src/ingest/index.js';
import { FIXTURES, FMNIST_CLASSES, fixtureRunSpec } from '../helpers/fixtures.js';

const MODEL = path.join(FIXTURES, 'fmnist-cnn-plain.onnx');
const NICE = 7;

/** Nice value of every thread of this process, by thread id (stat(5) field 19). */
function threadNices(): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      out.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

describe('ENGINE_NICE configuration', () => {
  it('defaults to 10, takes 0..19, and names the variable when invalid', () => {
    expect(loadConfig({}).engineNice).toBe(10);
    expect(loadConfig({ ENGINE_NICE: '0' }).engineNice).toBe(0);
    expect(loadConfig({ ENGINE_NICE: '19' }).engineNice).toBe(19);
    for (const bad of ['20', '-1', '5.5', 'low']) {
      expect(() => loadConfig({ ENGINE_NICE: bad })).toThrow(ConfigError);
      expect(() => loadConfig({ ENGINE_NICE: bad })).toThrow(`ENGINE_NICE must be an integer`);
    }
  });
});

describe.skipIf(process.platform !== 'linux')('engine threads at ENGINE_NICE (Linux: /proc)', () => {
  let dir: string;
  let datasetPath: string;
  let spec: RunSpec;
  let pool: EnginePool | null = null;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'invariance-nice-'));
    datasetPath = path.join(dir, 'dataset.invds');
    const ingested = await ingestDataset(
      {
        kind: 'idx',
        imagesPath: path.join(FIXTURES, 'fmnist-test-1k-images-idx3-ubyte.gz'),
        labelsPath: path.join(FIXTURES, 'fmnist-test-1k-labels-idx1-ubyte.gz'),
      },
      datasetPath,
      {
        limits: {
          maxDatasetImages: 10_000,
          maxUncompressedBytes: 2 ** 30,
          maxImagePixels: 2 ** 24,
          maxArchiveEntries: 10_000,
        },
        classNames: FMNIST_CLASSES,
      },
    );
    spec = await fixtureRunSpec(
      {
        modelId: 'm',
        datasetId: 'd',
        transforms: [{ type: 'rotate', values: [30] }],
        metrics: ['accuracy'],
        limit: 64,
      },
      MODEL,
      ingested,
      { maxRunInferences: 1_000_000, maxPoints: 1000 },
    );
  });
  afterAll(async () => {
    await pool?.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it('an engine thread and the ONNX Runtime threads it starts run at the nice value; the main thread does not', async () => {
    const before = threadNices();
    const mainNice = before.get(process.pid);
    pool = createEnginePool({ workers: 1, ortThreads: 2, executionProvider: 'cpu', nice: NICE });
    // A merge of nothing: the thread is up, and no ONNX Runtime session exists yet.
    await pool.run({ kind: 'merge', partials: [] });
    const niced = (m: Map<number, number>) => [...m].filter(([tid, n]) => !before.has(tid) && n === NICE);
    const started = niced(threadNices());
    expect(started).toHaveLength(1);

    // A shard: the thread creates its session, whose intra-op pool (2 threads: the caller and one
    // more) is started by ONNX Runtime from the engine thread and inherits its priority.
    const result = await pool.run({
      kind: 'evaluate',
      modelPath: MODEL,
      modelSha256: createHash('sha256')
        .update(await readFile(MODEL))
        .digest('hex'),
      datasetPath,
      spec,
      start: 0,
      count: 64,
      control: new SharedArrayBuffer(CONTROL_SLOTS * 4),
    });
    expect(result.inferences).toBe(128);
    const after = threadNices();
    expect(niced(after).length).toBeGreaterThanOrEqual(2);
    // The main thread (tid = pid) keeps its priority.
    expect(after.get(process.pid)).toBe(mainNice);
  });

  it('0 leaves the threads at the process priority', async () => {
    const before = threadNices();
    const plain = createEnginePool({ workers: 1, ortThreads: 1, executionProvider: 'cpu', nice: 0 });
    try {
      await plain.run({ kind: 'merge', partials: [] });
      const added = [...threadNices()].filter(([tid]) => !before.has(tid));
      expect(added.length).toBeGreaterThanOrEqual(1);
      expect(added.every(([, n]) => n === before.get(process.pid))).toBe(true);
    } finally {
      await plain.destroy();
    }
  });
});
