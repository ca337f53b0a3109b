// Entry of an engine thread (what piscina loads): the engine's task function, plus the id of
// the thread that ran a shard, so the scheduler can record where each shard was evaluated.
import { threadId } from 'node:worker_threads';
import type {
  EngineTask,
  EvaluateShardResult,
  FinalizeRunResult,
  MergePartialsResult,
} from './engineTasks.js';
import engineTask from './engineWorker.js';

export default async function engineThreadTask(
  task: EngineTask,
): Promise<EvaluateShardResult | FinalizeRunResult | MergePartialsResult> {
  const result = await engineTask(task);
  return task.kind === 'evaluate' ? { ...(result as EvaluateShardResult), threadId } : result;
}
