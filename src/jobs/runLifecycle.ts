// A run's life in the queue: shards are claimed, executed in the engine pool, persisted with
// their partial statistics, and the last one to finish schedules the merge. Every step is an
// idempotent UPDATE guarded by the current state, so redelivered jobs, crashed workers and
// several instances on one database all converge on the same result.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type PgBoss from 'pg-boss';
import type { RunSpec } from '../domain/runSpec.js';
import {
  CONTROL_DONE,
  CONTROL_SLOTS,
  CONTROL_STOP,
  type EvaluateShardResult,
} from '../engine/engineTasks.js';
import type { EnginePool } from '../engine/workerPool.js';
import type { BlobStore } from '../store/blobStore.js';
import { FINALIZE_QUEUE, onClient, type ShardJobData, shardJob } from './queue.js';

export interface LifecycleDeps {
  pool: pg.Pool;
  boss: PgBoss;
  engine: EnginePool;
  blobs: BlobStore;
  workerId: string;
  heartbeatMs: number;
  staleAfterMs: number;
  log: (obj: Record<string, unknown>, msg: string) => void;
}

interface ClaimedShard {
  start: number;
  count: number;
  attempts: number;
}

interface RunContext {
  spec: RunSpec;
  modelSha256: string;
  datasetBlob: string;
  classNames: string[];
}

const ACTIVE = `('queued','running')`;

async function loadRunContext(pool: pg.Pool, runId: string): Promise<RunContext> {
  const { rows } = await pool.query(
    `SELECT r.request AS spec, m.sha256 AS model_sha, d.blob_sha256 AS dataset_blob, d.classes
       FROM runs r JOIN models m ON m.id = r.model_id JOIN datasets d ON d.id = r.dataset_id
      WHERE r.id = $1`,
    [runId],
  );
  if (!rows[0]) throw new Error(`run ${runId} disappeared`);
  const classes = rows[0].classes as Array<{ index: number; name: string }>;
  return {
    spec: rows[0].spec as RunSpec,
    modelSha256: (rows[0].model_sha as string).trim(),
    datasetBlob: (rows[0].dataset_blob as string).trim(),
    classNames: classes.map((c) => c.name),
  };
}

/** Refreshes the run's progress from its shards (cheap: one run's rows). */
async function updateRunProgress(client: pg.Pool | pg.PoolClient, runId: string) {
  await client.query(
    `UPDATE runs SET progress_done = (SELECT COALESCE(sum(progress), 0) FROM run_shards WHERE run_id = $1)
      WHERE id = $1`,
    [runId],
  );
}

export async function failRun(pool: pg.Pool, runId: string, error: Record<string, unknown>) {
  await pool.query(
    `UPDATE runs SET status = 'failed', error = $2, finished_at = now() WHERE id = $1 AND status IN ${ACTIVE}`,
    [runId, JSON.stringify(error)],
  );
}

