// A run request, checked against the model and dataset it names and normalised into the spec
// that is stored with the run and drives the engine. Everything knowable at submission is
// checked here, so a run never fails later for a reason that was visible up front.
import { GATES_VERSION, GateError, type NormalizedGate, validateGates } from './gates.js';
import { expandSweep, SweepError, type TransformFamily, type TransformPoint } from './sweep.js';

export type Metric = 'accuracy' | 'ekld' | 'nv';
export type Aggregation = 'none' | 'mean';
export type Dispersion = 'std' | 'variance';
export type Layout = 'NCHW' | 'NHWC';

export interface Preprocessing {
  mean: number[];
  std: number[];
  layout: Layout;
  outputIsProbability: boolean;
}

export interface RunRequest {
  modelId: string;
  datasetId: string;
  name?: string;
  tags?: string[];
  transforms: TransformFamily[];
  combine?: 'concat';
  metrics?: Metric[];
  nv?: {
    layers?: 'all' | string[];
    aggregation?: Aggregation[];
    dispersion?: Dispersion;
    perClass?: boolean;
  };
  preprocessing?: Partial<Preprocessing>;
  limit?: number;
  classSizes?: number[] | null;
  resize?: boolean;
  gates?: unknown[];
  baseline?: Baseline | null;
}

/** A baseline run: by id, or the latest succeeded run of a model name carrying a tag. */
export type Baseline = { runId: string } | { model: string; tag: string };

export interface ModelFacts {
  inputs: Array<{ name: string; type: string; shape: Array<number | string | null> | null }>;
  outputs: Array<{ name: string; type: string; shape: Array<number | string | null> | null }>;
  layers: Array<{
    name: string;
    opType: string;
    shape: Array<number | string | null> | null;
    /** false: NV cannot be measured on it (see reason); absent in models stored before it was recorded. */
    measurable?: boolean;
    reason?: string;
  }>;
  preprocessing: Preprocessing;
}

export interface DatasetFacts {
  count: number;
  width: number;
  height: number;
  channels: number;
  classes: Array<{ index: number; name: string; count: number }>;
}

/** What the engine needs; stored as the run's `request` (with the client's fields kept). */
export interface RunSpec {
  modelId: string;
  datasetId: string;
  name: string | null;
  tags: string[];
  transforms: TransformFamily[];
  combine: 'concat';
  metrics: Metric[];
  nv: { layers: string[]; aggregation: Aggregation[]; dispersion: Dispersion; perClass: boolean };
  preprocessing: Preprocessing;
  limit: number;
  classSizes: number[] | null;
  resize: boolean;
  /** Resolved from the model. */
  input: { name: string; height: number; width: number; channels: number; batch: number | null };
  output: string;
  /** Number of transform points (the clean image is extra). */
  points: number;
  gatesVersion: typeof GATES_VERSION;
  gates: NormalizedGate[];
  baseline: Baseline | null;
}

export class RunSpecError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface RunLimits {
  maxRunInferences: number;
  maxPoints: number;
  /** Largest model input (height x width) a run feeds; unchecked when absent. */
  maxImagePixels?: number;
}

function imageDims(
  shape: Array<number | string | null> | null,
  layout: Layout,
): { h: number | null; w: number | null; c: number | null; n: number | null } {
  if (shape?.length !== 4) return { h: null, w: null, c: null, n: null };
  const num = (v: number | string | null) => (typeof v === 'number' && v > 0 ? v : null);
  return layout === 'NCHW'
    ? { n: num(shape[0]), c: num(shape[1]), h: num(shape[2]), w: num(shape[3]) }
    : { n: num(shape[0]), h: num(shape[1]), w: num(shape[2]), c: num(shape[3]) };
}

function formatShape(shape: Array<number | string | null> | null): string {
  return shape ? `[${shape.map((d) => d ?? '?').join(',')}]` : '(shape unknown)';
}

type OutputFacts = ModelFacts['outputs'][number];

/**
 * The number of classes of an output read as one score vector per image, or undefined when the
 * output cannot be one: a float32 tensor (or of unknown type) of shape [N, K], or [N, K] with
 * extra dims of size 1 ([N, 1, K], [N, K, 1, 1]); null when K is not known (symbolic dims or an
 * unknown shape: checked when the model runs).
 */
function scoreVectorClasses(output: OutputFacts): number | null | undefined {
  if (output.type !== 'float32' && output.type !== 'unknown') return undefined;
  const shape = output.shape;
  if (!shape) return null;
  if (shape.length < 2) return undefined;
  const rest = shape.slice(1).filter((d) => d !== 1);
  if (rest.length === 0) return 1;
  if (rest.length > 1) return undefined;
  const k = rest[0];
  return typeof k === 'number' && k > 0 ? k : null;
}

