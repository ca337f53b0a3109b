// Composition of the worker role: engine thread pool + queue consumers + janitor.
import path from 'node:path';
import type PgBoss from 'pg-boss';
import type { Config } from '../config.js';
import { createEnginePool, type EnginePool } from '../engine/workerPool.js';
import type { BlobStore } from '../store/blobStore.js';
import type { Database } from '../store/database.js';
import { newWorkerId } from './runLifecycle.js';
import { startWorkerRuntime } from './workerRuntime.js';

export interface Workers {
  engine: EnginePool;
  workerId: string;
  stop(): Promise<void>;
}

export async function startWorkers(
  config: Config,
  deps: {
    db: Database;
    blobs: BlobStore;
    queue: PgBoss;
    log: (obj: Record<string, unknown>, msg: string) => void;
  },
): Promise<Workers> {
  const engine = createEnginePool({
    workers: config.workers,
    ortThreads: config.ortThreads,
    executionProvider: config.ortEp,
    // Below the main thread: on a machine shared with the API, requests win the cores.
    nice: config.engineNice,
  });
  const workerId = newWorkerId();
  const runtime = await startWorkerRuntime(
    {
      pool: deps.db.pool,
      boss: deps.queue,
      engine,
      blobs: deps.blobs,
      workerId,
      // Heartbeats also carry progress and notice cancels: often enough for both.
      heartbeatMs: 500,
      staleAfterMs: config.shardStaleSeconds * 1000,
      // In DATA_DIR, which every worker shares: the merge may run on another machine.
      partialsDir: path.join(config.dataDir, 'partials'),
      shardRetries: config.shardRetries,
      log: deps.log,
    },
    { concurrency: config.workers, janitorMs: Math.max(1000, (config.shardStaleSeconds * 1000) / 3) },
  );
  return {
    engine,
    workerId,
    async stop() {
      await runtime.stop();
      await engine.destroy();
    },
  };
}
