// Gates: declarative conditions on a run's results (issue 4), and the verdict they give. Pure: no I/O.
//
// A gate is JSON, stored with the run (`gatesVersion: 1`):
//   {name?, metric, op, value, severity?: 'fail' | 'warn'}          (severity default 'fail')
// Metric paths: accuracy.clean | accuracy.mean | accuracy.min | accuracy.max |
//   accuracy.worstCase | accuracy.at(<point>) | consistency.mean | consistency.min |
//   consistency.at(<point>) | tta.accuracy | ekld.overall | ekld.at(<point>) |
//   ekld.class(<index or name>) | nv.layer(<layer>[,<aggregation>]) | tv.layer(...) | sv.layer(...)
// - <point> is a point key as `parsePointKey` reads it (`rotate=90`, `scale=1.2, rotate=15`,
//   `translate=[2,-3]`, `hflip`); it matches the sweep's point with the same params in any order,
//   numbers compared numerically (`rotate=90.0` is `rotate=90`).
// - Names (classes, layers) are either quoted, "..." or '...' with backslash escaping the next
//   character, or bare: everything up to the next `,` `(` `)`, surrounding spaces trimmed (so
//   `ekld.class(Ankle boot)` and `nv.layer(/Relu_output_0)` need no quotes, `ekld.class("Shirt (men)")`
//   does). A bare number in ekld.class() is a class index; a quoted one is a name.
// - nv.layer without an aggregation means the run's first aggregation (its first entry for the layer).
// Ops: `<` `<=` `>` `>=` compare with `value` (a number); `maxDrop` / `maxIncrease` compare with the
// baseline run's value of the same metric, `value` being the allowed change: a number >= 0
// (absolute) or a string like "2%" (relative to the baseline's absolute value).
// Values within a relative 1e-9 of each other count as equal (accuracy means carry float noise).
//
// Verdict: one outcome per gate, PASS / WARN (failed warn gate) / FAIL (failed fail gate) / ERROR
// (the gate cannot be decided: metric null or absent in the results, baseline op without a
// baseline, baseline lacking the metric, invalid gate). Overall: ERROR if any gate is ERROR, else
// FAIL if any FAIL, else WARN if any WARN, else PASS. No gates: no verdict (null).
import type { Aggregation } from './normalizedVariance.js';
import { type PointParams, parsePointKey, pointKey, SweepError, samePoint } from './sweep.js';

export const GATES_VERSION = 1;
/** Most gates one run may carry. */
export const MAX_GATES = 100;
const MAX_METRIC_LENGTH = 1000;
const MAX_NAME_LENGTH = 200;
/** Relative tolerance under which two values count as equal. */
const REL_EPS = 1e-9;

export type GateOp = '<' | '<=' | '>' | '>=' | 'maxDrop' | 'maxIncrease';
export type GateSeverity = 'fail' | 'warn';
export type VerdictStatus = 'PASS' | 'WARN' | 'FAIL' | 'ERROR';

export const GATE_OPS: readonly GateOp[] = ['<', '<=', '>', '>=', 'maxDrop', 'maxIncrease'];
const AGGREGATIONS: readonly Aggregation[] = ['none', 'mean'];

/** A gate as submitted. `value`: a number, or for maxDrop / maxIncrease also a percentage like "2%". */
export interface Gate {
  name?: string;
  metric: string;
  op: GateOp;
  value: number | string;
  severity?: GateSeverity;
}

/** A validated gate: canonical metric text, name and severity filled in. What is stored with the run. */
export interface NormalizedGate {
  /** Given, or the gate's expression, e.g. `accuracy.at(rotate=90) >= 0.8`. */
  name: string;
  metric: string;
  op: GateOp;
  /** A number, or a canonical percentage string ("2%") for maxDrop / maxIncrease. */
  value: number | string;
  severity: GateSeverity;
}

export type SummaryMetric =
  | 'accuracy.clean'
  | 'accuracy.mean'
  | 'accuracy.min'
  | 'accuracy.max'
  | 'accuracy.worstCase'
  | 'consistency.mean'
  | 'consistency.min'
  | 'tta.accuracy'
  | 'ekld.overall';
export type PointMetric = 'accuracy' | 'consistency' | 'ekld';
export type LayerMetric = 'nv' | 'tv' | 'sv';

/** A parsed metric path. */
export type MetricRef =
  | { kind: 'summary'; path: SummaryMetric }
  | { kind: 'point'; metric: PointMetric; params: PointParams }
  | { kind: 'class'; metric: 'ekld'; class: number | string }
  | { kind: 'layer'; metric: LayerMetric; layer: string; aggregation: Aggregation | null };

/** What a gate can be checked against at submission. */
export interface GateContext {
  /** The sweep's points' params, in order. */
  points: readonly PointParams[];
  /** Class names by index. */
  classNames: readonly string[];
  /** The metrics the run computes (accuracy, consistency and tta are always there). */
  metrics: readonly string[];
  /** The layers the run computes NV for, and its aggregations (the first is the default). */
  nv: { layers: readonly string[]; aggregation: readonly string[] };
}

