// Argument parsing on node:util's parseArgs, and the small languages of the flags: sweeps
// (`-180:180:15`, `0.8,1.2`, JSON), gates (`accuracy.at(rotate=90)>=0.8`), baselines, durations.
import { type ParseArgsConfig, parseArgs } from 'node:util';
import type { Baseline, Gate, GateOp } from './api/types.js';
import { UsageError } from './errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags every command that talks to the service takes. */
export const CONNECTION_OPTIONS = {
  server: { type: 'string' },
  'api-key': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/**
 * parseArgs, strict, with tokens (the eval command keeps its transform flags in command-line order).
 * Negative numbers may follow a flag (`--rotate -180:180:15`, `--brightness -0.2,0.2`): parseArgs
 * refuses those as ambiguous, so `--flag -1...` is rewritten to `--flag=-1...` first.
 */
export function parseCommand<O extends Options>(
  command: string,
  argv: string[],
  options: O,
  positionals = false,
) {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const name = a.startsWith('--') && !a.includes('=') ? a.slice(2) : null;
    const next = argv[i + 1];
    if (name && options[name]?.type === 'string' && next !== undefined && /^-[\d.]/.test(next)) {
      args.push(`${a}=${next}`);
      i++;
    } else {
      args.push(a);
    }
  }
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true, tokens: true });
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new UsageError(message, command);
  }
}

/** `30m`, `90s`, `1h`, `1h30m`, `500ms`, or a bare number of seconds -> milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const t = text.trim();
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(t)) ms = Number(t) * 1000;
  else if (/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(t)) {
    ms = 0;
    for (const m of t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * unit[m[2]];
  } else throw new UsageError(`${flag}: expected a duration like 90s, 30m, 1h or 1h30m, got "${text}"`);
  if (!(ms > 0)) throw new UsageError(`${flag}: the duration must be above 0`);
  return ms;
}

export function parsePositiveInt(text: string, flag: string, max = 2_147_483_647): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1 || Number(text) > max) {
    throw new UsageError(`${flag}: expected an integer from 1 to ${max}, got "${text}"`);
  }
  return Number(text);
}

export function parseNumber(text: string, flag: string): number {
  const t = text.trim();
  const n = Number(t);
  if (t === '' || !Number.isFinite(n)) throw new UsageError(`${flag}: "${text}" is not a number`);
  return n;
}

export function parseJson(text: string, flag: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${flag}: not valid JSON (${(err as Error).message})`);
  }
}

export function parseJsonObject(text: string, flag: string): Record<string, unknown> {
  const v = parseJson(text, flag);
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new UsageError(`${flag}: expected a JSON object`);
  return v as Record<string, unknown>;
}

/** `a,b, c` -> ['a', 'b', 'c'] (empty items dropped). */
export function parseList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** `--class-names`: a JSON array, or a comma-separated list; returned as the JSON the API takes. */
export function parseClassNames(text: string): string {
  if (text.trim().startsWith('[')) {
    const v = parseJson(text, '--class-names');
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
      throw new UsageError('--class-names: expected a JSON array of strings');
    }
    return JSON.stringify(v);
  }
  return JSON.stringify(parseList(text));
}

// --- sweeps -------------------------------------------------------------------------------------

/** Sweep flags and the transform type each stands for (openapi.yaml: TransformType). */
export const TRANSFORM_FLAGS: Record<string, string> = {
  rotate: 'rotate',
  scale: 'scale',
  translate: 'translate',
  'translate-x': 'translate_x',
  'translate-y': 'translate_y',
  shear: 'shear',
  brightness: 'brightness',
  contrast: 'contrast',
  gamma: 'gamma',
  blur: 'gaussian_blur',
  noise: 'gaussian_noise',
  dilate: 'dilate',
  erode: 'erode',
  background: 'background',
};
/** Flags without a value: one point each. */
export const FLAG_TRANSFORMS: Record<string, string> = { hflip: 'hflip', vflip: 'vflip' };

export type Family = Record<string, unknown> & { type: string };

/**
 * One sweep flag's value as a transform family:
 * - `from:to:step` -> a range, END EXCLUSIVE like the API's (`-180:180:15` is -180, -165, ..., 165);
 *   `from:to:step:inclusive` (or `:incl`) includes `to` when the steps land on it;
 * - `a,b,c` (or one number) -> those values;
 * - `[...]` -> JSON values (e.g. translate pairs `[[2,0],[0,2]]`);
 * - `{...}` -> the rest of a family as JSON (e.g. `{"uniform":{"min":-0.3,"max":0.3},"samples":8,"seed":1}`).
 */
