// Shared formatting: numbers, point labels, gate statuses, aligned text tables.
import type { GateResult, PointParams, VerdictStatus } from '../api/types.js';

export const fmt = (v: number | null | undefined, digits = 4): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);

/** `{rotate: 90, scale: 1.2}` -> `rotate=90, scale=1.2`; `{hflip: true}` -> `hflip`. */
export function pointLabel(params: PointParams): string {
  const parts = Object.entries(params).map(([k, v]) => {
    if (v === true) return k;
    if (Array.isArray(v)) return `${k}=[${v.join(',')}]`;
    return `${k}=${String(v)}`;
  });
  return parts.length ? parts.join(', ') : 'identity';
}

/** A gate's status: the service's, or derived from `passed` and `severity`. */
export function gateStatus(g: GateResult): VerdictStatus {
  if (g.status) return g.status;
  if (g.passed) return 'PASS';
  if (g.actual === null || g.actual === undefined) return 'ERROR';
  return g.severity === 'warn' ? 'WARN' : 'FAIL';
}

export function gateLabel(g: { name?: string; metric: string; op: string; value: number | string }): string {
  return g.name || `${g.metric} ${g.op} ${g.value}`;
}

/** Columns aligned with two spaces; `right` marks right-aligned (numeric) columns. */
export function textTable(headers: string[], rows: string[][], right: boolean[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}
