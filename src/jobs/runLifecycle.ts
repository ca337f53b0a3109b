// A run's life in the queue: shards are claimed, executed in the engine pool, persisted with
// their partial statistics, and the last one to finish schedules the merge. Every step is an
// idempotent UPDATE guarded by the current state, so redelivered jobs, crashed workers and
// several instances on one database all converge on the same result.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type PgBoss from 'pg-boss';
import type { RunResults } from '../domain/gates.js';
import type { RunSpec } from '../domain/runSpec.js';
import {
  CONTROL_DONE,
  CONTROL_SLOTS,
  CONTROL_STOP,
  type EvaluateShardResult,
  STOP_LOST,
  STOP_NONE,
  STOP_RUN_OVER,
  STOP_SHUTDOWN,
} from '../engine/engineTasks.js';
import type { EnginePool } from '../engine/workerPool.js';
import { computeVerdict } from '../services/verdicts.js';
import type { BlobStore } from '../store/blobStore.js';
import { FINALIZE_QUEUE, onClient, QUEUE_SCHEMA, SHARD_QUEUE, type ShardJobData, shardJob } from './queue.js';

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

/** Asks an in-flight shard to stop; the first reason given wins. */
function requestStop(control: Int32Array, reason: number) {
  Atomics.compareExchange(control, CONTROL_STOP, STOP_NONE, reason);
}

