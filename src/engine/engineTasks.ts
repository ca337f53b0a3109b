// Messages between the scheduler (main thread) and the engine threads.
import type { RunSpec } from '../domain/runSpec.js';

/** Int32 slots of the SharedArrayBuffer a shard task reports through. */
export const CONTROL_DONE = 0; // inferences finished so far (written by the worker)
/**
 * Written by the scheduler; the engine stops between batches when it is not STOP_NONE. Why it
 * stopped decides what happens to the shard: canceled (run over), handed back (shutdown), or
 * dropped (another worker took it over after this one missed its heartbeats).
 */
export const CONTROL_STOP = 1;
export const CONTROL_SLOTS = 2;

export const STOP_NONE = 0;
export const STOP_RUN_OVER = 1;
export const STOP_SHUTDOWN = 2;
export const STOP_LOST = 3;

export interface EvaluateShardTask {
  kind: 'evaluate';
  modelPath: string;
  modelSha256: string;
  datasetPath: string;
  spec: RunSpec;
  start: number;
  count: number;
  control: SharedArrayBuffer;
}

export interface EvaluateShardResult {
  /** Serialized mergeable partial statistics, or null when stopped early. */
  partial: Uint8Array | null;
  stopped: boolean;
  inferences: number;
  timings: { readMs: number; transformMs: number; inferenceMs: number; accumulateMs: number };
  /** The engine thread that evaluated the shard (added by engineThread.ts). */
  threadId?: number;
}

export interface FinalizeRunTask {
  kind: 'finalize';
  spec: RunSpec;
  partials: Uint8Array[];
  classNames: string[];
}

export interface FinalizeRunResult {
  results: Record<string, unknown>;
  summary: Record<string, unknown>;
}

/**
 * Folds partials (in the order given) into one partial, so that a scheduler can merge shards as
 * they finish and hold one partial instead of all: finalize over [merge(p0..pk), pk+1, ...]
 * gives the same results, bit for bit, as finalize over [p0, ..., pn].
 */
export interface MergePartialsTask {
  kind: 'merge';
  partials: Uint8Array[];
}

export interface MergePartialsResult {
  partial: Uint8Array;
}

export type EngineTask = EvaluateShardTask | FinalizeRunTask | MergePartialsTask;
export type EngineTaskResult<T extends EngineTask> = T extends EvaluateShardTask
  ? EvaluateShardResult
  : T extends MergePartialsTask
    ? MergePartialsResult
    : FinalizeRunResult;
