// The worker-thread pool (piscina). Every inference, transform and merge of a run happens in
// these threads; the main thread only schedules. Each thread keeps its ONNX Runtime sessions
// (loaded once per model) between tasks.
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { Piscina } from 'piscina';
import type { EngineTask, EngineTaskResult } from './engineTasks.js';

export interface EnginePoolOptions {
  workers: number;
  ortThreads: number;
  executionProvider: 'cpu' | 'cuda';
  /**
   * Nice value of the engine threads (ENGINE_NICE), set by each thread at start-up, before its
   * ONNX Runtime sessions; 0 or absent leaves them at the process's priority.
   */
  nice?: number;
}

export interface EnginePool {
  run<T extends EngineTask>(task: T, transferList?: ArrayBuffer[]): Promise<EngineTaskResult<T>>;
  readonly size: number;
  destroy(): Promise<void>;
}

function workerFile(): { filename: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) {
    // Running from source (tests, `npm run dev`): let the thread load TypeScript through tsx.
    return { filename: here.replace(/workerPool\.ts$/, 'engineThread.ts'), execArgv: ['--import', 'tsx'] };
  }
  return { filename: here.replace(/workerPool\.js$/, 'engineThread.js'), execArgv: [] };
}

/**
 * Initial old-generation limit (MiB) of the engine threads' heaps. Their live heap is ~8 MB, and
 * with V8's default limit for so small a heap, incremental marking starts at almost every
 * scavenge: a mark-compact per batch, four GC helper threads busy, ~25% more CPU per sweep, and
 * two threads that contend for the cores (measured on the bench: ~160 mark-compacts per
 * 1,000-sample sweep; 20-27 with this limit, sweep CPU 3.0 s -> 2.2-2.5 s, 2 threads 1.2-1.5x ->
 * 1.9x one). With fewer collections, the buffers of ONNX Runtime's outputs that were promoted
 * linger longer, so each evaluation task ends with a full collection (engineThread.ts: ~5 ms per
 * shard), which keeps peak RSS flat in the number of samples.
 */
const ENGINE_INITIAL_OLD_SPACE_MB = 64;

export function createEnginePool(opts: EnginePoolOptions): EnginePool {
  const { filename, execArgv } = workerFile();
  // V8 reads these when an isolate and its context are created: they apply to the threads started
  // below, not to the main thread, whose heap and context exist already (and Worker
  // resourceLimits can only set maxima). --expose-gc gives the threads `gc()`.
  v8.setFlagsFromString(`--initial-old-space-size=${ENGINE_INITIAL_OLD_SPACE_MB}`);
  v8.setFlagsFromString('--expose-gc');
  const piscina = new Piscina({
    filename,
    execArgv,
    minThreads: opts.workers,
    maxThreads: opts.workers,
    // One task per thread at a time: a task saturates its ORT threads.
    concurrentTasksPerWorker: 1,
    idleTimeout: Number.POSITIVE_INFINITY,
    workerData: {
      ortThreads: opts.ortThreads,
      executionProvider: opts.executionProvider,
      nice: opts.nice ?? 0,
      // Shared by the threads so that a failure to lower their priority is logged once per pool.
      niceWarned: new Int32Array(new SharedArrayBuffer(4)),
    },
  });
  return {
    size: opts.workers,
    run: (task, transferList) => piscina.run(task, { transferList }),
    destroy: () => piscina.destroy(),
  };
}
