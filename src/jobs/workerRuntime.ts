// The worker role: takes shard and merge jobs from the queue and runs them in the engine pool,
// periodically requeues shards of workers that died (no heartbeat), and removes the partial
// statistics of runs that are over.
import type PgBoss from 'pg-boss';
import { FINALIZE_QUEUE, SHARD_QUEUE, type ShardJobData } from './queue.js';
import {
  createFinalizeHandler,
  createShardHandler,
  type LifecycleDeps,
  recoverOrphanedJobs,
  recoverStaleShards,
  removeOrphanedPartials,
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
  // One pg-boss poller per engine thread: each takes one shard at a time. A pg-boss worker
  // waits out the rest of its polling interval after a job; notifying it when a shard ends
  // makes it fetch the next one at once (short shards would otherwise idle the thread).
  for (let i = 0; i < opts.concurrency; i++) {
    let pollerId: string | null = null;
    pollerId = await boss.work<ShardJobData>(SHARD_QUEUE, workOpts, async ([job]) => {
      try {
        await shards.handle(job);
      } finally {
        if (pollerId) boss.notifyWorker(pollerId);
      }
    });
  }
  // Merges in progress: shutdown lets them finish (seconds) rather than leave their job active
  // until pg-boss expires it.
  const merging = new Set<Promise<void>>();
  await boss.work<{ runId: string }>(FINALIZE_QUEUE, workOpts, async ([job]) => {
    const merge = finalize(job);
    merging.add(merge);
    try {
      await merge;
    } finally {
      merging.delete(merge);
    }
  });

  // The janitor: shards of workers that stopped heart-beating, and jobs fetched by a process that
  // died before it claimed their shard, go back on the queue; partials of finished runs go.
  let janitorRun: Promise<void> | null = null;
  const janitor = setInterval(() => {
    if (janitorRun) return;
    janitorRun = (async () => {
      await recoverStaleShards(deps);
      await recoverOrphanedJobs(deps);
      await removeOrphanedPartials(deps);
    })()
      .catch((err) => deps.log({ err: String(err) }, 'janitor failed'))
      .finally(() => {
        janitorRun = null;
      });
  }, opts.janitorMs);
  janitor.unref();

  return {
    async stop() {
      clearInterval(janitor);
      // In-flight shards stop between batches and are handed back to the queue; a job fetched
      // from now on is handed back unclaimed.
      shards.stopAll();
      await Promise.all([
        boss.offWork(SHARD_QUEUE).catch(() => undefined),
        boss.offWork(FINALIZE_QUEUE).catch(() => undefined),
      ]);
      const drained = await shards.drain(20_000);
      await Promise.race([
        Promise.allSettled([...merging]),
        new Promise((r) => setTimeout(r, 20_000).unref()),
      ]);
      if (!drained) deps.log({ shards: [...shards.inFlight.keys()] }, 'shards still running at shutdown');
      await janitorRun;
    },
  };
}

export type { PgBoss };