export function parseSweep(flag: string, type: string, text: string): Family {
  const t = text.trim();
  if (t.startsWith('[')) {
    const values = parseJson(t, flag);
    if (!Array.isArray(values) || values.length === 0)
      throw new UsageError(`${flag}: expected a non-empty JSON array`);
    return { type, values };
  }
  if (t.startsWith('{')) return { ...parseJsonObject(t, flag), type };
  if (t.includes(':')) {
    const parts = t.split(':');
    const inclusive = parts.length === 4 && /^(incl|inclusive)$/i.test(parts[3].trim());
    if (parts.length !== 3 && !inclusive) {
      throw new UsageError(
        `${flag}: a range is from:to:step (end exclusive) or from:to:step:inclusive, got "${text}"`,
      );
    }
    const [from, to, step] = parts.slice(0, 3).map((p) => parseNumber(p, flag));
    if (step === 0) throw new UsageError(`${flag}: the step of a range must not be 0`);
    return { type, range: { from, to, step, ...(inclusive ? { inclusive: true } : {}) } };
  }
  const values = parseList(t).map((v) => parseNumber(v, flag));
  if (values.length === 0) throw new UsageError(`${flag}: no values`);
  return { type, values };
}

// --- gates --------------------------------------------------------------------------------------

const SYMBOL_OPS: GateOp[] = ['<=', '>=', '<', '>'];
const WORD_OPS: GateOp[] = ['maxDrop', 'maxIncrease'];

/**
 * Finds the gate operator outside parentheses, brackets and quotes: metric paths such as
 * `accuracy.at(rotate=90)` or `nv.layer("/a<b",mean)` may hold `=`, `<` or `>`.
 */
function findOp(s: string): { index: number; op: GateOp } | null {
  let depth = 0;
  let quote: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '(' || c === '[') depth++;
    else if (c === ')' || c === ']') depth = Math.max(0, depth - 1);
    if (depth > 0 || quote) continue;
    for (const op of SYMBOL_OPS) if (s.startsWith(op, i)) return { index: i, op };
    for (const op of WORD_OPS) {
      if (
        s.slice(i, i + op.length).toLowerCase() === op.toLowerCase() &&
        (i === 0 || /[\s)]/.test(s[i - 1]))
      ) {
        return { index: i, op };
      }
    }
  }
  return null;
}

/**
 * `--gate`: `[warn:|fail:][NAME:] METRIC OP VALUE` (the service's compact gate form, plus an
 * optional name), e.g. `ekld.overall<=0.1`, `warn: accuracy.at(rotate=90) >= 0.8`,
 * `rot90: accuracy.at(rotate=90)>=0.8`, `accuracy.mean maxDrop 2%` (needs --baseline); or the gate
 * as a JSON object. `warn:` makes a failing gate WARN instead of FAIL. The metric path is checked
 * by the service (422 INVALID_GATE when it does not fit the run).
 */
export function parseGate(text: string): Gate {
  const flag = '--gate';
  let s = text.trim();
  if (s.startsWith('{')) {
    const g = parseJsonObject(s, flag);
    if (typeof g.metric !== 'string' || typeof g.op !== 'string' || !('value' in g)) {
      throw new UsageError(`${flag}: a JSON gate needs "metric", "op" and "value"`);
    }
    return g as Gate;
  }
  let name: string | undefined;
  let severity: 'warn' | 'fail' | undefined;
  for (let prefix = /^([^:()<>[\]"']+):(.*)$/s.exec(s); prefix; prefix = /^([^:()<>[\]"']+):(.*)$/s.exec(s)) {
    const word = prefix[1].trim();
    if (findOp(word) !== null) break;
    if (!severity && /^(warn|fail)$/i.test(word)) severity = word.toLowerCase() as 'warn' | 'fail';
    else if (!name && word) name = word;
    else break;
    s = prefix[2].trim();
  }
  const found = findOp(s);
  if (!found) {
    throw new UsageError(
      `${flag}: expected METRIC OP VALUE with OP one of <, <=, >, >=, maxDrop, maxIncrease, got "${text}"`,
    );
  }
  const metric = s.slice(0, found.index).trim();
  const valueText = s.slice(found.index + found.op.length).trim();
  if (!metric) throw new UsageError(`${flag}: no metric before "${found.op}" in "${text}"`);
  let value: number | string;
  if (/^\d+(\.\d+)?%$/.test(valueText)) {
    if (!WORD_OPS.includes(found.op)) {
      throw new UsageError(`${flag}: a relative value like "${valueText}" needs maxDrop or maxIncrease`);
    }
    value = valueText;
  } else {
    value = parseNumber(valueText, `${flag} "${text}"`);
  }
  return { ...(name ? { name } : {}), metric, op: found.op, value, ...(severity ? { severity } : {}) };
}

/** `--baseline`: `run:<id>`, `model:<name>,tag:<tag>` (either order), or JSON. */
export function parseBaseline(text: string): Baseline {
  const t = text.trim();
  if (t.startsWith('{')) return parseJsonObject(t, '--baseline') as Baseline;
  const run = /^run:(.+)$/.exec(t);
  if (run) return { runId: run[1].trim() };
  const mt = /^model:(.+),tag:(.+)$/.exec(t);
  if (mt) return { model: mt[1].trim(), tag: mt[2].trim() };
  const tm = /^tag:(.+),model:(.+)$/.exec(t);
  if (tm) return { model: tm[2].trim(), tag: tm[1].trim() };
  throw new UsageError(`--baseline: expected run:<id> or model:<name>,tag:<tag>, got "${text}"`);
}
