// Use-cases for runs. Submission validates everything against the model and dataset, then
// writes the run, its shards and their queue jobs in one transaction: either all exist or none.
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type PgBoss from 'pg-boss';
import {
  buildRunSpec,
  type DatasetFacts,
  type ModelFacts,
  type RunLimits,
  type RunRequest,
  type RunSpec,
  RunSpecError,
} from '../domain/runSpec.js';
import { pointKey, type TransformPoint } from '../domain/sweep.js';
import { toEngineOps } from '../engine/pointOps.js';
import { reduceOps } from '../engine/transformGraph.js';
import { AppError, notFound } from '../http/problem.js';
import { onClient, shardJob } from '../jobs/queue.js';
import { isUuid } from '../store/ids.js';
import type { RunRepository, RunStatus, RunView } from '../store/runRepository.js';
import { inTransaction } from '../store/transaction.js';

export interface RunServiceDeps {
  pool: pg.Pool;
  boss: PgBoss;
  runs: RunRepository;
  limits: RunLimits;
  /** Inferences per shard (a shard is one queue job and one persisted partial). */
  shardInferences: number;
  /** Split at least this many ways so every engine thread gets work. */
  minShards: number;
}

export function planShards(
  samples: number,
  imagesPerSample: number,
  shardInferences: number,
  minShards: number,
) {
  const byWork = Math.ceil((samples * imagesPerSample) / Math.max(1, shardInferences));
  const count = Math.min(samples, Math.max(1, byWork, minShards));
  const size = Math.ceil(samples / count);
  const shards: Array<{ index: number; start: number; count: number }> = [];
  for (let start = 0, index = 0; start < samples; start += size, index++) {
    shards.push({ index, start, count: Math.min(size, samples - start) });
  }
  return shards;
}

/**
 * Every point must compile into a transform graph (the engine's own reduction, without its
 * per-pixel scan): a geometric map that overflows or cannot be inverted at this image size, e.g.
 * scale 1e300 or 1e-9, is refused now with 422 INVALID_SWEEP instead of failing the run later.
 */
function checkPointsRunnable(spec: RunSpec, points: readonly TransformPoint[]): void {
  const { height, width, channels } = spec.input;
  for (const point of points) {
    try {
      reduceOps(toEngineOps(point.ops), { height, width, channels }, false);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new AppError(
        422,
        'INVALID_SWEEP',
        `transform point ${pointKey(point.params) || '(identity)'} cannot be applied to ${width}x${height} images: ${reason}`,
      );
    }
  }
}

export async function submitRun(deps: RunServiceDeps, req: RunRequest): Promise<RunView> {
  const { pool } = deps;
  const [model, dataset] = await Promise.all([
    isUuid(req.modelId)
      ? pool.query('SELECT inputs, outputs, layers, preprocessing FROM models WHERE id = $1', [req.modelId])
      : null,
    isUuid(req.datasetId)
      ? pool.query('SELECT count, width, height, channels, classes FROM datasets WHERE id = $1', [
          req.datasetId,
        ])
      : null,
  ]);
  if (!model?.rows[0]) throw new AppError(422, 'MODEL_NOT_FOUND', `model ${req.modelId} does not exist`);
  if (!dataset?.rows[0])
    throw new AppError(422, 'DATASET_NOT_FOUND', `dataset ${req.datasetId} does not exist`);

  let built: ReturnType<typeof buildRunSpec>;
  try {
    built = buildRunSpec(req, model.rows[0] as ModelFacts, dataset.rows[0] as DatasetFacts, deps.limits);
  } catch (err) {
    if (err instanceof RunSpecError) throw new AppError(422, err.code, err.message);
    throw err;
  }
  const { spec } = built;
  checkPointsRunnable(spec, built.points);
  const imagesPerSample = spec.points + 1;
  const shards = planShards(spec.limit, imagesPerSample, deps.shardInferences, deps.minShards);
  const id = randomUUID();

  try {
    await inTransaction(pool, async (client) => {
      await client.query(
        `INSERT INTO runs (id, model_id, dataset_id, name, tags, status, request, progress_total)
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7)`,
        [
          id,
          spec.modelId,
          spec.datasetId,
          spec.name,
          spec.tags,
          JSON.stringify(spec),
          spec.limit * imagesPerSample,
        ],
      );
      await client.query(
        `INSERT INTO run_shards (run_id, index, start, count)
         SELECT $1, * FROM unnest($2::int[], $3::int[], $4::int[])`,
        [id, shards.map((s) => s.index), shards.map((s) => s.start), shards.map((s) => s.count)],
      );
      await deps.boss.insert(
        shards.map((s) => shardJob(id, s.index, 0)),
        onClient(client),
      );
    });
  } catch (err) {
    // The model or dataset was deleted between the checks above and the insert.
    if ((err as { code?: unknown }).code === '23503') {
      const constraint = String((err as { constraint?: unknown }).constraint ?? '');
      throw constraint.includes('dataset')
        ? new AppError(422, 'DATASET_NOT_FOUND', `dataset ${req.datasetId} does not exist`)
        : new AppError(422, 'MODEL_NOT_FOUND', `model ${req.modelId} does not exist`);
    }
    throw err;
  }
  const view = await deps.runs.findById(id);
  if (!view) throw new Error('run vanished after insert');
  return view;
}

