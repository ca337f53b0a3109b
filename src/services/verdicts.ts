// Verdicts: a run's gates evaluated against its results and, for baseline ops, against the
// results of a baseline run (given by id, or the latest succeeded run of a model name that
// carries a tag, on the same dataset and sweep). A baseline that cannot be found makes the
// gates that need it ERROR with the reason: never a silent pass.
import type pg from 'pg';
import { compareResults, incomparability } from '../domain/compare.js';
import {
  evaluateGates,
  type Gate,
  GateError,
  gateContextFromResults,
  type RunResults,
  type Verdict,
  validateGates,
} from '../domain/gates.js';
import type { Baseline } from '../domain/runSpec.js';
import { AppError, notFound } from '../http/problem.js';
import { isUuid } from '../store/ids.js';
import type { RunStatus } from '../store/runRepository.js';
import { requireSucceeded } from './runs.js';

export interface ResolvedBaseline {
  runId: string | null;
  results: RunResults | null;
  /** Why there is no baseline, when there is none. */
  reason?: string;
}

export type VerdictWithBaseline = Verdict & { baseline: { runId: string } | null };

export async function resolveBaseline(
  pool: pg.Pool | pg.PoolClient,
  run: { id: string; datasetId: string },
  baseline: Baseline | null,
  results: RunResults,
): Promise<ResolvedBaseline> {
  if (!baseline) return { runId: null, results: null, reason: 'no baseline was given' };
  if ('runId' in baseline) {
    const { rows } = isUuid(baseline.runId)
      ? await pool.query<{ status: string; results: RunResults | null }>(
          'SELECT status, results FROM runs WHERE id = $1',
          [baseline.runId],
        )
      : { rows: [] };
    const row = rows[0];
    if (!row) return { runId: null, results: null, reason: `baseline run ${baseline.runId} does not exist` };
    if (row.status !== 'succeeded' || !row.results) {
      return { runId: null, results: null, reason: `baseline run ${baseline.runId} is ${row.status}` };
    }
    const why = incomparability(results, row.results);
    if (why) return { runId: null, results: null, reason: `baseline run ${baseline.runId}: ${why}` };
    return { runId: baseline.runId, results: row.results };
  }
  const { rows } = await pool.query<{ id: string; results: RunResults }>(
    `SELECT r.id, r.results FROM runs r JOIN models m ON m.id = r.model_id
      WHERE m.name = $1 AND $2 = ANY(r.tags) AND r.status = 'succeeded' AND r.dataset_id = $3 AND r.id <> $4
      ORDER BY r.finished_at DESC, r.id DESC LIMIT 50`,
    [baseline.model, baseline.tag, run.datasetId, run.id],
  );
  const match = rows.find((r) => r.results && incomparability(results, r.results) === null);
  if (!match) {
    return {
      runId: null,
      results: null,
      reason: `no succeeded run of model "${baseline.model}" tagged "${baseline.tag}" on this dataset and sweep`,
    };
  }
  return { runId: match.id, results: match.results };
}

export async function computeVerdict(
  pool: pg.Pool | pg.PoolClient,
  run: { id: string; datasetId: string },
  gates: readonly Gate[],
  baseline: Baseline | null,
  results: RunResults,
): Promise<VerdictWithBaseline | null> {
  if (gates.length === 0) return null;
  const base = await resolveBaseline(pool, run, baseline, results);
  const verdict = evaluateGates(gates, results, base.results, { baselineMissingReason: base.reason });
  return verdict ? { ...verdict, baseline: base.runId ? { runId: base.runId } : null } : null;
}

async function finishedRun(pool: pg.Pool, id: string) {
  const { rows } = isUuid(id)
    ? await pool.query<{
        id: string;
        dataset_id: string;
        status: string;
        results: RunResults | null;
        classes: Array<{ name: string }>;
      }>(
        `SELECT r.id, r.dataset_id, r.status, r.results, d.classes
           FROM runs r JOIN datasets d ON d.id = r.dataset_id WHERE r.id = $1`,
        [id],
      )
    : { rows: [] };
  const row = rows[0];
  if (!row) throw notFound('run', id);
  // A run's results are written in the same UPDATE that marks it succeeded.
  requireSucceeded(id, row.status as RunStatus, 'results to judge');
  return { ...row, results: row.results as RunResults };
}

/** POST /v1/runs/{id}/verdict: new gates against a finished run, without re-running it. */
export async function evaluateVerdict(
  pool: pg.Pool,
  id: string,
  body: { gates: unknown[]; baseline?: Baseline | null },
): Promise<VerdictWithBaseline> {
  const run = await finishedRun(pool, id);
  let gates: Gate[];
  try {
    gates = validateGates(
      body.gates,
      gateContextFromResults(
        run.results,
        run.classes.map((c) => c.name),
      ),
    );
  } catch (err) {
    if (err instanceof GateError) throw new AppError(422, err.code, err.message);
    throw err;
  }
  if (gates.length === 0) throw new AppError(422, 'INVALID_GATE', 'give at least one gate');
  const verdict = await computeVerdict(
    pool,
    { id: run.id, datasetId: run.dataset_id },
    gates,
    body.baseline ?? null,
    run.results,
  );
  return verdict!;
}

/** GET /v1/runs/{id}/compare?baseline=: per point, class and layer deltas. */
export async function compareRuns(pool: pg.Pool, id: string, baselineId: string) {
  const [run, base] = await Promise.all([finishedRun(pool, id), finishedRun(pool, baselineId)]);
  const cmp = compareResults(run.results, base.results, { classNames: run.classes.map((c) => c.name) });
  if (!cmp.comparable) throw new AppError(409, 'NOT_COMPARABLE', cmp.reason);
  return { runId: id, baselineRunId: baselineId, ...cmp };
}
