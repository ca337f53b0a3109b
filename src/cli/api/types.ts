// The service's JSON shapes as the CLI reads them (openapi.yaml), kept loose where the CLI only
// passes data through. `verdict`, `gates` and `baseline` belong to the gates contract of issue 4.

export type RunStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
export const FINISHED: readonly RunStatus[] = ['succeeded', 'failed', 'canceled'];

export type VerdictStatus = 'PASS' | 'WARN' | 'FAIL' | 'ERROR';
export type GateOp = '<' | '<=' | '>' | '>=' | 'maxDrop' | 'maxIncrease';
export const GATE_OPS: readonly GateOp[] = ['<=', '>=', '<', '>', 'maxDrop', 'maxIncrease'];

/** A gate as sent to the service (`gates` of POST /v1/runs and /v1/runs/{id}/verdict). */
export interface Gate {
  name?: string;
  metric: string;
  op: GateOp;
  /** A number, or for maxDrop / maxIncrease a relative change like "2%". */
  value: number | string;
  severity?: 'fail' | 'warn';
  [extra: string]: unknown;
}

/** `baseline` of POST /v1/runs: a run, or the latest succeeded run of a model name with a tag. */
export type Baseline = { runId: string } | { model: string; tag: string };

/** One evaluated gate of a verdict. */
export interface GateResult {
  name: string;
  metric: string;
  op: string;
  value: number | string;
  actual: number | null;
  baseline?: number | null;
  passed: boolean;
  status?: VerdictStatus;
  severity?: 'fail' | 'warn';
  message: string;
  [extra: string]: unknown;
}

export interface Verdict {
  status: VerdictStatus;
  gates: GateResult[];
  [extra: string]: unknown;
}

export interface RunSummary {
  samples: number;
  points: number;
  accuracy: { clean: number | null; mean: number | null; min: number | null; worstCase: number | null };
  consistency: number | null;
  tta: number | null;
  ekld?: number | null;
  nv?: Record<string, number | null>;
}

export interface Run {
  id: string;
  status: RunStatus;
  name: string | null;
  tags: string[];
  modelId: string;
  datasetId: string;
  progress: { done: number; total: number };
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: { code: string; message: string; [extra: string]: unknown } | null;
  request: Record<string, unknown>;
  summary: RunSummary | null;
  timings: { totalMs?: number; [extra: string]: unknown } | null;
  verdict?: Verdict | null;
  [extra: string]: unknown;
}

export type PointParams = Record<string, number | boolean | number[]>;

export interface RunPoint {
  params: PointParams;
  accuracy: number | null;
  consistency: number | null;
  ekld?: number | null;
  perClassAccuracy: Array<number | null>;
}

export interface NvLayerResult {
  layer: string;
  aggregation: string;
  dispersion: string;
  perClass: boolean;
  nv: number | null;
  tv: number | null;
  sv: number | null;
  finite: number;
  infinite: number;
  total: number;
  samples: number;
}

export interface RunResults {
  samples: number;
  nonFiniteSamples: number;
  clean: { accuracy: number | null; perClassAccuracy: Array<number | null> };
  points: RunPoint[];
  accuracy: { mean: number | null; min: number | null; max: number | null; worstCase: number | null };
  consistency: { mean: number | null; min: number | null };
  tta: { accuracy: number | null };
  ekld?: {
    overall: number | null;
    infinitePairs: number;
    perClass: Array<{ class: number; name: string; count: number; value: number | null }>;
  };
  nv?: NvLayerResult[];
}

export interface Model {
  id: string;
  sha256: string;
  name: string;
  version: string | null;
  tags: string[];
  sizeBytes: number;
  layers: Array<{ name: string; opType: string }>;
  createdAt: string;
  [extra: string]: unknown;
}

export interface Dataset {
  id: string;
  sha256: string;
  name: string;
  format: string;
  count: number;
  width: number;
  height: number;
  channels: number;
  classes: Array<{ index: number; name: string; count: number }>;
  createdAt: string;
  [extra: string]: unknown;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