// ---------------------------------------------------------------------------------------------
// Results (the `/results` document; fields the gates and comparisons read)

export interface ResultsPoint {
  params: PointParams;
  accuracy: number | null;
  consistency: number | null;
  /** Absent when the run did not compute ekld. */
  ekld?: number | null;
  perClassAccuracy: readonly (number | null)[];
}
export interface ResultsClassEkld {
  class: number;
  name: string;
  count?: number;
  value: number | null;
  classSize?: number | null;
}
export interface ResultsNvLayer {
  layer: string;
  aggregation: string;
  dispersion?: string;
  perClass?: boolean;
  nv: number | null;
  tv: number | null;
  sv: number | null;
  finite?: number;
  infinite?: number;
  total?: number;
  samples?: number;
  classesUsed?: number;
}
export interface RunResults {
  samples: number;
  nonFiniteSamples?: number;
  clean: { accuracy: number | null; perClassAccuracy: readonly (number | null)[] };
  points: readonly ResultsPoint[];
  accuracy: { mean: number | null; min: number | null; max: number | null; worstCase: number | null };
  consistency: { mean: number | null; min: number | null };
  tta: { accuracy: number | null };
  ekld?: { overall: number | null; infinitePairs?: number; perClass: readonly ResultsClassEkld[] };
  nv?: readonly ResultsNvLayer[];
}

// ---------------------------------------------------------------------------------------------
// Errors

/** An invalid gate. `statusCode` 422 and `code` INVALID_GATE for the HTTP layer. */
export class GateError extends Error {
  readonly statusCode = 422;
  readonly code = 'INVALID_GATE';
  constructor(
    message: string,
    /** Index of the gate in the submitted list, when known. */
    readonly index: number | null = null,
    /** Where in the request, e.g. `gates[2].metric`. */
    readonly path: string | null = null,
  ) {
    super(message);
    this.name = 'GateError';
  }
}

/** Internal: what is wrong, without saying where. */
class Problem extends Error {}

// ---------------------------------------------------------------------------------------------
// Metric paths

const SUMMARY: Readonly<Record<string, readonly string[]>> = {
  accuracy: ['clean', 'mean', 'min', 'max', 'worstCase'],
  consistency: ['mean', 'min'],
  tta: ['accuracy'],
  ekld: ['overall'],
};
const FAMILIES = ['accuracy', 'consistency', 'tta', 'ekld', 'nv', 'tv', 'sv'];
const NUMBER_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function selectorsOf(family: string): string[] {
  const out = [...(SUMMARY[family] ?? [])];
  if (family === 'accuracy' || family === 'consistency' || family === 'ekld') out.push('at(<point>)');
  if (family === 'ekld') out.push('class(<index or name>)');
  if (family === 'nv' || family === 'tv' || family === 'sv') out.push('layer(<name>[,<aggregation>])');
  return out;
}

function snippet(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}...` : s);
}

function skipWs(text: string, i: number): number {
  while (i < text.length && /\s/.test(text[i])) i++;
  return i;
}

function readIdent(text: string, i: number): { name: string; end: number } | null {
  const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i));
  return m ? { name: m[0], end: i + m[0].length } : null;
}

interface Arg {
  text: string;
  quoted: boolean;
}

/** Arguments of class() / layer(), from just after '(' to just after the matching ')'. */
function readArgs(text: string, start: number, what: string): { args: Arg[]; end: number } {
  const args: Arg[] = [];
  let i = start;
  for (;;) {
    i = skipWs(text, i);
    const q = text[i];
    if (q === '"' || q === "'") {
      let s = '';
      let j = i + 1;
      for (; j < text.length && text[j] !== q; j++) {
        if (text[j] === '\\' && j + 1 < text.length) j++;
        s += text[j];
      }
      if (j >= text.length) throw new Problem(`${what}: unterminated quoted name (missing ${q})`);
      args.push({ text: s, quoted: true });
      i = skipWs(text, j + 1);
    } else {
      let j = i;
      while (j < text.length && !',()'.includes(text[j])) j++;
      const s = text.slice(i, j).trim();
      if (s === '' && !(args.length === 0 && text[j] === ')')) {
        throw new Problem(`${what}: empty argument`);
      }
      if (s !== '') args.push({ text: s, quoted: false });
      i = j;
    }
    const ch = text[i];
    if (ch === ',') {
      i++;
      continue;
    }
    if (ch === ')') return { args, end: i + 1 };
    if (ch === undefined) throw new Problem(`${what}: missing ')'`);
    if (ch === '(') {
      throw new Problem(`${what}: unexpected '('; quote names that contain parentheses, e.g. "a (b)"`);
    }
    throw new Problem(`${what}: unexpected ${snippet(text.slice(i))} after a quoted name`);
  }
}

/** The point key inside at(...), from just after '(' to just after the matching ')'. */
function readPointArgs(text: string, start: number, what: string): { params: PointParams; end: number } {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const ch = text[i];
    if (ch === '[') depth++;
    else if (ch === ']') depth--;
    else if (ch === '(' || ch === '"' || ch === "'") {
      throw new Problem(`${what}: unexpected '${ch}' in the point (write it as rotate=15,scale=1.2)`);
    } else if (ch === ')' && depth <= 0) {
      const raw = text.slice(start, i);
      if (raw.trim() === '') throw new Problem(`${what}: give the point's params, e.g. ${what}(rotate=90)`);
      try {
        return { params: parsePointKey(raw), end: i + 1 };
      } catch (err) {
        if (err instanceof SweepError) throw new Problem(`${what}: ${err.message}`);
        throw err;
      }
    }
  }
  throw new Problem(`${what}: missing ')'`);
}

