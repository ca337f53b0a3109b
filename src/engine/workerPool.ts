// The worker-thread pool (piscina). Every inference, transform and merge of a run happens in
// these threads; the main thread only schedules. Each thread keeps its ONNX Runtime sessions
// (loaded once per model) between tasks.
import { fileURLToPath } from 'node:url';
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

export function createEnginePool(opts: EnginePoolOptions): EnginePool {
  const { filename, execArgv } = workerFile();
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
