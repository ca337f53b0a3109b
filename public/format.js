// Number, date and duration formatting shared by the pages.

/** @param {number | null | undefined} v */
export const pct = (v, digits = 1) =>
  v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : `${(v * 100).toFixed(digits)}%`;

/** @param {number | null | undefined} v */
export const num = (v, digits = 4) =>
  v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : Number(v.toPrecision(digits)).toString();

/** Signed difference, as percentage points or a number. @param {number | null | undefined} d */
export function delta(d, asPercent) {
  if (d === null || d === undefined || !Number.isFinite(d)) return 'n/a';
  const sign = d > 0 ? '+' : d < 0 ? '\u2212' : '\u00b1';
  const abs = Math.abs(d);
  return asPercent ? `${sign}${(abs * 100).toFixed(1)} pp` : `${sign}${Number(abs.toPrecision(3))}`;
}

/** Local date and time as "2026-01-31 14:05". @param {string | null | undefined} iso */
export function date(iso) {
  if (!iso) return '\u2014';
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** @param {number | null | undefined} ms */
export function duration(ms) {
  if (ms === null || ms === undefined) return '\u2014';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

/** @param {number} n */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** @param {unknown[] | null | undefined} shape */
export const shape = (shape) =>
  Array.isArray(shape) ? `[${shape.map((d) => (d === null ? '?' : d)).join(', ')}]` : '?';

/** A short id for tables. @param {string} id */
export const shortId = (id) => id.slice(0, 8);