/** Parses a metric path starting at `start`; returns it and where it ends. */
function scanMetric(text: string, start: number): { ref: MetricRef; end: number } {
  let i = skipWs(text, start);
  const fam = readIdent(text, i);
  if (!fam) {
    throw new Problem(
      text.slice(i).trim() === ''
        ? 'the metric is empty'
        : `expected a metric such as accuracy.mean, got ${snippet(text.slice(i))}`,
    );
  }
  const family = fam.name;
  if (!FAMILIES.includes(family)) {
    throw new Problem(`unknown metric '${family}' (known: ${FAMILIES.join(', ')})`);
  }
  i = skipWs(text, fam.end);
  const known = () => `${family} has: ${selectorsOf(family).join(', ')}`;
  if (text[i] !== '.') throw new Problem(`'${family}' needs a part after '.' (${known()})`);
  i = skipWs(text, i + 1);
  const sel = readIdent(text, i);
  if (!sel) throw new Problem(`'${family}.' needs a name (${known()})`);
  const selector = sel.name;
  const what = `${family}.${selector}`;
  i = skipWs(text, sel.end);
  const hasArgs = text[i] === '(';

  if (SUMMARY[family]?.includes(selector)) {
    if (hasArgs) throw new Problem(`${what} takes no arguments`);
    return { ref: { kind: 'summary', path: what as SummaryMetric }, end: sel.end };
  }
  if (selector === 'at' && (family === 'accuracy' || family === 'consistency' || family === 'ekld')) {
    if (!hasArgs) throw new Problem(`${what} needs a point, e.g. ${what}(rotate=90)`);
    const { params, end } = readPointArgs(text, i + 1, what);
    return { ref: { kind: 'point', metric: family, params }, end };
  }
  if (selector === 'class' && family === 'ekld') {
    if (!hasArgs) throw new Problem(`${what} needs a class index or name, e.g. ${what}(3)`);
    const { args, end } = readArgs(text, i + 1, what);
    if (args.length !== 1) {
      throw new Problem(`${what} takes one class index or name, got ${args.length} arguments`);
    }
    const a = args[0];
    if (!a.quoted && NUMBER_RE.test(a.text)) {
      const n = Number(a.text);
      if (!Number.isSafeInteger(n) || n < 0) {
        throw new Problem(`${what}: class index ${a.text} is not an integer >= 0 (quote names: "${a.text}")`);
      }
      return { ref: { kind: 'class', metric: 'ekld', class: n }, end };
    }
    return { ref: { kind: 'class', metric: 'ekld', class: a.text }, end };
  }
  if (selector === 'layer' && (family === 'nv' || family === 'tv' || family === 'sv')) {
    if (!hasArgs) throw new Problem(`${what} needs a layer name, e.g. ${what}(/Relu_output_0)`);
    const { args, end } = readArgs(text, i + 1, what);
    if (args.length < 1 || args.length > 2) {
      throw new Problem(
        `${what} takes a layer name and optionally an aggregation, got ${args.length} arguments`,
      );
    }
    let aggregation: Aggregation | null = null;
    if (args.length === 2) {
      const agg = args[1].text;
      if (!(AGGREGATIONS as readonly string[]).includes(agg)) {
        throw new Problem(`${what}: unknown aggregation '${agg}' (known: ${AGGREGATIONS.join(', ')})`);
      }
      aggregation = agg as Aggregation;
    }
    return { ref: { kind: 'layer', metric: family, layer: args[0].text, aggregation }, end };
  }
  throw new Problem(`unknown metric '${what}' (${known()})`);
}

function toGateError(err: unknown, prefix: string, index: number | null, path: string | null): never {
  if (err instanceof Problem) throw new GateError(`${prefix}: ${err.message}`, index, path);
  throw err;
}

/** Parses a metric path (e.g. `accuracy.at(rotate=90)`). Throws GateError INVALID_GATE. */
export function parseMetricPath(text: string): MetricRef {
  try {
    if (typeof text !== 'string') throw new Problem('the metric must be a string');
    const { ref, end } = scanMetric(text, 0);
    const rest = skipWs(text, end);
    if (rest < text.length) {
      throw new Problem(`unexpected ${snippet(text.slice(rest))} after ${formatMetricPath(ref)}`);
    }
    return ref;
  } catch (err) {
    toGateError(err, `metric ${snippet(String(text))}`, null, null);
  }
}