export async function getRun(runs: RunRepository, id: string): Promise<RunView> {
  const run = isUuid(id) ? await runs.findById(id) : null;
  if (!run) throw notFound('run', id);
  return run;
}

/** 409 RUN_NOT_FINISHED unless the run has succeeded: `what` (results, charts, ...) exist only then. */
export function requireSucceeded(id: string, status: RunStatus, what: string): void {
  if (status !== 'succeeded') {
    throw new AppError(
      409,
      'RUN_NOT_FINISHED',
      `run ${id} is ${status}; ${what} exist once it has succeeded`,
      {
        runStatus: status,
      },
    );
  }
}

export async function getResults(runs: RunRepository, id: string): Promise<unknown> {
  const row = isUuid(id) ? await runs.results(id) : null;
  if (!row) throw notFound('run', id);
  requireSucceeded(id, row.status, 'results');
  return row.results;
}

/** A succeeded run with its results, for what is derived from them (charts, examples). */
export async function getSucceededRun(
  runs: RunRepository,
  id: string,
  what: string,
): Promise<{ run: RunView; results: unknown }> {
  const run = await getRun(runs, id);
  requireSucceeded(id, run.status, what);
  const row = await runs.results(id);
  return { run, results: row?.results ?? null };
}

export async function cancelRun(runs: RunRepository, id: string): Promise<RunView> {
  const run = await getRun(runs, id);
  if (!(await runs.cancel(id))) {
    throw new AppError(409, 'RUN_FINISHED', `run ${id} is already ${run.status}`, { runStatus: run.status });
  }
  return getRun(runs, id);
}

/**
 * Deletes a finished run (succeeded, failed or canceled) with everything that belongs to it: its
 * rows (runRepository.deleteFinished, one transaction) and then the partial statistics of its
 * shards, DATA_DIR/partials/<id>/. 404 for unknown ids, 409 RUN_ACTIVE while it is queued or
 * running. Other runs that used it as their baseline keep their stored verdicts.
 */
export async function deleteRun(
  deps: { runs: RunRepository; partialsDir: string },
  id: string,
): Promise<void> {
  const { deleted, status } = isUuid(id)
    ? await deps.runs.deleteFinished(id)
    : { deleted: false, status: null };
  if (status === null) throw notFound('run', id);
  if (!deleted) {
    throw new AppError(
      409,
      'RUN_ACTIVE',
      `run ${id} is ${status}; cancel it first with POST /v1/runs/${id}/cancel`,
      { runStatus: status },
    );
  }
  // After the commit, and never an error to the caller: the run is gone. A shard of a canceled run
  // that finishes late finds no run and removes its own file; the workers' janitor removes
  // whatever is left in folders of runs that no longer exist.
  await rm(path.join(deps.partialsDir, id.toLowerCase()), { recursive: true, force: true }).catch(
    () => undefined,
  );
}
