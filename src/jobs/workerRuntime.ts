// The worker role: takes shard and merge jobs from the queue and runs them in the engine pool,
// and periodically requeues shards of workers that died (no heartbeat).
import type PgBoss from 'pg-boss';
import { FINALIZE_QUEUE, SHARD_QUEUE, type ShardJobData } from './queue.js';
import {
  createFinalizeHandler,
  createShardHandler,
  type LifecycleDeps,
  recoverStaleShards,
} from './runLifecycle.js';

export interface WorkerRuntime {
  stop(): Promise<void>;
}

export async function startWorkerRuntime(
  deps: LifecycleDeps,
  opts: { concurrency: number; janitorMs: number },
): Promise<WorkerRuntime> {
  const shards = createShardHandler(deps);
  const finalize = createFinalizeHandler(deps);
  const { boss } = deps;
  const workOpts = { includeMetadata: true as const, batchSize: 1, pollingIntervalSeconds: 0.5 };
  // One pg-boss poller per engine thread: each takes one shard at a time.
  for (let i = 0; i < opts.concurrency; i++) {
    await boss.work<ShardJobData>(SHARD_QUEUE, workOpts, async ([job]) => shards.handle(job));
  }
  await boss.work<{ runId: string }>(FINALIZE_QUEUE, workOpts, async ([job]) => finalize(job));

  let janitorBusy = false;
  const janitor = setInterval(() => {
    if (janitorBusy) return;
    janitorBusy = true;
    recoverStaleShards(deps)
      .catch((err) => deps.log({ err: String(err) }, 'janitor failed'))
      .finally(() => {
        janitorBusy = false;
      });
  }, opts.janitorMs);
  janitor.unref();

  return {
    async stop() {
      clearInterval(janitor);
      // In-flight shards stop between batches and are handed back to the queue.
      shards.stopAll();
      await boss.offWork(SHARD_QUEUE).catch(() => undefined);
      await boss.offWork(FINALIZE_QUEUE).catch(() => undefined);
      const deadline = Date.now() + 20_000;
      while (shards.inFlight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    },
  };
}

export type { PgBoss };
