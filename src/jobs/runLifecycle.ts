// A run's life in the queue: shards are claimed, executed in the engine pool, persisted with
// their partial statistics, and the last one to finish schedules the merge. Every step is an
// idempotent UPDATE guarded by the current state, so redelivered jobs, crashed workers and
// several instances on one database all converge on the same result.
//
// Partial statistics (up to tens of MB per shard) live in files under DATA_DIR/partials/<run>/,
// not in the database: pg returns bytea as hex text, and decoding it blocked the main thread
// (and so the API) for ~0.2 s per 26 MB. A shard's row names its file, set in the same UPDATE
// that marks it done, after the file is synced: a crash at any point leaves at most a file no
// row names (removed with its run), never a done shard without its statistics.
import { randomUUID } from 'node:crypto';
import { access, mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type PgBoss from 'pg-boss';
import type { RunResults } from '../domain/gates.js';
import type { RunSpec } from '../domain/runSpec.js';
import {
  CONTROL_DONE,
  CONTROL_SLOTS,
  CONTROL_STOP,
  type EvaluateShardResult,
  type FinalizeRunResult,
  STOP_LOST,
  STOP_NONE,
  STOP_RUN_OVER,
  STOP_SHUTDOWN,
} from '../engine/engineTasks.js';
import type { EnginePool } from '../engine/workerPool.js';
import { computeVerdict } from '../services/verdicts.js';
import type { BlobStore } from '../store/blobStore.js';
import { isUuid } from '../store/ids.js';
import { inTransaction } from '../store/transaction.js';
import { FINALIZE_QUEUE, onClient, QUEUE_SCHEMA, SHARD_QUEUE, type ShardJobData, shardJob } from './queue.js';

export interface LifecycleDeps {
  pool: pg.Pool;
  boss: PgBoss;
  engine: EnginePool;
  blobs: BlobStore;
  workerId: string;
  heartbeatMs: number;
  staleAfterMs: number;
  /** DATA_DIR/partials: one folder per run with the partial statistics of its done shards. */
  partialsDir: string;
  /**
   * SHARD_RETRIES. Also how many times a shard may be re-issued after its worker died running it
   * (no heartbeat): a shard that brings its process down would otherwise be re-issued forever.
   */
  shardRetries: number;
  log: (obj: Record<string, unknown>, msg: string) => void;
}

interface ClaimedShard {
  start: number;
  count: number;
  attempts: number;
  /** Times a worker stopped heart-beating while running it, this claim's takeover included. */
  abandoned: number;
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

export async function failRun(db: pg.Pool | pg.PoolClient, runId: string, error: Record<string, unknown>) {
  await db.query(
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
      // Taking over a running shard whose worker stopped heart-beating counts as one abandonment
      // of it, as when the janitor hands it back (SET sees the row as it was).
      const claim = await pool.query<ClaimedShard>(
        `UPDATE run_shards s
            SET status = 'running', worker_id = $3, heartbeat_at = now(), started_at = now(),
                attempts = attempts + 1, progress = 0, error = NULL,
                abandoned = abandoned + (s.status = 'running')::int
          WHERE s.run_id = $1 AND s.index = $2 AND s.status IN ('pending', 'failed', 'running')
            AND (s.status <> 'running' OR s.heartbeat_at < now() - make_interval(secs => $4))
            AND EXISTS (SELECT 1 FROM runs r WHERE r.id = $1 AND r.status IN ${ACTIVE})
          RETURNING start, count, attempts, abandoned`,
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
      if (shard.abandoned > deps.shardRetries) {
        await giveUpAbandoned(runId, index, shard);
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
    await complete(runId, index, shard, result.partial, result, Date.now() - started);
  }

  /** A shard taken over once too often from workers that died running it: its run fails. */
  async function giveUpAbandoned(runId: string, index: number, shard: ClaimedShard) {
    await inTransaction(deps.pool, async (client) => {
      const failed = await client.query(
        `UPDATE run_shards SET status = 'failed', heartbeat_at = now(), progress = 0
          WHERE run_id = $1 AND index = $2 AND worker_id = $3 AND status = 'running'`,
        [runId, index, deps.workerId],
      );
      if (failed.rowCount) await failAbandoned(client, deps, { runId, index, ...shard });
    });
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
    await inTransaction(deps.pool, async (client) => {
      const { rows } = await client.query<{ attempts: number }>(
        `UPDATE run_shards SET status = 'pending', worker_id = NULL, heartbeat_at = NULL, progress = 0
          WHERE run_id = $1 AND index = $2 AND worker_id = $3 AND status = 'running' RETURNING attempts`,
        [runId, index, deps.workerId],
      );
      if (rows[0]) await deps.boss.insert([shardJob(runId, index, rows[0].attempts)], onClient(client));
      await updateRunProgress(client, runId);
    });
  }

  /** Our running shard to a final status other than done (its run is over). */
  async function release(runId: string, index: number, status: 'canceled') {
    await deps.pool.query(
      `UPDATE run_shards SET status = $4, heartbeat_at = NULL, finished_at = now()
        WHERE run_id = $1 AND index = $2 AND worker_id = $3 AND status = 'running'`,
      [runId, index, deps.workerId, status],
    );
  }

  async function complete(
    runId: string,
    index: number,
    shard: ClaimedShard,
    partial: Uint8Array,
    result: EvaluateShardResult,
    durationMs: number,
  ) {
    // Named by claim (attempt): a worker that lost the shard and finishes late never touches the
    // file of its new owner.
    const ref = `${runId}/${index}-${shard.attempts}-${deps.workerId}.part`;
    const file = path.join(deps.partialsDir, ref);
    await writePartialFile(file, partial);
    // Removed when the row certainly does not name it; after an error (was the COMMIT applied?)
    // it stays, and goes with its run's folder.
    const named = await inTransaction(deps.pool, async (client) => {
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
        return false;
      }
      const timings = { ...result.timings, threadId: result.threadId ?? null, workerId: deps.workerId };
      const saved = await client.query(
        `UPDATE run_shards
            SET status = 'done', partial_file = $3, progress = $4, finished_at = now(), duration_ms = $5,
                heartbeat_at = NULL, timings = $7
          WHERE run_id = $1 AND index = $2 AND status = 'running' AND worker_id = $6`,
        [runId, index, ref, result.inferences, durationMs, deps.workerId, JSON.stringify(timings)],
      );
      if (!saved.rowCount) return false; // not ours any more
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
      return true;
    });
    if (!named) await rm(file, { force: true }).catch(() => undefined);
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

interface DoneShard {
  index: number;
  status: string;
  duration_ms: number | null;
  /** Relative to partialsDir; null for a shard done by a version that kept partials in bytea. */
  partial_file: string | null;
  legacy: boolean;
}

/**
 * Partials folded per merge task: at most this many (plus the fold so far and the one being read)
 * are held at once, whatever the number of shards, and the fold is decoded and re-encoded once
 * per group rather than once per shard.
 */
const FOLD_GROUP = 4;

export function createFinalizeHandler(deps: LifecycleDeps) {
  return async function finalize(job: PgBoss.JobWithMetadata<{ runId: string }>): Promise<void> {
    const { runId } = job.data;
    const { pool } = deps;
    const { rows } = await pool.query<{ status: string }>('SELECT status FROM runs WHERE id = $1', [runId]);
    if (rows[0]?.status !== 'running') return;
    // No partial bytes here: only where they are.
    const shards = await pool.query<DoneShard>(
      `SELECT index, status, duration_ms, partial_file, partial IS NOT NULL AS legacy
         FROM run_shards WHERE run_id = $1 ORDER BY index`,
      [runId],
    );
    if (shards.rows.some((s) => s.status !== 'done')) return;
    // A done shard whose statistics are gone (DATA_DIR restored without them, say) runs again;
    // its completion schedules this merge anew.
    const missing = await missingPartials(deps.partialsDir, shards.rows);
    if (missing.length) {
      await rerunShards(deps, runId, missing);
      return;
    }
    const ctx = await loadRunContext(pool, runId);
    try {
      const merged = await foldPartials(deps, runId, shards.rows, ctx);
      const shardMs = shards.rows.map((s) => s.duration_ms ?? 0);
      const succeeded = await inTransaction(pool, async (client) => {
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
        // partials of every run ever made would otherwise stay (MBs per shard).
        if (done.rowCount)
          await client.query(
            `UPDATE run_shards SET partial = NULL, partial_file = NULL
              WHERE run_id = $1 AND (partial IS NOT NULL OR partial_file IS NOT NULL)`,
            [runId],
          );
        return done.rowCount === 1;
      });
      // After the commit: a crash before this leaves the folder to removeOrphanedPartials.
      if (succeeded) await removeRunPartials(deps, runId);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (job.retryCount >= job.retryLimit) {
        await failRun(pool, runId, { code: 'MERGE_FAILED', message });
      }
      throw err;
    }
  };
}

/** The whole buffer of `bytes` when it owns it, to move it to an engine thread without a copy. */
function transferable(bytes: Uint8Array): ArrayBuffer[] {
  return bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength &&
    bytes.buffer instanceof ArrayBuffer
    ? [bytes.buffer]
    : [];
}

/**
 * Merges the shards' partials in shard order in the engine threads, reading the next while the
 * current group merges: finalize over [merge(p0..pk), pk+1, ...] gives the same results, bit for
 * bit, as over [p0, ..., pn] (engineTasks.ts), and memory does not grow with the shards.
 */
async function foldPartials(
  deps: LifecycleDeps,
  runId: string,
  shards: DoneShard[],
  ctx: RunContext,
): Promise<FinalizeRunResult> {
  const read = (s: DoneShard): Promise<Uint8Array> => {
    const reading = readPartial(deps, runId, s);
    // Read ahead: if the fold fails first, this one's failure must not go unhandled.
    reading.catch(() => undefined);
    return reading;
  };
  let folded: Uint8Array | null = null;
  let group: Uint8Array[] = [];
  let next: Promise<Uint8Array> | null = shards.length ? read(shards[0]) : null;
  for (let i = 0; next; i++) {
    const current: Uint8Array = await next;
    next = i + 1 < shards.length ? read(shards[i + 1]) : null;
    group.push(current);
    if (group.length === FOLD_GROUP && next) {
      const partials: Uint8Array[] = folded ? [folded, ...group] : group;
      folded = (await deps.engine.run({ kind: 'merge', partials }, partials.flatMap(transferable))).partial;
      group = [];
    }
  }
  const partials = folded ? [folded, ...group] : group;
  if (!partials.length) throw new Error('no partial statistics to merge');
  return deps.engine.run(
    { kind: 'finalize', spec: ctx.spec, partials, classNames: ctx.classNames },
    partials.flatMap(transferable),
  );
}

async function readPartial(deps: LifecycleDeps, runId: string, shard: DoneShard): Promise<Uint8Array> {
  // Read by libuv's threads into a buffer of its own: no decoding on the main thread.
  if (shard.partial_file) return readFile(path.join(deps.partialsDir, shard.partial_file));
  // Done by a version that stored partials in the database (hex on the wire): read once, at the
  // upgrade.
  const { rows } = await deps.pool.query<{ partial: Buffer | null }>(
    'SELECT partial FROM run_shards WHERE run_id = $1 AND index = $2',
    [runId, shard.index],
  );
  const bytes = rows[0]?.partial;
  if (!bytes) throw new Error(`shard ${shard.index} has no partial statistics any more`);
  return bytes;
}

/** Indexes of done shards whose partial statistics are nowhere to be found. */
async function missingPartials(partialsDir: string, shards: DoneShard[]): Promise<number[]> {
  const found = await Promise.all(
    shards.map(async (s) => {
      if (!s.partial_file) return s.legacy;
      return access(path.join(partialsDir, s.partial_file)).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return false;
          throw err;
        },
      );
    }),
  );
  return shards.filter((_, i) => !found[i]).map((s) => s.index);
}

/** Done shards of a running run back to pending, with jobs, in one transaction. */
async function rerunShards(deps: LifecycleDeps, runId: string, indexes: number[]) {
  const rows = await inTransaction(deps.pool, async (client) => {
    const { rows } = await client.query<{ index: number; attempts: number }>(
      `UPDATE run_shards s
          SET status = 'pending', partial = NULL, partial_file = NULL, worker_id = NULL, heartbeat_at = NULL,
              progress = 0, finished_at = NULL, duration_ms = NULL
        WHERE s.run_id = $1 AND s.index = ANY($2::int[]) AND s.status = 'done'
          AND EXISTS (SELECT 1 FROM runs r WHERE r.id = $1 AND r.status = 'running')
        RETURNING s.index, s.attempts`,
      [runId, indexes],
    );
    if (rows.length) {
      await deps.boss.insert(
        rows.map((r) => shardJob(runId, r.index, r.attempts)),
        onClient(client),
      );
      await updateRunProgress(client, runId);
    }
    return rows;
  });
  if (rows.length) {
    deps.log({ runId, shards: rows.map((r) => r.index) }, 'partial statistics missing: shards run again');
  }
}

/**
 * The run of a shard abandoned more than SHARD_RETRIES times (its status already failed) fails
 * with SHARD_ABANDONED, the reason on both rows. Both ways of noticing end here: the janitor's
 * sweep and a worker that would take the shard over.
 */
async function failAbandoned(
  client: pg.PoolClient,
  deps: Pick<LifecycleDeps, 'log'>,
  shard: { runId: string; index: number; start: number; count: number; abandoned: number },
) {
  const { runId, index, start, count, abandoned } = shard;
  const message =
    `shard ${index} (samples ${start}..${start + count - 1}) was abandoned ${abandoned} times: ` +
    'the worker running it stopped heart-beating each time (its process crashed or was killed); ' +
    'not issued again';
  await client.query('UPDATE run_shards SET error = $3 WHERE run_id = $1 AND index = $2', [
    runId,
    index,
    message,
  ]);
  await updateRunProgress(client, runId);
  await failRun(client, runId, { code: 'SHARD_ABANDONED', message });
  deps.log({ runId, index, abandoned }, 'shard abandoned too often: run failed');
}

/**
 * Puts shards whose worker stopped heart-beating back on the queue, unless they were abandoned
 * more than SHARD_RETRIES times: then their run fails (a shard that crashes its process every
 * time would otherwise be re-issued forever).
 */
export async function recoverStaleShards(
  deps: Pick<LifecycleDeps, 'pool' | 'boss' | 'staleAfterMs' | 'shardRetries' | 'log'>,
) {
  return inTransaction(deps.pool, async (client) => {
    const { rows } = await client.query<{
      run_id: string;
      index: number;
      start: number;
      count: number;
      attempts: number;
      abandoned: number;
    }>(
      `UPDATE run_shards s
          SET status = CASE WHEN s.abandoned >= $2 THEN 'failed' ELSE 'pending' END,
              abandoned = s.abandoned + 1, worker_id = NULL, progress = 0,
              heartbeat_at = CASE WHEN s.abandoned >= $2 THEN now() END
         FROM runs r
        WHERE r.id = s.run_id AND r.status IN ${ACTIVE}
          AND s.status = 'running' AND s.heartbeat_at < now() - make_interval(secs => $1)
        RETURNING s.run_id, s.index, s.start, s.count, s.attempts, s.abandoned`,
      [deps.staleAfterMs / 1000, deps.shardRetries],
    );
    const again = rows.filter((r) => r.abandoned <= deps.shardRetries);
    if (again.length) {
      await deps.boss.insert(
        again.map((r) => shardJob(r.run_id, r.index, r.attempts)),
        onClient(client),
      );
      deps.log({ shards: again.map((r) => `${r.run_id}:${r.index}`) }, 'requeued shards of a dead worker');
    }
    for (const r of rows) {
      if (!again.includes(r)) await failAbandoned(client, deps, { runId: r.run_id, ...r });
    }
    // (failAbandoned updated the progress of the others.)
    for (const runId of new Set(again.map((r) => r.run_id))) await updateRunProgress(client, runId);
    return rows.length;
  });
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
  return inTransaction(deps.pool, async (client) => {
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
    return jobs.length;
  });
}

/** Writes a shard's partial statistics and syncs them, so that a row naming the file is true. */
async function writePartialFile(file: string, bytes: Uint8Array) {
  await mkdir(path.dirname(file), { recursive: true });
  const handle = await open(file, 'w');
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function removeRunPartials(deps: Pick<LifecycleDeps, 'partialsDir' | 'log'>, runId: string) {
  await rm(path.join(deps.partialsDir, runId), { recursive: true, force: true }).catch((err) =>
    deps.log({ runId, err: String(err) }, 'could not remove partial statistics'),
  );
}

/**
 * Removes the partial statistics of runs that are over (or gone): left by a process that died
 * after a run's results were stored, by shards that finished after their run was canceled or
 * failed, and by runs that failed with some shards done. Runs that may still merge keep theirs.
 */
export async function removeOrphanedPartials(deps: Pick<LifecycleDeps, 'pool' | 'partialsDir' | 'log'>) {
  const names = await readdir(deps.partialsDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  const folders = names.filter(isUuid);
  if (!folders.length) return 0;
  const { rows } = await deps.pool.query<{ id: string }>(
    `SELECT id FROM runs WHERE id = ANY($1::uuid[]) AND status IN ${ACTIVE}`,
    [folders],
  );
  const active = new Set(rows.map((r) => r.id));
  const over = folders.filter((name) => !active.has(name.toLowerCase()));
  for (const name of over) await removeRunPartials(deps, name);
  return over.length;
}

export const newWorkerId = () => `w-${randomUUID().slice(0, 8)}`;
