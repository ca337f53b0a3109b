// invariance eval: upload (or reuse) model and dataset, submit the sweep with its gates, wait,
// report, and exit with the verdict's code.
import type { ApiClient } from '../api/client.js';
import type { Baseline, Dataset, Gate, Model, Run } from '../api/types.js';
import { pushDataset, pushModel } from '../api/upload.js';
import {
  CONNECTION_OPTIONS,
  type Family,
  FLAG_TRANSFORMS,
  parseBaseline,
  parseClassNames,
  parseCommand,
  parseDuration,
  parseGate,
  parseJsonObject,
  parseList,
  parsePositiveInt,
  parseSweep,
  TRANSFORM_FLAGS,
} from '../args.js';
import { ProblemError, UsageError } from '../errors.js';
import { createProgress } from '../progress.js';
import { datasetRef, describeTimeout, modelRef } from '../report/outcome.js';
import { waitForRun } from '../wait.js';
import { connect, emitReport, type Io, logger, printHelp } from './common.js';
import { buildReport, cancelRun } from './report.js';

const sweepOption = { type: 'string', multiple: true } as const;

export const EVAL_OPTIONS = {
  ...CONNECTION_OPTIONS,
  model: { type: 'string' },
  'model-id': { type: 'string' },
  'model-name': { type: 'string' },
  images: { type: 'string' },
  labels: { type: 'string' },
  dataset: { type: 'string' },
  'dataset-id': { type: 'string' },
  'dataset-name': { type: 'string' },
  'class-names': { type: 'string' },
  preprocessing: { type: 'string' },
  rotate: sweepOption,
  scale: sweepOption,
  translate: sweepOption,
  'translate-x': sweepOption,
  'translate-y': sweepOption,
  shear: sweepOption,
  brightness: sweepOption,
  contrast: sweepOption,
  gamma: sweepOption,
  blur: sweepOption,
  noise: sweepOption,
  dilate: sweepOption,
  erode: sweepOption,
  background: sweepOption,
  hflip: { type: 'boolean', multiple: true },
  vflip: { type: 'boolean', multiple: true },
  transform: sweepOption,
  grid: { type: 'boolean' },
  resize: { type: 'boolean' },
  metrics: { type: 'string' },
  'nv-layers': { type: 'string' },
  limit: { type: 'string' },
  gate: { type: 'string', multiple: true },
  baseline: { type: 'string' },
  name: { type: 'string' },
  tag: { type: 'string', multiple: true },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  junit: { type: 'string' },
  markdown: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
} as const;

const METRICS = ['accuracy', 'ekld', 'nv'];

/** The sweep flags in command-line order, as transform families. */
export function sweepFromTokens(
  tokens: ReadonlyArray<{ kind: string; name?: string; value?: string }>,
): Family[] {
  const families: Family[] = [];
  for (const t of tokens) {
    if (t.kind !== 'option' || !t.name) continue;
    const flag = `--${t.name}`;
    if (t.name in TRANSFORM_FLAGS) families.push(parseSweep(flag, TRANSFORM_FLAGS[t.name], t.value ?? ''));
    else if (t.name in FLAG_TRANSFORMS) families.push({ type: FLAG_TRANSFORMS[t.name] });
    else if (t.name === 'transform') {
      const f = parseJsonObject(t.value ?? '', flag);
      if (typeof f.type !== 'string')
        throw new UsageError(`${flag}: a transform family needs a "type"`, 'eval');
      families.push(f as Family);
    }
  }
  return families;
}

/** A 400 naming `gates` or `baseline` as unknown fields: the server predates gates. */
function explainUnsupportedGates(err: unknown): unknown {
  if (!(err instanceof ProblemError) || err.problem.status !== 400) return err;
  const errors = Array.isArray(err.problem.errors)
    ? (err.problem.errors as Array<{ property?: unknown }>)
    : [];
  if (!errors.some((e) => e.property === 'gates' || e.property === 'baseline')) return err;
  return new ProblemError(
    { ...err.problem, detail: `${err.problem.detail} (this server does not support --gate/--baseline yet)` },
    err.request,
  );
}