export function createShardHandler(deps: LifecycleDeps) {
  /** Stop switches of the shards this process is working on, by job id. */
  const inFlight = new Map<string, Int32Array>();
  /** Every handler still running (claim to commit), so shutdown waits for their last write. */
  const active = new Set<Promise<void>>();
  let stopping = false;

  function handle(job: PgBoss.JobWithMetadata<ShardJobData>): Promise<void> {
    const run = handleJob(job);
    active.add(run);
    const forget = () => active.delete(run);
    run.then(forget, forget);
    return run;
  }

  async function handleJob(job: PgBoss.JobWithMetadata<ShardJobData>): Promise<void> {
    const { runId, index } = job.data;
    const { pool } = deps;
    // Registered before the first await: a shutdown that starts while we claim still stops us.
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
    inFlight.set(job.id, control);
    if (stopping) requestStop(control, STOP_SHUTDOWN);
    try {
      if (Atomics.load(control, CONTROL_STOP) === STOP_SHUTDOWN) {
        // Fetched while shutting down: leave the shard to someone else, with a job of its own
        // (this one completes when we return).
        await handBackUnclaimed(runId, index);
        return;
      }
      const claim = await pool.query<ClaimedShard>(
        `UPDATE run_shards s
            SET status = 'running', worker_id = $3, heartbeat_at = now(), started_at = now(),
                attempts = attempts + 1, progress = 0, error = NULL
          WHERE s.run_id = $1 AND s.index = $2 AND s.status IN ('pending', 'failed', 'running')
            AND (s.status <> 'running' OR s.heartbeat_at < now() - make_interval(secs => $4))
            AND EXISTS (SELECT 1 FROM runs r WHERE r.id = $1 AND r.status IN ${ACTIVE})
          RETURNING start, count, attempts`,
        [runId, index, deps.workerId, deps.staleAfterMs / 1000],
      );
      const shard = claim.rows[0];
      if (!shard) {
        // Done already, alive on another worker, or the run is over: then its pending shards
        // will never run, and say so.
        await pool.query(
          `UPDATE run_shards s SET status = 'canceled'
            WHERE s.run_id = $1 AND s.index = $2 AND s.status = 'pending'
              AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = $1 AND r.status IN ${ACTIVE})`,
          [runId, index],
        );
        return;
      }
      await runShard(job, runId, index, shard, control);
    } finally {
      inFlight.delete(job.id);
    }
  }

  async function runShard(
    job: PgBoss.JobWithMetadata<ShardJobData>,
    runId: string,
    index: number,
    shard: ClaimedShard,
    control: Int32Array,
  ): Promise<void> {
    const { pool } = deps;
    const beat = setInterval(() => {
      void heartbeat(runId, index, control).catch(() => undefined);
    }, deps.heartbeatMs);
    const started = Date.now();
    let result: EvaluateShardResult;
    try {
      await pool.query(
        `UPDATE runs SET status = 'running', started_at = COALESCE(started_at, now()) WHERE id = $1 AND status = 'queued'`,
        [runId],
      );
      const ctx = await loadRunContext(pool, runId);
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
      clearInterval(beat);
      if (Atomics.load(control, CONTROL_STOP) === STOP_SHUTDOWN) {
        // Failed because we are going down (engine pool torn down): not the shard's fault.
        await requeue(runId, index);
        return;
      }
      const message = err instanceof Error ? err.message : String(err);
      const failed = await pool.query(
        `UPDATE run_shards SET status = 'failed', error = $3, heartbeat_at = now(), progress = 0
          WHERE run_id = $1 AND index = $2 AND worker_id = $4 AND status = 'running'`,
        [runId, index, message.slice(0, 2000), deps.workerId],
      );
      deps.log({ runId, index, err: message, attempt: job.retryCount + 1 }, 'shard failed');
      if (!failed.rowCount) return; // not ours any more: its new owner decides
      await updateRunProgress(pool, runId);
      if (job.retryCount >= job.retryLimit) {
        await failRun(pool, runId, {
          code: 'SHARD_FAILED',
          message: `shard ${index} (samples ${shard.start}..${shard.start + shard.count - 1}) failed after ${job.retryCount + 1} attempts: ${message}`,
        });
      }
      throw err; // pg-boss retries the job (with backoff) until its retry limit
    } finally {
      clearInterval(beat);
    }

    if (result.stopped || !result.partial) {
      const why = Atomics.load(control, CONTROL_STOP);
      // Shutdown: hand the shard back so another worker (or this one after restart) takes it at
      // once rather than after the staleness timeout. Run over: the shard will never be needed.
      // Lost: another worker owns it now.
      if (why === STOP_SHUTDOWN) await requeue(runId, index);
      else if (why !== STOP_LOST) await release(runId, index, 'canceled');
      return;
    }
    await complete(runId, index, result, Date.now() - started);
  }

  async function heartbeat(runId: string, index: number, control: Int32Array) {
    const { rows } = await deps.pool.query<{ run_status: string | null; mine: boolean }>(
      `WITH beat AS (
         UPDATE run_shards SET heartbeat_at = now(), progress = $3
          WHERE run_id = $1 AND index = $2 AND worker_id = $4 AND status = 'running'
          RETURNING 1)
       SELECT (SELECT status FROM runs WHERE id = $1) AS run_status, EXISTS (SELECT 1 FROM beat) AS mine`,
      [runId, index, Atomics.load(control, CONTROL_DONE), deps.workerId],
    );
    const { run_status: status, mine } = rows[0];
    if (status === null || !['queued', 'running'].includes(status)) requestStop(control, STOP_RUN_OVER);
    else if (!mine) requestStop(control, STOP_LOST);
    else await updateRunProgress(deps.pool, runId);
  }

  /** A shard fetched during shutdown, not claimed: give it a job of its own if it still needs one. */
  async function handBackUnclaimed(runId: string, index: number) {
    const { rows } = await deps.pool.query<{ attempts: number }>(
      `SELECT s.attempts FROM run_shards s JOIN runs r ON r.id = s.run_id
        WHERE s.run_id = $1 AND s.index = $2 AND s.status IN ('pending', 'failed') AND r.status IN ${ACTIVE}`,
      [runId, index],
    );
    if (rows[0]) await deps.boss.insert([shardJob(runId, index, rows[0].attempts)]);
  }

  /** Our running shard back to pending with a new job, in one transaction. */
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
      await updateRunProgress(client, runId);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /** Our running shard to a final status other than done (its run is over). */
  async function release(runId: string, index: number, status: 'canceled') {
    await deps.pool.query(
      `UPDATE run_shards SET status = $4, heartbeat_at = NULL, finished_at = now()
        WHERE run_id = $1 AND index = $2 AND worker_id = $3 AND status = 'running'`,
      [runId, index, deps.workerId, status],
    );
  }

  async function complete(runId: string, index: number, result: EvaluateShardResult, durationMs: number) {
    const client = await deps.pool.connect();
    try {
      await client.query('BEGIN');
      // The run row lock serialises shard completions of one run (exactly one sees "last") and
      // orders them against cancel: no shard of a run is done after the run ended.
      const run = await client.query<{ status: string }>('SELECT status FROM runs WHERE id = $1 FOR UPDATE', [
        runId,
      ]);
      if (!run.rows[0] || !['queued', 'running'].includes(run.rows[0].status)) {
        await client.query(
          `UPDATE run_shards SET status = 'canceled', heartbeat_at = NULL, finished_at = now()
            WHERE run_id = $1 AND index = $2 AND status = 'running' AND worker_id = $3`,
          [runId, index, deps.workerId],
        );
        await client.query('COMMIT');
        return;
      }
      const timings = { ...result.timings, threadId: result.threadId ?? null, workerId: deps.workerId };
      const saved = await client.query(
        `UPDATE run_shards
            SET status = 'done', partial = $3, progress = $4, finished_at = now(), duration_ms = $5,
                heartbeat_at = NULL, timings = $7
          WHERE run_id = $1 AND index = $2 AND status = 'running' AND worker_id = $6`,
        [
          runId,
          index,
          Buffer.from(result.partial!),
          result.inferences,
          durationMs,
          deps.workerId,
          JSON.stringify(timings),
        ],
      );
      if (saved.rowCount) {
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

  /** Stops in-flight shards (process shutdown) so they can be handed back; takes no new ones. */
  function stopAll() {
    stopping = true;
    for (const control of inFlight.values()) requestStop(control, STOP_SHUTDOWN);
  }

  /** Waits (at most timeoutMs) until every handler has written its last row. */
  async function drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (active.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await Promise.race([
        Promise.allSettled([...active]),
        new Promise((r) => setTimeout(r, Math.min(left, 1000)).unref()),
      ]);
    }
    return true;
  }

  return { handle, stopAll, drain, inFlight };
}

export function createFinalizeHandler(deps: LifecycleDeps) {
  return async function finalize(job: PgBoss.JobWithMetadata<{ runId: string }>): Promise<void> {
    const { runId } = job.data;
    const { pool } = deps;
    const { rows } = await pool.query<{ status: string }>('SELECT status FROM runs WHERE id = $1', [runId]);
    if (rows[0]?.status !== 'running') return;
    const shards = await pool.query<{ partial: Buffer | null; status: string; duration_ms: number | null }>(
      `SELECT partial, status, duration_ms FROM run_shards WHERE run_id = $1 ORDER BY index`,
      [runId],
    );
    if (shards.rows.some((s) => s.status !== 'done')) return;
    const ctx = await loadRunContext(pool, runId);
    try {
      const merged = await deps.engine.run({
        kind: 'finalize',
        spec: ctx.spec,
        partials: shards.rows.map((s) => {
          if (!s.partial) throw new Error('a done shard has no partial statistics');
          return new Uint8Array(s.partial.buffer, s.partial.byteOffset, s.partial.byteLength);
        }),
        classNames: ctx.classNames,
      });
      const shardMs = shards.rows.map((s) => s.duration_ms ?? 0);
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        // The verdict is written with the results: a client that sees "succeeded" sees it too.
        const verdict = await computeVerdict(
          client,
          { id: runId, datasetId: ctx.spec.datasetId },
          ctx.spec.gates ?? [],
          ctx.spec.baseline ?? null,
          merged.results as unknown as RunResults,
        );
        const done = await client.query(
          `UPDATE runs
            SET status = 'succeeded', results = $2, summary = $3, finished_at = now(),
                verdict = $6, verdict_status = $7,
                progress_done = progress_total,
                timings = json_build_object(
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
            verdict ? JSON.stringify(verdict) : null,
            verdict?.status ?? null,
          ],
        );
        // The partials served their purpose: a run's results are final once stored, and the
        // partials of every run ever made would otherwise stay in the database (MBs per shard).
        if (done.rowCount)
          await client.query('UPDATE run_shards SET partial = NULL WHERE run_id = $1', [runId]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
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

/**
 * Hands out again the shard jobs that a process fetched and then died with before it claimed the
 * shard (or before pg-boss recorded the shard's failure, which is stamped in heartbeat_at): such
 * a job stays `active` until pg-boss expires it, an hour later, while its shard waits with no
 * live job.
 */
export async function recoverOrphanedJobs(
  deps: Pick<LifecycleDeps, 'pool' | 'boss' | 'staleAfterMs' | 'log'>,
) {
  const client = await deps.pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ id: string; run_id: string; index: number; attempts: number }>(
      `SELECT j.id, s.run_id, s.index, s.attempts
         FROM ${QUEUE_SCHEMA}.job j
         JOIN run_shards s ON s.run_id = (j.data->>'runId')::uuid AND s.index = (j.data->>'index')::int
         JOIN runs r ON r.id = s.run_id
        WHERE j.name = $1 AND j.state = 'active' AND j.started_on < now() - make_interval(secs => $2)
          AND (s.status = 'pending' OR (s.status = 'failed' AND s.heartbeat_at < now() - make_interval(secs => $2)))
          AND r.status IN ${ACTIVE}
        FOR UPDATE OF j SKIP LOCKED`,
      [SHARD_QUEUE, deps.staleAfterMs / 1000],
    );
    const jobs: Array<PgBoss.JobInsert<ShardJobData>> = [];
    for (const r of rows) {
      await deps.boss.complete(SHARD_QUEUE, r.id, { orphaned: true }, onClient(client));
      const queued = await client.query(
        `SELECT 1 FROM ${QUEUE_SCHEMA}.job
          WHERE name = $1 AND state IN ('created', 'retry') AND data->>'runId' = $2 AND (data->>'index')::int = $3
          LIMIT 1`,
        [SHARD_QUEUE, r.run_id, r.index],
      );
      if (!queued.rowCount) jobs.push(shardJob(r.run_id, r.index, r.attempts));
    }
    if (jobs.length) {
      await deps.boss.insert(jobs, onClient(client));
      deps.log(
        { shards: jobs.map((j) => `${j.data?.runId}:${j.data?.index}`) },
        'requeued orphaned shard jobs',
      );
    }
    await client.query('COMMIT');
    return jobs.length;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export const newWorkerId = () => `w-${randomUUID().slice(0, 8)}`;
