// From a run the CLI waited for (or looked up) to the report: results, verdict, outcome.
import type { ApiClient } from '../api/client.js';
import type { Dataset, Gate, Model, Run, RunResults } from '../api/types.js';
import { ProblemError } from '../errors.js';
import {
  datasetRef,
  decideOutcome,
  type ItemRef,
  modelRef,
  type Report,
  requestedGates,
} from '../report/outcome.js';
import { awaitVerdict } from '../wait.js';

export interface BuildReportOptions {
  timedOutAfterMs?: number;
  /** Gates were sent with the run: a succeeded run must then carry a verdict. */
  gatesRequested?: boolean;
  /** The gates sent (default: those the service stored in the run's request). */
  gates?: Gate[];
  model?: ItemRef | null;
  dataset?: ItemRef | null;
}

/** Model and dataset of a run for the report, when the CLI did not upload them itself. */
export async function lookupRefs(
  client: ApiClient,
  run: Run,
): Promise<{ model: ItemRef | null; dataset: ItemRef | null }> {
  const get = async <T>(path: string): Promise<T | null> => {
    try {
      return await client.get<T>(path);
    } catch (err) {
      if (err instanceof ProblemError && err.problem.status < 500) return null;
      throw err;
    }
  };
  const [model, dataset] = await Promise.all([
    get<Model>(`/v1/models/${encodeURIComponent(run.modelId)}`),
    get<Dataset>(`/v1/datasets/${encodeURIComponent(run.datasetId)}`),
  ]);
  return { model: model ? modelRef(model) : null, dataset: dataset ? datasetRef(dataset) : null };
}

export async function buildReport(
  client: ApiClient,
  run: Run,
  opts: BuildReportOptions = {},
): Promise<Report> {
  let final = run;
  let results: RunResults | null = null;
  const gates = opts.gates ?? requestedGates(run);
  const gatesRequested = opts.gatesRequested ?? gates.length > 0;
  if (final.status === 'succeeded') {
    if (gatesRequested && !final.verdict) final = await awaitVerdict(client, final);
    results = await client.get<RunResults>(`/v1/runs/${encodeURIComponent(final.id)}/results`, {
      retry: true,
    });
  }
  const verdict = final.status === 'succeeded' ? (final.verdict ?? null) : null;
  const refs =
    opts.model !== undefined && opts.dataset !== undefined
      ? { model: opts.model, dataset: opts.dataset }
      : await lookupRefs(client, final);
  return {
    outcome: decideOutcome(final, verdict, { timedOutAfterMs: opts.timedOutAfterMs, gatesRequested }),
    run: final,
    model: refs.model,
    dataset: refs.dataset,
    results,
    verdict,
    gates,
  };
}

/** Cancels a run, best effort: the run as it is afterwards, or null when the service did not answer. */
export async function cancelRun(
  client: ApiClient,
  id: string,
  log: (line: string) => void,
): Promise<Run | null> {
  try {
    return (await client.post<Run>(`/v1/runs/${encodeURIComponent(id)}/cancel`)).body;
  } catch (err) {
    if (err instanceof ProblemError && err.problem.status === 409) {
      // It finished meanwhile.
      return client.get<Run>(`/v1/runs/${encodeURIComponent(id)}`).catch(() => null);
    }
    log(`could not cancel run ${id}: ${(err as Error).message}`);
    return null;
  }
}