export async function evalCommand(argv: string[], io: Io): Promise<number> {
  const { values, tokens } = parseCommand('eval', argv, EVAL_OPTIONS);
  if (values.help) return printHelp(io, 'eval');

  // Every usage check before the first request.
  const client = connect(values, io, 'eval');
  if (!values.model === !values['model-id'])
    throw new UsageError('give one of --model FILE or --model-id ID', 'eval');
  const idx = values.images !== undefined || values.labels !== undefined;
  if (idx && !(values.images && values.labels))
    throw new UsageError('--images and --labels go together', 'eval');
  const datasetSources = [idx, values.dataset !== undefined, values['dataset-id'] !== undefined].filter(
    Boolean,
  ).length;
  if (datasetSources !== 1) {
    throw new UsageError('give one of --images with --labels, --dataset FILE, or --dataset-id ID', 'eval');
  }
  const families = sweepFromTokens(tokens);
  if (families.length === 0) {
    throw new UsageError('no transforms: give at least one sweep flag, e.g. --rotate -180:180:15', 'eval');
  }
  const gates: Gate[] = (values.gate ?? []).map(parseGate);
  const baseline: Baseline | undefined = values.baseline ? parseBaseline(values.baseline) : undefined;
  const preprocessing = values.preprocessing
    ? parseJsonObject(values.preprocessing, '--preprocessing')
    : undefined;
  const limit = values.limit !== undefined ? parsePositiveInt(values.limit, '--limit') : undefined;
  const timeoutMs = values.timeout !== undefined ? parseDuration(values.timeout, '--timeout') : undefined;
  const classNames = values['class-names'] !== undefined ? parseClassNames(values['class-names']) : undefined;
  let metrics = values.metrics !== undefined ? parseList(values.metrics) : undefined;
  for (const m of metrics ?? []) {
    if (!METRICS.includes(m))
      throw new UsageError(`--metrics: unknown metric "${m}" (accuracy, ekld, nv)`, 'eval');
  }
  let nv: { layers: 'all' | string[] } | undefined;
  const layers = values['nv-layers']?.trim();
  if (layers === 'none') metrics = (metrics ?? METRICS).filter((m) => m !== 'nv');
  else if (layers === 'all') nv = { layers: 'all' };
  else if (layers !== undefined) {
    const list = parseList(layers);
    if (list.length === 0) throw new UsageError('--nv-layers: expected all, none or layer names', 'eval');
    nv = { layers: list };
  }
  if (nv && metrics && !metrics.includes('nv'))
    throw new UsageError('--nv-layers needs the nv metric', 'eval');
  const tags = (values.tag ?? []).flatMap(parseList);
  const log = logger(io, values.quiet);

  let model: Model;
  let modelReused: boolean | undefined;
  if (values['model-id']) {
    model = await client.get<Model>(`/v1/models/${encodeURIComponent(values['model-id'])}`);
  } else {
    const pushed = await pushModel(
      client,
      values.model as string,
      { name: values['model-name'], preprocessing: values.preprocessing },
      log,
    );
    model = pushed.item;
    modelReused = pushed.reused;
  }
  log(
    `model ${model.name} ${model.id}${modelReused === undefined ? '' : modelReused ? ' (reused)' : ' (uploaded)'}`,
  );

  let dataset: Dataset;
  let datasetReused: boolean | undefined;
  if (values['dataset-id']) {
    dataset = await client.get<Dataset>(`/v1/datasets/${encodeURIComponent(values['dataset-id'])}`);
  } else {
    const source = values.dataset
      ? { file: values.dataset }
      : { images: values.images as string, labels: values.labels as string };
    const pushed = await pushDataset(client, source, { name: values['dataset-name'], classNames }, log);
    dataset = pushed.item;
    datasetReused = pushed.reused;
  }
  log(
    `dataset ${dataset.name} ${dataset.id} (${dataset.count} images)${datasetReused === undefined ? '' : datasetReused ? ' (reused)' : ' (uploaded)'}`,
  );

  const request: Record<string, unknown> = {
    modelId: model.id,
    datasetId: dataset.id,
    transforms: values.grid ? [{ type: 'grid', of: families }] : families,
  };
  if (values.name !== undefined) request.name = values.name;
  if (tags.length) request.tags = tags;
  if (metrics) request.metrics = metrics;
  if (nv) request.nv = nv;
  if (preprocessing) request.preprocessing = preprocessing;
  if (limit !== undefined) request.limit = limit;
  if (values.resize) request.resize = true;
  // Only when asked: a server without gates then still takes the run.
  if (gates.length) request.gates = gates;
  if (baseline) request.baseline = baseline;

  let submitted: Run;
  try {
    submitted = (await client.post<Run>('/v1/runs', request)).body;
  } catch (err) {
    throw explainUnsupportedGates(err);
  }
  log(
    `run ${submitted.id} ${submitted.status}: ${submitted.progress.total.toLocaleString('en-US')} inferences`,
  );

  const report = await waitWithCancel(client, submitted, { timeoutMs, quiet: values.quiet, io, log });
  return emitReport(
    io,
    await buildReport(client, report.run, {
      timedOutAfterMs: report.timedOut ? timeoutMs : undefined,
      gatesRequested: gates.length > 0,
      gates,
      model: modelRef(model, modelReused),
      dataset: datasetRef(dataset, datasetReused),
    }),
    { json: values.json, files: { junit: values.junit, markdown: values.markdown }, client },
  );
}

/**
 * Waits for the run this command started. On --timeout, and on Ctrl-C / SIGTERM, the run is
 * canceled: a CI job that gave up should not leave the service computing for nobody.
 */
async function waitWithCancel(
  client: ApiClient,
  submitted: Run,
  opts: { timeoutMs?: number; quiet?: boolean; io: Io; log: (line: string) => void },
): Promise<{ run: Run; timedOut: boolean }> {
  const progress = createProgress(opts.io.stderr, { quiet: opts.quiet });
  const onSignal = (signal: NodeJS.Signals) => {
    progress.end();
    opts.io.stderr.write(`invariance: ${signal}: canceling run ${submitted.id}\n`);
    const exit = () => process.exit(signal === 'SIGINT' ? 130 : 143);
    setTimeout(exit, 5000).unref();
    cancelRun(client, submitted.id, opts.log).finally(exit);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const waited = await waitForRun(client, submitted.id, {
      progress,
      timeoutMs: opts.timeoutMs,
      initial: submitted,
    });
    if (!waited.timedOut) return waited;
    opts.log(`--timeout ${describeTimeout(opts.timeoutMs ?? 0)} reached: canceling run ${submitted.id}`);
    const after = await cancelRun(client, submitted.id, opts.log);
    return { run: after ?? waited.run, timedOut: after?.status !== 'succeeded' };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
