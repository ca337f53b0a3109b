// invariance runs get|list|wait|verdict|cancel
import type { Baseline, Run, RunResults, Verdict } from '../api/types.js';
import {
  CONNECTION_OPTIONS,
  parseBaseline,
  parseCommand,
  parseDuration,
  parseGate,
  parsePositiveInt,
} from '../args.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { createProgress } from '../progress.js';
import { textTable } from '../report/format.js';
import { decideOutcome, jsonReport, type Report } from '../report/outcome.js';
import { renderReport } from '../report/text.js';
import { waitForRun } from '../wait.js';
import { connect, emitReport, type Io, printHelp, printJson } from './common.js';
import { listAll } from './list.js';
import { buildReport, lookupRefs } from './report.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'];

const OPTIONS = {
  get: { ...CONNECTION_OPTIONS, json: { type: 'boolean' } },
  list: {
    ...CONNECTION_OPTIONS,
    tag: { type: 'string' },
    status: { type: 'string' },
    verdict: { type: 'string' },
    'model-id': { type: 'string' },
    'dataset-id': { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  },
  wait: {
    ...CONNECTION_OPTIONS,
    timeout: { type: 'string' },
    json: { type: 'boolean' },
    junit: { type: 'string' },
    markdown: { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
  },
  verdict: {
    ...CONNECTION_OPTIONS,
    gate: { type: 'string', multiple: true },
    baseline: { type: 'string' },
    json: { type: 'boolean' },
    junit: { type: 'string' },
    markdown: { type: 'string' },
  },
  cancel: { ...CONNECTION_OPTIONS, json: { type: 'boolean' } },
} as const;

const runPath = (id: string, suffix = '') => `/v1/runs/${encodeURIComponent(id)}${suffix}`;

function oneId(positionals: string[], sub: string): string {
  if (positionals.length !== 1)
    throw new UsageError(`runs ${sub} takes one run id: runs ${sub} <id>`, 'runs');
  return positionals[0];
}

const VERDICT_STATUSES = ['PASS', 'WARN', 'FAIL', 'ERROR'];

/** The verdict in an answer of POST /v1/runs/{id}/verdict: the verdict itself, or wrapped in `verdict`. */
export function verdictOf(body: unknown): Verdict | null {
  if (!body || typeof body !== 'object') return null;
  const b = body as Record<string, unknown>;
  if (typeof b.status === 'string' && VERDICT_STATUSES.includes(b.status) && Array.isArray(b.gates)) {
    return b as unknown as Verdict;
  }
  return 'verdict' in b ? verdictOf(b.verdict) : null;
}

export async function runsCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return printHelp(io, 'runs');

  if (sub === 'get') {
    const { values, positionals } = parseCommand('runs get', rest, OPTIONS.get, true);
    if (values.help) return printHelp(io, 'runs');
    const id = oneId(positionals, sub);
    const client = connect(values, io, 'runs');
    const run = await client.get<Run>(runPath(id));
    const report = await buildReport(client, run);
    if (values.json) printJson(io, jsonReport(report));
    else io.stdout.write(renderReport(report));
    return 0;
  }

  if (sub === 'list') {
    const { values, positionals } = parseCommand('runs list', rest, OPTIONS.list, true);
    if (values.help) return printHelp(io, 'runs');
    if (positionals.length)
      throw new UsageError(`runs list takes no arguments (got ${positionals[0]})`, 'runs');
    if (values.status !== undefined && !STATUSES.includes(values.status)) {
      throw new UsageError(`--status: one of ${STATUSES.join(', ')}`, 'runs');
    }
    const limit = values.limit !== undefined ? parsePositiveInt(values.limit, '--limit', 100_000) : 50;
    const client = connect(values, io, 'runs');
    const page = await listAll<Run>(
      client,
      '/v1/runs',
      {
        tag: values.tag,
        status: values.status,
        modelId: values['model-id'],
        datasetId: values['dataset-id'],
      },
      limit,
    );
    if (values.json) printJson(io, page);
    else {
      io.stdout.write(
        `${textTable(
          ['id', 'status', 'progress', 'verdict', 'name', 'tags', 'model', 'created'],
          page.items.map((r) => [
            r.id,
            r.status,
            `${r.progress.total ? Math.floor((100 * r.progress.done) / r.progress.total) : 0}%`,
            r.verdict?.status ?? '-',
            r.name ?? '-',
            r.tags.join(',') || '-',
            r.modelId,
            r.createdAt,
          ]),
        )}\n`,
      );
    }
    return 0;
  }

  if (sub === 'wait') {
    const { values, positionals } = parseCommand('runs wait', rest, OPTIONS.wait, true);
    if (values.help) return printHelp(io, 'runs');
    const id = oneId(positionals, sub);
    const timeoutMs = values.timeout !== undefined ? parseDuration(values.timeout, '--timeout') : undefined;
    const client = connect(values, io, 'runs');
    const progress = createProgress(io.stderr, { quiet: values.quiet });
    const { run, timedOut } = await waitForRun(client, id, { progress, timeoutMs });
    const report = await buildReport(client, run, { timedOutAfterMs: timedOut ? timeoutMs : undefined });
    return emitReport(io, report, {
      json: values.json,
      files: { junit: values.junit, markdown: values.markdown },
      client,
    });
  }

  if (sub === 'verdict') {
    const { values, positionals } = parseCommand('runs verdict', rest, OPTIONS.verdict, true);
    if (values.help) return printHelp(io, 'runs');
    const id = oneId(positionals, sub);
    const gates = (values.gate ?? []).map(parseGate);
    if (gates.length === 0) throw new UsageError('runs verdict needs at least one --gate', 'runs');
    const baseline: Baseline | undefined = values.baseline ? parseBaseline(values.baseline) : undefined;
    const client = connect(values, io, 'runs');
    const answer = await client.post<unknown>(runPath(id, '/verdict'), {
      gates,
      ...(baseline ? { baseline } : {}),
    });
    const verdict = verdictOf(answer.body);
    if (!verdict)
      throw new CliError(`POST ${runPath(id, '/verdict')}: the answer holds no verdict`, EXIT.service);
    const run = await client.get<Run>(runPath(id));
    const results =
      run.status === 'succeeded'
        ? await client.get<RunResults>(runPath(id, '/results')).catch(() => null)
        : null;
    const refs = await lookupRefs(client, run);
    const report: Report = {
      outcome: decideOutcome({ ...run, status: 'succeeded' }, verdict),
      run,
      ...refs,
      results,
      verdict,
      gates,
    };
    return emitReport(io, report, {
      json: values.json,
      files: { junit: values.junit, markdown: values.markdown },
      client,
    });
  }

  if (sub === 'cancel') {
    const { values, positionals } = parseCommand('runs cancel', rest, OPTIONS.cancel, true);
    if (values.help) return printHelp(io, 'runs');
    const id = oneId(positionals, sub);
    const client = connect(values, io, 'runs');
    const run = (await client.post<Run>(runPath(id, '/cancel'))).body;
    if (values.json) printJson(io, run);
    else io.stdout.write(`run ${run.id} ${run.status}\n`);
    return 0;
  }

  throw new UsageError(`unknown command "runs ${sub}" (get, list, wait, verdict, cancel)`, 'runs');
}