export function createShardHandler(deps: LifecycleDeps) {
  const inFlight = new Map<string, Int32Array>();

  async function handle(job: PgBoss.JobWithMetadata<ShardJobData>): Promise<void> {
    const { runId, index } = job.data;
    const { pool } = deps;
    const claim = await pool.query<ClaimedShard>(
      `UPDATE run_shards s
          SET status = 'running', worker_id = $3, heartbeat_at = now(), started_at = now(),
              attempts = attempts + 1, progress = 0, error = NULL
        WHERE s.run_id = $1 AND s.index = $2 AND s.status <> 'done'
          AND (s.status <> 'running' OR s.heartbeat_at < now() - make_interval(secs => $4))
          AND EXISTS (SELECT 1 FROM runs r WHERE r.id = $1 AND r.status IN ${ACTIVE})
        RETURNING start, count, attempts`,
      [runId, index, deps.workerId, deps.staleAfterMs / 1000],
    );
    const shard = claim.rows[0];
    if (!shard) return; // done already, run over, or alive on another worker
    await pool.query(
      `UPDATE runs SET status = 'running', started_at = COALESCE(started_at, now()) WHERE id = $1 AND status = 'queued'`,
      [runId],
    );

    const ctx = await loadRunContext(pool, runId);
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
    const key = `${runId}:${index}`;
    inFlight.set(key, control);
    const beat = setInterval(() => {
      void heartbeat(runId, index, control).catch(() => undefined);
    }, deps.heartbeatMs);
    const started = Date.now();
    let result: EvaluateShardResult;
    try {
      result = await deps.engine.run({
        kind: 'evaluate',
        modelPath: deps.blobs.pathOf(ctx.modelSha256),
        modelSha256: ctx.modelSha256,
        datasetPath: deps.blobs.pathOf(ctx.datasetBlob),
        spec: ctx.spec,
        start: shard.start,
        count: shard.count,
        control: control.buffer as SharedArrayBuffer,
      });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      await pool.query(
        `UPDATE run_shards SET status = 'failed', error = $3, heartbeat_at = NULL
          WHERE run_id = $1 AND index = $2 AND worker_id = $4`,
        [runId, index, message.slice(0, 2000), deps.workerId],
      );
      if (job.retryCount >= job.retryLimit) {
        await failRun(pool, runId, {
          code: 'SHARD_FAILED',
          message: `shard ${index} (samples ${shard.start}..${shard.start + shard.count - 1}) failed after ${job.retryCount + 1} attempts: ${message}`,
        });
      }
      deps.log({ runId, index, err: message, attempt: job.retryCount + 1 }, 'shard failed');
      throw err;
    } finally {
      clearInterval(beat);
      inFlight.delete(key);
    }

    if (result.stopped || !result.partial) {
      // Canceled run: nothing to keep. Shutdown: hand the shard back so another worker (or this
      // one after restart) takes it at once rather than after the staleness timeout.
      if (Atomics.load(control, CONTROL_STOP) === 2) await requeue(runId, index);
      return;
    }
    await complete(runId, index, result, Date.now() - started);
  }

  async function heartbeat(runId: string, index: number, control: Int32Array) {
    const { rows } = await deps.pool.query<{ status: string }>(
      `WITH beat AS (
         UPDATE run_shards SET heartbeat_at = now(), progress = $3
          WHERE run_id = $1 AND index = $2 AND worker_id = $4 AND status = 'running')
       SELECT status FROM runs WHERE id = $1`,
      [runId, index, Atomics.load(control, CONTROL_DONE), deps.workerId],
    );
    await updateRunProgress(deps.pool, runId);
    if (rows[0] && !['queued', 'running'].includes(rows[0].status)) Atomics.store(control, CONTROL_STOP, 1);
  }

  async function requeue(runId: string, index: number) {
    const client = await deps.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ attempts: number }>(
        `UPDATE run_shards SET status = 'pending', worker_id = NULL, heartbeat_at = NULL, progress = 0
          WHERE run_id = $1 AND index = $2 AND worker_id = $3 AND status = 'running' RETURNING attempts`,
        [runId, index, deps.workerId],
      );
      if (rows[0]) await deps.boss.insert([shardJob(runId, index, rows[0].attempts)], onClient(client));
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async function complete(runId: string, index: number, result: EvaluateShardResult, durationMs: number) {
    const client = await deps.pool.connect();
    try {
      await client.query('BEGIN');
      // The run row lock serialises shard completions of one run: exactly one sees "last".
      const run = await client.query<{ status: string }>('SELECT status FROM runs WHERE id = $1 FOR UPDATE', [
        runId,
      ]);
      const saved = await client.query(
        `UPDATE run_shards
            SET status = 'done', partial = $3, progress = $4, finished_at = now(), duration_ms = $5, heartbeat_at = NULL
          WHERE run_id = $1 AND index = $2 AND status = 'running' AND worker_id = $6`,
        [runId, index, Buffer.from(result.partial!), result.inferences, durationMs, deps.workerId],
      );
      if (saved.rowCount && run.rows[0] && ['queued', 'running'].includes(run.rows[0].status)) {
        await updateRunProgress(client, runId);
        const left = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM run_shards WHERE run_id = $1 AND status <> 'done'`,
          [runId],
        );
        if (left.rows[0].n === 0) {
          await deps.boss.insert(
            [{ name: FINALIZE_QUEUE, data: { runId }, singletonKey: runId, expireInSeconds: 600 }],
            onClient(client),
          );
        }
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /** Stops in-flight shards (process shutdown) so they can be handed back. */
  function stopAll() {
    for (const control of inFlight.values()) Atomics.store(control, CONTROL_STOP, 2);
  }

  return { handle, stopAll, inFlight };
}

export function createFinalizeHandler(deps: LifecycleDeps) {
  return async function finalize(job: PgBoss.JobWithMetadata<{ runId: string }>): Promise<void> {
    const { runId } = job.data;
    const { pool } = deps;
    const { rows } = await pool.query<{ status: string }>('SELECT status FROM runs WHERE id = $1', [runId]);
    if (rows[0]?.status !== 'running') return;
    const shards = await pool.query<{ partial: Buffer; status: string; duration_ms: number | null }>(
      `SELECT partial, status, duration_ms FROM run_shards WHERE run_id = $1 ORDER BY index`,
      [runId],
    );
    if (shards.rows.some((s) => s.status !== 'done')) return;
    const ctx = await loadRunContext(pool, runId);
    try {
      const merged = await deps.engine.run({
        kind: 'finalize',
        spec: ctx.spec,
        partials: shards.rows.map((s) => new Uint8Array(s.partial)),
        classNames: ctx.classNames,
      });
      const shardMs = shards.rows.map((s) => s.duration_ms ?? 0);
      await pool.query(
        `UPDATE runs
            SET status = 'succeeded', results = $2, summary = $3, finished_at = now(),
                progress_done = progress_total,
                timings = jsonb_build_object(
                  'queuedMs', (extract(epoch FROM (started_at - created_at)) * 1000)::int,
                  'runningMs', (extract(epoch FROM (now() - started_at)) * 1000)::int,
                  'totalMs', (extract(epoch FROM (now() - created_at)) * 1000)::int,
                  'shards', $4::int, 'shardMsTotal', $5::int)
          WHERE id = $1 AND status = 'running'`,
        [
          runId,
          JSON.stringify(merged.results),
          JSON.stringify(merged.summary),
          shardMs.length,
          shardMs.reduce((a, b) => a + b, 0),
        ],
      );
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (job.retryCount >= job.retryLimit) {
        await failRun(pool, runId, { code: 'MERGE_FAILED', message });
      }
      throw err;
    }
  };
}

/** Puts shards whose worker stopped heart-beating back on the queue. */
export async function recoverStaleShards(
  deps: Pick<LifecycleDeps, 'pool' | 'boss' | 'staleAfterMs' | 'log'>,
) {
  const client = await deps.pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ run_id: string; index: number; attempts: number }>(
      `UPDATE run_shards s SET status = 'pending', worker_id = NULL, heartbeat_at = NULL, progress = 0
         FROM runs r
        WHERE r.id = s.run_id AND r.status IN ${ACTIVE}
          AND s.status = 'running' AND s.heartbeat_at < now() - make_interval(secs => $1)
        RETURNING s.run_id, s.index, s.attempts`,
      [deps.staleAfterMs / 1000],
    );
    if (rows.length) {
      await deps.boss.insert(
        rows.map((r) => shardJob(r.run_id, r.index, r.attempts)),
        onClient(client),
      );
      deps.log({ shards: rows.map((r) => `${r.run_id}:${r.index}`) }, 'requeued shards of a dead worker');
    }
    await client.query('COMMIT');
    return rows.length;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export const newWorkerId = () => `w-${randomUUID().slice(0, 8)}`;
