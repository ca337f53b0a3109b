// Entry of an engine thread (what piscina loads): the engine's task function, plus the id of
// the thread that ran a shard, so the scheduler can record where each shard was evaluated.
import os from 'node:os';
import { isMainThread, threadId, workerData } from 'node:worker_threads';
import type {
  EngineTask,
  EvaluateShardResult,
  FinalizeRunResult,
  MergePartialsResult,
} from './engineTasks.js';
import engineTask from './engineWorker.js';

interface PriorityData {
  /** Nice value for this thread (ENGINE_NICE); 0 leaves it as it is. */
  nice?: number;
  /** Shared by the pool's threads: set by the first one that reports a failure, so it is told once. */
  niceWarned?: Int32Array;
}

/**
 * Lowers this thread's CPU priority before any ONNX Runtime session exists, so that the API's
 * main thread and PostgreSQL win the cores when they share a machine with a sweep. On Linux a
 * nice value belongs to a thread, and the threads ONNX Runtime starts later (its intra-op pool)
 * inherit it; elsewhere setpriority() would lower the whole process, API included, so it is not
 * attempted there. Never raises a priority (that needs privileges): a thread already nicer stays.
 */
function lowerThreadPriority(data: PriorityData): void {
  const nice = data.nice ?? 0;
  if (isMainThread || nice <= 0) return;
  let failure: string | null = null;
  if (process.platform !== 'linux') {
    failure = `per-thread priorities need Linux (this is ${process.platform})`;
  } else {
    try {
      if (os.getPriority(0) < nice) os.setPriority(0, nice);
    } catch (err) {
      failure = (err as Error).message;
    }
  }
  if (failure !== null && (!data.niceWarned || Atomics.exchange(data.niceWarned, 0, 1) === 0)) {
    process.stderr.write(
      `engine: could not lower the engine threads' priority to nice ${nice}: ${failure}\n`,
    );
  }
}

// Module evaluation happens once per thread, before piscina hands it a task: sessions come later.
lowerThreadPriority((workerData ?? {}) as PriorityData);

/** `gc()`, exposed by the pool (workerPool.ts); absent when this module runs elsewhere. */
const collectGarbage = (globalThis as { gc?: () => void }).gc;

export default async function engineThreadTask(
  task: EngineTask,
): Promise<EvaluateShardResult | FinalizeRunResult | MergePartialsResult> {
  const result = await engineTask(task);
  // A shard leaves promoted garbage behind, ONNX Runtime's output buffers among it (tens of MB):
  // collect it now rather than let it pile up under the raised heap limit (workerPool.ts).
  if (task.kind === 'evaluate') collectGarbage?.();
  return task.kind === 'evaluate' ? { ...(result as EvaluateShardResult), threadId } : result;
}