/** A name as written in a metric path: bare when that reads back the same, else double-quoted. */
function quoteName(s: string, numberNeedsQuotes: boolean): string {
  const bare =
    s !== '' &&
    s === s.trim() &&
    !/[,()\\]/.test(s) &&
    !/^["']/.test(s) &&
    !(numberNeedsQuotes && NUMBER_RE.test(s));
  return bare ? s : `"${s.replace(/[\\"]/g, '\\$&')}"`;
}

/** Canonical text of a metric path; parseMetricPath(formatMetricPath(r)) equals r. */
export function formatMetricPath(ref: MetricRef): string {
  switch (ref.kind) {
    case 'summary':
      return ref.path;
    case 'point':
      return `${ref.metric}.at(${pointKey(ref.params)})`;
    case 'class':
      return `ekld.class(${typeof ref.class === 'number' ? ref.class : quoteName(ref.class, true)})`;
    case 'layer':
      return `${ref.metric}.layer(${quoteName(ref.layer, false)}${ref.aggregation ? `,${ref.aggregation}` : ''})`;
  }
}

function listed(items: readonly string[], max = 20): string {
  if (items.length <= max) return items.join(', ');
  return `${items.slice(0, max).join(', ')}, ... (${items.length} in all)`;
}

/** Checks a metric path against what the run computes. Throws Problem. */
function checkMetric(ref: MetricRef, ctx: GateContext): void {
  const text = formatMetricPath(ref);
  const needs = (metric: string) => {
    if (!ctx.metrics.includes(metric)) {
      throw new Problem(
        `${text}: the run does not compute ${metric} (its metrics: ${ctx.metrics.join(', ') || 'none'})`,
      );
    }
  };
  switch (ref.kind) {
    case 'summary':
      if (ref.path === 'ekld.overall') needs('ekld');
      return;
    case 'point': {
      if (ref.metric === 'ekld') needs('ekld');
      if (!ctx.points.some((p) => samePoint(p, ref.params))) {
        throw new Problem(
          `${text}: the sweep has no point ${pointKey(ref.params)}; its points: ${listed(ctx.points.map(pointKey))}`,
        );
      }
      return;
    }
    case 'class': {
      needs('ekld');
      const k = ctx.classNames.length;
      if (typeof ref.class === 'number') {
        if (ref.class >= k) {
          throw new Problem(
            `${text}: class index ${ref.class} is out of range (the dataset has ${k} classes)`,
          );
        }
        return;
      }
      const hits = ctx.classNames.filter((n) => n === ref.class).length;
      if (hits === 0) {
        throw new Problem(
          `${text}: the dataset has no class named ${JSON.stringify(ref.class)} (its classes: ${listed(ctx.classNames.map((n) => JSON.stringify(n)))})`,
        );
      }
      if (hits > 1) {
        throw new Problem(`${text}: ${hits} classes are named ${JSON.stringify(ref.class)}; use the index`);
      }
      return;
    }
    case 'layer': {
      needs('nv');
      if (!ctx.nv.layers.includes(ref.layer)) {
        throw new Problem(
          `${text}: the run computes NV for no layer ${JSON.stringify(ref.layer)} (its layers: ${listed(ctx.nv.layers.map((n) => JSON.stringify(n)))})`,
        );
      }
      if (ref.aggregation !== null && !ctx.nv.aggregation.includes(ref.aggregation)) {
        throw new Problem(
          `${text}: the run does not aggregate with '${ref.aggregation}' (its aggregations: ${ctx.nv.aggregation.join(', ')})`,
        );
      }
      return;
    }
  }
}

/** Parses a metric path and checks it against a run. Throws GateError INVALID_GATE. */
export function validateMetricPath(text: string, ctx: GateContext): MetricRef {
  const ref = parseMetricPath(text);
  try {
    checkMetric(ref, ctx);
  } catch (err) {
    toGateError(err, `metric ${snippet(text)}`, null, null);
  }
  return ref;
}

/** The context of a finished run, from its results (for gates evaluated after the fact). */
export function gateContextFromResults(results: RunResults, classNames?: readonly string[]): GateContext {
  const nv = results.nv ?? [];
  return {
    points: (results.points ?? []).map((p) => p.params),
    classNames:
      classNames ??
      results.ekld?.perClass.map((c) => c.name) ??
      (results.clean?.perClassAccuracy ?? []).map((_, k) => String(k)),
    metrics: ['accuracy', ...(results.ekld ? ['ekld'] : []), ...(results.nv ? ['nv'] : [])],
    nv: {
      layers: [...new Set(nv.map((e) => e.layer))],
      aggregation: [...new Set(nv.map((e) => e.aggregation))],
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Gates

function isGateOp(op: string): op is GateOp {
  return (GATE_OPS as readonly string[]).includes(op);
}

function isBaselineOp(op: string): boolean {
  return op === 'maxDrop' || op === 'maxIncrease';
}

/** The allowed change of a baseline op: absolute number or a percentage. Throws Problem. */
function parseAllowed(value: number | string): { amount: number; relative: boolean } {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) {
      throw new Problem(`must be a number >= 0 or a percentage like "2%", got ${value}`);
    }
    return { amount: value === 0 ? 0 : value, relative: false };
  }
  const m = value.length <= 40 ? /^\s*(.*?)\s*%\s*$/.exec(value) : null;
  const n = m && NUMBER_RE.test(m[1]) ? Number(m[1]) : Number.NaN;
  if (!m || !Number.isFinite(n) || n < 0) {
    throw new Problem(`must be a number >= 0 or a percentage like "2%", got ${snippet(value)}`);
  }
  return { amount: n === 0 ? 0 : n, relative: true };
}

function valueText(value: number | string): string {
  return typeof value === 'number' ? String(value) : value;
}

/** The compact form of a gate, e.g. `accuracy.at(rotate=90) >= 0.8`, `warn:accuracy.mean maxDrop 2%`. */
export function formatGateExpression(
  gate: Pick<Gate, 'metric' | 'op' | 'value' | 'severity'>,
  withSeverity = false,
): string {
  const prefix = withSeverity && gate.severity === 'warn' ? 'warn:' : '';
  return `${prefix}${gate.metric} ${gate.op} ${valueText(gate.value)}`;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return snippet(v);
  if (typeof v === 'number') return String(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

const GATE_KEYS = ['name', 'metric', 'op', 'value', 'severity'];

/**
 * Validates one submitted gate (any JSON) and normalises it; with a context, checks the metric
 * against the run. Throws GateError INVALID_GATE naming `gates[index]` and what is wrong.
 */
export function validateGate(input: unknown, index: number, ctx?: GateContext | null): NormalizedGate {
  const at = `gates[${index}]`;
  const bad: (field: string | null, message: string) => never = (field, message) => {
    const path = field ? `${at}.${field}` : at;
    throw new GateError(`${path}: ${message}`, index, path);
  };
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    bad(null, `a gate must be an object {metric, op, value, severity?, name?}, got ${describe(input)}`);
  }
  const g = input as Record<string, unknown>;
  for (const k of Object.keys(g)) {
    if (!GATE_KEYS.includes(k)) bad(null, `unknown property '${k}' (known: ${GATE_KEYS.join(', ')})`);
  }
  const { name, metric, op, value, severity } = g;
  if (
    name !== undefined &&
    (typeof name !== 'string' || name.trim() === '' || name.length > MAX_NAME_LENGTH)
  ) {
    bad('name', `must be a non-empty string of at most ${MAX_NAME_LENGTH} characters`);
  }
  if (typeof metric !== 'string' || metric.trim() === '') {
    bad('metric', `must be a metric path such as accuracy.mean, got ${describe(metric)}`);
  }
  if (metric.length > MAX_METRIC_LENGTH) bad('metric', `is longer than ${MAX_METRIC_LENGTH} characters`);
  let ref: MetricRef;
  try {
    const scanned = scanMetric(metric, 0);
    const rest = skipWs(metric, scanned.end);
    if (rest < metric.length) {
      throw new Problem(`unexpected ${snippet(metric.slice(rest))} after ${formatMetricPath(scanned.ref)}`);
    }
    ref = scanned.ref;
    if (ctx) checkMetric(ref, ctx);
  } catch (err) {
    if (err instanceof Problem) bad('metric', err.message);
    throw err;
  }
  if (typeof op !== 'string' || !isGateOp(op)) {
    bad('op', `must be one of ${GATE_OPS.join(', ')}, got ${describe(op)}`);
  }
  let normValue: number | string;
  if (!isBaselineOp(op)) {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      bad(
        'value',
        typeof value === 'string' && value.includes('%')
          ? `a percentage is only allowed with maxDrop and maxIncrease; '${op}' needs a number`
          : `must be a finite number, got ${describe(value)}`,
      );
    }
    normValue = value === 0 ? 0 : value; // -0 -> 0
  } else {
    if (typeof value !== 'number' && typeof value !== 'string') {
      bad('value', `must be a number >= 0 or a percentage like "2%", got ${describe(value)}`);
    }
    try {
      const allowed = parseAllowed(value);
      normValue = allowed.relative ? `${allowed.amount}%` : allowed.amount;
    } catch (err) {
      if (err instanceof Problem) bad('value', err.message);
      throw err;
    }
  }
  if (severity !== undefined && severity !== 'fail' && severity !== 'warn') {
    bad('severity', `must be 'fail' or 'warn', got ${describe(severity)}`);
  }
  const canonical = formatMetricPath(ref);
  return {
    name: typeof name === 'string' ? name : formatGateExpression({ metric: canonical, op, value: normValue }),
    metric: canonical,
    op,
    value: normValue,
    severity: severity === 'warn' ? 'warn' : 'fail',
  };
}

/**
 * Validates a submitted `gates` list (any JSON; undefined or null = no gates) and normalises it;
 * with a context, checks every metric against the run. Throws GateError INVALID_GATE.
 */
export function validateGates(input: unknown, ctx?: GateContext | null): NormalizedGate[] {
  if (input === undefined || input === null) return [];
  if (!Array.isArray(input)) {
    throw new GateError(`gates: must be a list of gates, got ${describe(input)}`, null, 'gates');
  }
  if (input.length > MAX_GATES) {
    throw new GateError(`gates: at most ${MAX_GATES} gates, got ${input.length}`, null, 'gates');
  }
  return input.map((g, i) => validateGate(g, i, ctx));
}

/** True when a gate compares with a baseline (maxDrop / maxIncrease). */
export function gateNeedsBaseline(gate: Pick<Gate, 'op'>): boolean {
  return isBaselineOp(gate.op);
}

/** True when any gate compares with a baseline: the run then needs one. */
export function gatesNeedBaseline(gates: readonly Pick<Gate, 'op'>[]): boolean {
  return gates.some(gateNeedsBaseline);
}

/**
 * The CLI's compact form: `[warn:|fail:]<metric> <op> <value>`, spaces optional around symbolic ops,
 * e.g. `ekld.overall<=0.1`, `accuracy.at(rotate=90)>=0.8`, `warn:accuracy.mean maxDrop 2%`,
 * `nv.layer("/Relu_output_0",mean) < 0.9`. Returns a normalised gate (name = the expression without
 * the severity). Throws GateError INVALID_GATE.
 */
export function parseGateExpression(text: string): NormalizedGate {
  const fail: (message: string) => never = (message) => {
    throw new GateError(`gate ${snippet(String(text))}: ${message}`);
  };
  if (typeof text !== 'string' || text.trim() === '') fail('the gate expression is empty');
  let severity: GateSeverity = 'fail';
  let i = 0;
  const sev = /^\s*(warn|fail)\s*:/i.exec(text);
  if (sev) {
    severity = sev[1].toLowerCase() as GateSeverity;
    i = sev[0].length;
  }
  let ref: MetricRef;
  try {
    const scanned = scanMetric(text, i);
    ref = scanned.ref;
    i = skipWs(text, scanned.end);
  } catch (err) {
    if (err instanceof Problem) fail(err.message);
    throw err;
  }
  const rest = text.slice(i);
  const opMatch = /^(<=|>=|<|>|maxDrop\b|maxIncrease\b)/i.exec(rest);
  if (!opMatch) {
    fail(
      rest.trim() === ''
        ? `missing an operator and a value after ${formatMetricPath(ref)} (e.g. ${formatMetricPath(ref)}>=0.8)`
        : `expected an operator (${GATE_OPS.join(', ')}) after ${formatMetricPath(ref)}, got ${snippet(rest)}`,
    );
  }
  const opText = (opMatch as RegExpExecArray)[1];
  const op = (GATE_OPS.find((o) => o.toLowerCase() === opText.toLowerCase()) ?? opText) as GateOp;
  const rawValue = rest.slice(opText.length).trim();
  let value: number | string;
  if (NUMBER_RE.test(rawValue)) value = Number(rawValue);
  else if (/^\S.*%$/.test(rawValue)) value = rawValue;
  else {
    fail(
      rawValue === ''
        ? `missing a value after '${op}'`
        : `the value ${snippet(rawValue)} is not a number${isBaselineOp(op) ? ' or a percentage like 2%' : ''}`,
    );
  }
  try {
    return validateGate({ metric: formatMetricPath(ref), op, value: value as number | string, severity }, 0);
  } catch (err) {
    if (err instanceof GateError) fail(err.message.replace(/^gates\[0\]\.\w+: /, ''));
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Looking metrics up in results

type Lookup = { ok: true; value: number } | { ok: false; why: string };

function num(v: unknown, what: string, results: RunResults, where: string): Lookup {
  if (typeof v === 'number' && Number.isFinite(v)) return { ok: true, value: v };
  if (v === undefined) return { ok: false, why: `${what} is not in ${where}'s results` };
  const nonFinite = results.nonFiniteSamples ?? 0;
  const hint =
    nonFinite > 0
      ? `${nonFinite} of ${results.samples} samples gave non-finite outputs`
      : 'undefined or not finite';
  return { ok: false, why: `${what} is null in ${where} (${hint})` };
}

/** The value of a metric in a run's results, or why there is none (`where`: "this run", "the baseline run"). */
function lookup(ref: MetricRef, results: RunResults, where = 'this run'): Lookup {
  const what = formatMetricPath(ref);
  const absent = (reason: string): Lookup => ({
    ok: false,
    why: `${what} is not available in ${where} (${reason})`,
  });
  const value = (v: unknown) => num(v, what, results, where);
  switch (ref.kind) {
    case 'summary': {
      const [family, stat] = ref.path.split('.');
      switch (family) {
        case 'accuracy':
          return value(stat === 'clean' ? results.clean?.accuracy : results.accuracy?.[stat as 'mean']);
        case 'consistency':
          return value(results.consistency?.[stat as 'mean']);
        case 'tta':
          return value(results.tta?.accuracy);
        default:
          if (!results.ekld) return absent('it did not compute ekld');
          return value(results.ekld.overall);
      }
    }
    case 'point': {
      const p = (results.points ?? []).find((x) => samePoint(x.params, ref.params));
      if (!p) return absent(`its sweep has no point ${pointKey(ref.params)}`);
      if (ref.metric === 'ekld' && (p.ekld === undefined || !results.ekld)) {
        return absent('it did not compute ekld');
      }
      return value(p[ref.metric]);
    }
    case 'class': {
      if (!results.ekld) return absent('it did not compute ekld');
      const c = results.ekld.perClass.find((x) =>
        typeof ref.class === 'number' ? x.class === ref.class : x.name === ref.class,
      );
      if (!c)
        return absent(
          `it has no class ${typeof ref.class === 'number' ? ref.class : JSON.stringify(ref.class)}`,
        );
      return value(c.value);
    }
    case 'layer': {
      const e = (results.nv ?? []).find(
        (x) => x.layer === ref.layer && (ref.aggregation === null || x.aggregation === ref.aggregation),
      );
      if (!e) {
        return absent(
          `no NV of layer ${JSON.stringify(ref.layer)}${ref.aggregation ? ` with aggregation ${ref.aggregation}` : ''}`,
        );
      }
      return value(e[ref.metric]);
    }
  }
}

/** The value of a metric path in a run's results; null when absent or not finite. Throws GateError on a bad path. */
export function metricValue(results: RunResults, metric: string | MetricRef): number | null {
  const ref = typeof metric === 'string' ? parseMetricPath(metric) : metric;
  const r = lookup(ref, results);
  return r.ok ? r.value : null;
}

// ---------------------------------------------------------------------------------------------
// Number formatting

/** A value for people: 4 significant digits, no exponent between 1e-6 and 1e15, no trailing zeros. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const ax = Math.abs(x);
  if (ax >= 1e15 || ax < 1e-6) return x.toPrecision(4).replace(/\.?0+e/, 'e');
  if (ax >= 1e4) return String(Math.round(x));
  const decimals = Math.min(12, Math.max(0, 3 - Math.floor(Math.log10(ax))));
  return stripZeros(x.toFixed(decimals));
}

function stripZeros(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

function decimalsOf(s: string): number {
  const dot = s.indexOf('.');
  return dot < 0 || s.includes('e') ? 0 : s.length - dot - 1;
}

/**
 * Several values with as many decimals as the most precise of them needs, up to 4 (0.61 and 0.8:
 * "0.61", "0.80"); beyond that each is formatted on its own (0.00001234 and 0.001).
 */
function formatAligned(xs: readonly number[]): string[] {
  const texts = xs.map(formatNumber);
  const d = Math.max(...texts.map(decimalsOf));
  if (d > 4) return texts;
  return xs.map((x, k) =>
    texts[k].includes('e') || !Number.isFinite(x) || decimalsOf(texts[k]) >= d ? texts[k] : x.toFixed(d),
  );
}

function formatPercent(p: number): string {
  if (p === 0) return '0';
  if (p >= 1) return stripZeros(p.toFixed(1));
  if (p >= 0.01) return stripZeros(p.toPrecision(2));
  return '<0.01';
}

// ---------------------------------------------------------------------------------------------
// Evaluation

export interface GateOutcome {
  name: string;
  metric: string;
  op: GateOp;
  value: number | string;
  severity: GateSeverity;
  /** The run's value; null when absent or not finite (status ERROR). */
  actual: number | null;
  /** The baseline's value: present when a baseline run was given or the op needs one. */
  baseline?: number | null;
  /** maxDrop / maxIncrease: actual - baseline. */
  delta?: number | null;
  /** maxDrop / maxIncrease: the allowed change in the metric's units (a percentage resolved). */
  allowed?: number | null;
  passed: boolean;
  status: VerdictStatus;
  message: string;
}

export interface Verdict {
  status: VerdictStatus;
  gatesVersion: typeof GATES_VERSION;
  gates: GateOutcome[];
}

export interface EvaluateOptions {
  /** Why there is no baseline (e.g. "no succeeded run of model prod tagged production"), for messages. */
  baselineMissingReason?: string;
}

const NEGATION: Record<string, string> = { '<': '>=', '<=': '>', '>': '<=', '>=': '<' };

function holds(op: string, a: number, v: number): boolean {
  const eps = REL_EPS * Math.max(Math.abs(a), Math.abs(v));
  switch (op) {
    case '<':
      return a < v - eps;
    case '<=':
      return a <= v + eps;
    case '>':
      return a > v + eps;
    default:
      return a >= v - eps;
  }
}

function evaluateOne(
  gate: NormalizedGate,
  results: RunResults,
  baseline: RunResults | null,
  options: EvaluateOptions,
): GateOutcome {
  const ref = parseMetricPath(gate.metric);
  const { name, metric, op, value, severity } = gate;
  const base = { name, metric, op, value, severity };
  const cur = lookup(ref, results);
  const bas = baseline ? lookup(ref, baseline, 'the baseline run') : null;
  const actual = cur.ok ? cur.value : null;
  const baselineValue = bas?.ok ? bas.value : null;
  const failStatus: VerdictStatus = severity === 'warn' ? 'WARN' : 'FAIL';

  if (!isBaselineOp(op)) {
    const withBaseline = baseline ? { baseline: baselineValue } : {};
    if (!cur.ok) {
      return { ...base, actual, ...withBaseline, passed: false, status: 'ERROR', message: cur.why };
    }
    const threshold = value as number;
    const passed = holds(op, cur.value, threshold);
    const shown = formatAligned(
      baselineValue === null ? [cur.value, threshold] : [cur.value, threshold, baselineValue],
    );
    const rel = passed ? op : NEGATION[op];
    const message = `${metric} = ${shown[0]} ${rel} ${shown[1]}${baselineValue === null ? '' : ` (baseline ${shown[2]})`}`;
    return { ...base, actual, ...withBaseline, passed, status: passed ? 'PASS' : failStatus, message };
  }

  const { amount, relative } = parseAllowed(value);
  const allowedText = relative ? `${amount}%` : formatNumber(amount);
  const problems: string[] = [];
  if (!cur.ok) problems.push(cur.why);
  if (!baseline) {
    problems.push(
      `${metric} ${op} ${valueText(value)} needs a baseline: ${options.baselineMissingReason ?? 'no baseline run was given'}`,
    );
  } else if (bas && !bas.ok) {
    problems.push(bas.why);
  }
  if (!cur.ok || baselineValue === null) {
    return {
      ...base,
      actual,
      baseline: baselineValue,
      delta: null,
      allowed: !relative ? amount : baselineValue === null ? null : (amount / 100) * Math.abs(baselineValue),
      passed: false,
      status: 'ERROR',
      message: problems.join('; '),
    };
  }
  const a = cur.value;
  const b = baselineValue;
  const delta = a - b;
  const allowed = relative ? (amount / 100) * Math.abs(b) : amount;
  const change = op === 'maxDrop' ? -delta : delta; // the change the gate limits
  const eps = REL_EPS * Math.max(Math.abs(a), Math.abs(b));
  const passed = change <= allowed + eps;
  const pct = b !== 0 ? ` (${formatPercent((Math.abs(delta) / Math.abs(b)) * 100)}%)` : '';
  const moved =
    Math.abs(delta) <= eps
      ? `${metric} is unchanged from baseline ${formatNumber(b)}`
      : `${metric} ${delta < 0 ? 'dropped' : 'increased'} ${formatNumber(Math.abs(delta))}${pct} from baseline ${formatNumber(b)}`;
  const limitWord = op === 'maxDrop' ? 'drop' : 'increase';
  let message: string;
  if (!passed) message = `${moved}, more than the allowed ${allowedText}`;
  else if (change > 0) message = `${moved}, within the allowed ${allowedText}`;
  else message = `${moved} (allowed ${limitWord}: ${allowedText})`;
  return {
    ...base,
    actual: a,
    baseline: b,
    delta,
    allowed,
    passed,
    status: passed ? 'PASS' : failStatus,
    message,
  };
}

/** Overall status of gate outcomes: ERROR > FAIL > WARN > PASS. */
export function overallStatus(outcomes: readonly Pick<GateOutcome, 'status'>[]): VerdictStatus {
  for (const s of ['ERROR', 'FAIL', 'WARN'] as const) if (outcomes.some((o) => o.status === s)) return s;
  return 'PASS';
}

/**
 * Evaluates gates against a finished run's results and, for maxDrop / maxIncrease (and for the
 * "(baseline x)" note of threshold gates), a baseline run's results. Never throws for bad data: a
 * gate that cannot be decided is ERROR with the reason (an invalid gate too). No gates: null.
 */
export function evaluateGates(
  gates: readonly Gate[],
  results: RunResults,
  baseline: RunResults | null,
  options: EvaluateOptions = {},
): Verdict | null {
  if (gates.length === 0) return null;
  const outcomes = gates.map((g, i): GateOutcome => {
    let gate: NormalizedGate;
    try {
      gate = validateGate(g, i);
    } catch (err) {
      if (!(err instanceof GateError)) throw err;
      const raw = g as Partial<Gate>;
      return {
        name: typeof raw.name === 'string' ? raw.name : String(raw.metric),
        metric: String(raw.metric),
        op: raw.op as GateOp,
        value: raw.value as number | string,
        severity: raw.severity === 'warn' ? 'warn' : 'fail',
        actual: null,
        passed: false,
        status: 'ERROR',
        message: err.message,
      };
    }
    return evaluateOne(gate, results, baseline, options);
  });
  return { status: overallStatus(outcomes), gatesVersion: GATES_VERSION, gates: outcomes };
}
