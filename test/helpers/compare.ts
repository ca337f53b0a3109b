// Deep comparison of two results documents: the same shape, the same strings and booleans, and
// every number equal to a relative tolerance (NaN equals NaN).

/** Paths where `actual` and `expected` differ; empty when they agree. */
export function resultDiffs(actual: unknown, expected: unknown, rel = 1e-9, path = '$'): string[] {
  const out: string[] = [];
  walk(actual, expected, rel, path, out);
  return out;
}

function walk(a: unknown, b: unknown, rel: number, path: string, out: string[]): void {
  if (out.length >= 20) return;
  if (typeof a === 'number' && typeof b === 'number') {
    if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return;
    const tol = rel * Math.max(Math.abs(a), Math.abs(b));
    if (!(Math.abs(a - b) <= tol))
      out.push(`${path}: ${a} vs ${b} (relative ${Math.abs(a - b) / Math.abs(b)})`);
    return;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) {
      out.push(`${path}: ${JSON.stringify(a)?.slice(0, 80)} vs ${JSON.stringify(b)?.slice(0, 80)}`);
      return;
    }
    for (let i = 0; i < a.length; i++) walk(a[i], b[i], rel, `${path}[${i}]`, out);
    return;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    if (ka.join('\u0000') !== kb.join('\u0000')) {
      out.push(`${path}: keys ${ka.join(',')} vs ${kb.join(',')}`);
      return;
    }
    for (const k of ka) {
      walk((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], rel, `${path}.${k}`, out);
    }
    return;
  }
  if (a !== b) out.push(`${path}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
}

/** Counts the numbers in a document (to show a comparison was not vacuous). */
export function countNumbers(doc: unknown): number {
  if (typeof doc === 'number') return 1;
  if (Array.isArray(doc)) return doc.reduce((n: number, x) => n + countNumbers(x), 0);
  if (doc && typeof doc === 'object')
    return Object.values(doc).reduce((n: number, x) => n + countNumbers(x), 0);
  return 0;
}