/**
 * The output the service reads as the classifier's scores: the first output when it is one
 * (see scoreVectorClasses), else the first other output that is (e.g. the probabilities of a
 * model whose first output is the predicted label, as scikit-learn converters emit); null when
 * none is.
 */
export function classifierOutput(
  outputs: readonly OutputFacts[],
): { output: OutputFacts; classes: number | null } | null {
  for (const output of outputs) {
    const classes = scoreVectorClasses(output);
    if (classes !== undefined) return { output, classes };
  }
  return null;
}

export function buildRunSpec(
  req: RunRequest,
  model: ModelFacts,
  dataset: DatasetFacts,
  limits: RunLimits,
): { spec: RunSpec; points: TransformPoint[] } {
  let points: TransformPoint[];
  try {
    points = expandSweep(req.transforms, { maxPoints: limits.maxPoints });
  } catch (err) {
    if (err instanceof SweepError) throw new RunSpecError(err.code, err.message);
    throw err;
  }
  if (points.length === 0) throw new RunSpecError('INVALID_SWEEP', 'the sweep has no transform points');

  const allMetrics: Metric[] = ['accuracy', 'ekld', 'nv'];
  const metrics: Metric[] = [...new Set(req.metrics ?? allMetrics)];
  const pre: Preprocessing = { ...model.preprocessing, ...(req.preprocessing ?? {}) };
  const input = model.inputs[0];
  if (!input) throw new RunSpecError('UNSUPPORTED_MODEL', 'the model has no input');
  const dims = imageDims(input.shape, pre.layout);
  const channels = dims.c ?? dataset.channels;
  if (channels !== dataset.channels) {
    throw new RunSpecError(
      'CHANNELS_MISMATCH',
      `the model input ${input.name} takes ${channels} channel(s), the dataset has ${dataset.channels}`,
    );
  }
  for (const [what, values] of [
    ['mean', pre.mean],
    ['std', pre.std],
  ] as const) {
    if (values.length !== channels) {
      throw new RunSpecError(
        'INVALID_PREPROCESSING',
        `preprocessing.${what} has ${values.length} value(s), the input has ${channels} channel(s)`,
      );
    }
    if (values.some((v) => !Number.isFinite(v) || (what === 'std' && v <= 0))) {
      throw new RunSpecError(
        'INVALID_PREPROCESSING',
        `preprocessing.${what} must be finite${what === 'std' ? ' and > 0' : ''}`,
      );
    }
  }
  const height = dims.h ?? dataset.height;
  const width = dims.w ?? dataset.width;
  const resize = req.resize ?? false;
  if ((height !== dataset.height || width !== dataset.width) && !resize) {
    throw new RunSpecError(
      'INPUT_SIZE_MISMATCH',
      `the model takes ${width}x${height} images, the dataset has ${dataset.width}x${dataset.height}; ask for "resize": true to resize them`,
    );
  }

  if (limits.maxImagePixels !== undefined && height * width > limits.maxImagePixels) {
    throw new RunSpecError(
      'INPUT_TOO_LARGE',
      `the model takes ${width}x${height} images, more than the ${limits.maxImagePixels} pixels a run may feed (MAX_IMAGE_PIXELS)`,
    );
  }

  if (input.type !== 'float32') {
    throw new RunSpecError(
      'UNSUPPORTED_MODEL',
      `the model input ${input.name} is ${input.type}; runs feed float32 images, so only models with a ` +
        'float32 input can be evaluated (export it with a float32 input, e.g. a Cast node after it)',
    );
  }

  // The classifier output: one score vector per image (see classifierOutput). Checked here, not
  // at upload, because a model registry may hold models for NV only, and the number of classes
  // is known only against a dataset.
  const chosen = classifierOutput(model.outputs);
  if (!chosen) {
    const output = model.outputs[0];
    if (!output) throw new RunSpecError('UNSUPPORTED_MODEL', 'the model has no output');
    const others = model.outputs.length > 1 ? ' (nor is any other output of the model)' : '';
    throw new RunSpecError(
      'UNSUPPORTED_OUTPUT',
      `the model output ${output.name} is ${output.type} ${formatShape(output.shape)}; a classifier output must be ` +
        `float32 scores [N, classes] (extra dims of size 1 allowed, e.g. [N, 1, classes] or [N, classes, 1, 1])${others}`,
    );
  }
  const { output, classes: outClasses } = chosen;
  const classes = dataset.classes.length;
  if (outClasses !== null && outClasses < classes) {
    const used = dataset.classes.filter((c) => c.count > 0).length;
    const hint =
      used < classes
        ? ` (the dataset's labels go up to ${classes - 1}, so it has ${classes} classes of which ${used} have samples; ` +
          'class indices are the labels themselves, 0-based)'
        : '';
    throw new RunSpecError(
      'OUTPUT_CLASSES_MISMATCH',
      `the model output ${output.name} has ${outClasses} classes, the dataset has ${classes}${hint}`,
    );
  }
  // A model whose input batch is symbolic but whose output has a fixed batch (e.g. an export that
  // reshapes to [1, -1]) only runs with that batch size: feed it that many images at a time.
  const outBatch = output.shape?.[0];
  const batch = dims.n ?? (typeof outBatch === 'number' && outBatch > 0 ? outBatch : null);

  const limit = Math.min(req.limit ?? dataset.count, dataset.count);
  if (!Number.isSafeInteger(limit) || limit < 1)
    throw new RunSpecError('INVALID_LIMIT', 'limit must be an integer >= 1');
  const inferences = limit * (points.length + 1);
  if (inferences > limits.maxRunInferences) {
    throw new RunSpecError(
      'RUN_TOO_LARGE',
      `${limit} samples x ${points.length + 1} images each = ${inferences} inferences, above the limit of ${limits.maxRunInferences}`,
    );
  }

  let layers: string[] = [];
  if (metrics.includes('nv')) {
    const known = new Map(model.layers.map((l) => [l.name, l]));
    const asked = req.nv?.layers ?? 'all';
    // "all": every layer NV can be measured on (float32, batch first); others are listed, not run.
    layers =
      asked === 'all'
        ? model.layers.filter((l) => l.measurable !== false).map((l) => l.name)
        : [...new Set(asked)];
    const unknown = layers.filter((l) => !known.has(l));
    if (unknown.length) {
      throw new RunSpecError(
        'UNKNOWN_LAYER',
        `unknown layer(s) ${unknown.map((u) => JSON.stringify(u)).join(', ')}; GET /v1/models/{id} lists the model's layers`,
      );
    }
    const unmeasurable = layers.map((l) => known.get(l)).filter((l) => l?.measurable === false);
    if (unmeasurable.length) {
      throw new RunSpecError(
        'LAYER_NOT_MEASURABLE',
        `normalized variance cannot be measured on ${unmeasurable
          .map((l) => `${JSON.stringify(l?.name)} (${l?.reason ?? 'not measurable'})`)
          .join(', ')}`,
      );
    }
    if (layers.length === 0) {
      throw new RunSpecError(
        'UNKNOWN_LAYER',
        asked === 'all'
          ? 'the model has no layer normalized variance can be measured on (float32, batch first); leave "nv" out of metrics'
          : 'nv.layers is empty',
      );
    }
    if (points.length < 2) {
      throw new RunSpecError('INVALID_SWEEP', 'normalized variance needs at least 2 transform points');
    }
    if (limit < 2) throw new RunSpecError('INVALID_LIMIT', 'normalized variance needs at least 2 samples');
  }

  const classSizes = req.classSizes ?? null;
  if (classSizes && classSizes.length !== classes) {
    throw new RunSpecError(
      'INVALID_CLASS_SIZES',
      `classSizes has ${classSizes.length} entries, the dataset has ${classes} classes`,
    );
  }

  let gates: NormalizedGate[];
  try {
    gates = validateGates(req.gates, {
      points: points.map((p) => p.params),
      classNames: dataset.classes.map((c) => c.name),
      metrics,
      nv: { layers, aggregation: req.nv?.aggregation ?? ['mean'] },
    });
  } catch (err) {
    if (err instanceof GateError) throw new RunSpecError(err.code, err.message);
    throw err;
  }

  const spec: RunSpec = {
    modelId: req.modelId,
    datasetId: req.datasetId,
    name: req.name ?? null,
    tags: [...new Set(req.tags ?? [])],
    transforms: req.transforms,
    combine: 'concat',
    metrics,
    nv: {
      layers,
      aggregation: [...new Set<Aggregation>(req.nv?.aggregation ?? ['mean'])],
      dispersion: req.nv?.dispersion ?? 'std',
      perClass: req.nv?.perClass ?? false,
    },
    preprocessing: pre,
    limit,
    classSizes,
    resize,
    input: { name: input.name, height, width, channels, batch },
    output: output.name,
    points: points.length,
    gatesVersion: GATES_VERSION,
    gates,
    baseline: req.baseline ?? null,
  };
  return { spec, points };
}
