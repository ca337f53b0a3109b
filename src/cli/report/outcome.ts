// What a finished (or abandoned) run means for CI: the outcome and its exit code, and the report
// object every output format (text, JSON, JUnit, Markdown) is rendered from.
import { writeFile } from 'node:fs/promises';
import type { Dataset, Gate, Model, Run, RunResults, Verdict } from '../api/types.js';
import { CliError, EXIT } from '../errors.js';
import { renderJunit } from './junit.js';
import { renderMarkdown } from './markdown.js';

export type OutcomeStatus =
  | 'PASS'
  | 'WARN'
  | 'FAIL'
  | 'ERROR'
  | 'SUCCEEDED'
  | 'RUN_FAILED'
  | 'RUN_CANCELED'
  | 'TIMEOUT'
  /** Not finished yet (`runs get` of a queued or running run). */
  | 'PENDING';

export interface Outcome {
  status: OutcomeStatus;
  exitCode: 0 | 1 | 3;
  reason: string;
}

export interface ItemRef {
  id: string;
  name: string;
  sha256: string;
  /** The service already had it (no upload stored anything); undefined when not uploaded here. */
  reused?: boolean;
  count?: number;
}

export interface Report {
  outcome: Outcome;
  run: Run;
  model: ItemRef | null;
  dataset: ItemRef | null;
  results: RunResults | null;
  verdict: Verdict | null;
  /** The gates asked for (from the request): reported as not evaluated when there is no verdict. */
  gates: Gate[];
  /** Server-rendered SVG charts saved next to the Markdown file (relative file names). */
  charts?: Array<{ name: string; file: string; url: string }>;
}

export function modelRef(m: Model, reused?: boolean): ItemRef {
  return { id: m.id, name: m.name, sha256: m.sha256, ...(reused === undefined ? {} : { reused }) };
}

export function datasetRef(d: Dataset, reused?: boolean): ItemRef {
  return {
    id: d.id,
    name: d.name,
    sha256: d.sha256,
    count: d.count,
    ...(reused === undefined ? {} : { reused }),
  };
}

export function describeTimeout(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

/**
 * Exit codes: 0 PASS or WARN (or no gates and the run succeeded), 1 FAIL or ERROR (an ERROR verdict,
 * e.g. a missing baseline, must fail the build too), 3 run failed or canceled, or timeout.
 */
export function decideOutcome(
  run: Run,
  verdict: Verdict | null,
  opts: { timedOutAfterMs?: number; gatesRequested?: boolean } = {},
): Outcome {
  if (opts.timedOutAfterMs !== undefined && run.status !== 'succeeded') {
    return {
      status: 'TIMEOUT',
      exitCode: EXIT.service,
      reason: `run ${run.id} did not finish within ${describeTimeout(opts.timedOutAfterMs)} (--timeout; ${
        run.status === 'canceled' ? 'canceled' : `still ${run.status}`
      } at ${run.progress.done}/${run.progress.total} inferences)`,
    };
  }
  if (run.status === 'failed') {
    const why = run.error ? `${run.error.code}: ${run.error.message}` : 'no reason given';
    return { status: 'RUN_FAILED', exitCode: EXIT.service, reason: `run ${run.id} failed: ${why}` };
  }
  if (run.status === 'canceled') {
    return { status: 'RUN_CANCELED', exitCode: EXIT.service, reason: `run ${run.id} was canceled` };
  }
  if (run.status !== 'succeeded') {
    return {
      status: 'PENDING',
      exitCode: EXIT.service,
      reason: `run ${run.id} is still ${run.status} (${run.progress.done}/${run.progress.total} inferences)`,
    };
  }
  if (verdict) {
    const failing = verdict.gates.filter((g) => !g.passed).length;
    const reason = `verdict ${verdict.status}: ${verdict.gates.length - failing} of ${verdict.gates.length} gates passed`;
    return {
      status: verdict.status,
      exitCode: verdict.status === 'PASS' || verdict.status === 'WARN' ? EXIT.ok : EXIT.failed,
      reason,
    };
  }
  if (opts.gatesRequested) {
    return {
      status: 'ERROR',
      exitCode: EXIT.failed,
      reason: `run ${run.id} succeeded but the service returned no verdict for its gates`,
    };
  }
  return { status: 'SUCCEEDED', exitCode: EXIT.ok, reason: `run ${run.id} succeeded` };
}

/** The gates a run was submitted with, as the service stored them (RunSpec), if any. */
export function requestedGates(run: Run): Gate[] {
  const g = run.request.gates;
  return Array.isArray(g) ? (g as Gate[]) : [];
}

/** The object `--json` prints. */
export function jsonReport(r: Report) {
  return {
    outcome: r.outcome,
    run: r.run,
    model: r.model,
    dataset: r.dataset,
    results: r.results,
    verdict: r.verdict,
  };
}

export interface ReportFiles {
  junit?: string;
  markdown?: string;
}

export async function writeReportFiles(r: Report, files: ReportFiles): Promise<void> {
  const writes: Array<[string, string]> = [];
  if (files.junit) writes.push([files.junit, renderJunit(r)]);
  if (files.markdown) writes.push([files.markdown, renderMarkdown(r)]);
  for (const [file, text] of writes) {
    try {
      await writeFile(file, text);
    } catch (err) {
      throw new CliError(`cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`, EXIT.usage);
    }
  }
}
