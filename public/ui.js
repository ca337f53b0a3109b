// Small building blocks shared by the pages: badges, definition lists, tables, sections.
import { h } from './dom.js';

const STATUS_MARK = {
  queued: '\u25cb',
  running: '\u25d4',
  succeeded: '\u2713',
  failed: '\u2717',
  canceled: '\u2298',
};
const VERDICT_MARK = { PASS: '\u2713', WARN: '!', FAIL: '\u2717', ERROR: '?' };

/** A run status badge (symbol and word: readable without colour). @param {string} status */
export function statusBadge(status, extra = '') {
  return h(
    'span',
    { class: `badge status-${status}`, dataset: { status } },
    h('span', { 'aria-hidden': 'true' }, STATUS_MARK[status] ?? '\u2022'),
    ` ${status}${extra}`,
  );
}

/** A verdict badge, or a dash when the run has none. @param {{ status: string } | null | undefined} verdict */
export function verdictBadge(verdict) {
  if (!verdict?.status) return h('span', { class: 'muted', title: 'no gates' }, '\u2014');
  const v = verdict.status;
  return h(
    'span',
    { class: `badge verdict-${v.toLowerCase()}`, dataset: { verdict: v } },
    h('span', { 'aria-hidden': 'true' }, VERDICT_MARK[v] ?? '\u2022'),
    ` ${v}`,
  );
}

/** @param {Array<[string, unknown]>} rows */
export function dl(rows, cls = 'facts') {
  return h(
    'dl',
    { class: cls },
    rows
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v ?? '\u2014'))),
  );
}

/**
 * A table in a horizontally scrollable wrapper (the page itself never scrolls sideways).
 * With `cards`, narrow screens show one card per row (each cell labelled by its column).
 * @param {{ caption: string, head: unknown[], rows: unknown[][], rowAttrs?: (i: number) => Record<string, unknown>, numeric?: number[], cards?: boolean }} o
 */
export function table(o) {
  const numeric = new Set(o.numeric ?? []);
  const labels = o.head.map((c) => (c instanceof Node ? (c.textContent ?? '') : String(c)));
  return h(
    'div',
    { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': o.caption },
    h(
      'table',
      { class: o.cards ? 'cards' : undefined },
      h('caption', {}, o.caption),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          o.head.map((c, i) => h('th', { scope: 'col', class: numeric.has(i) ? 'num' : undefined }, c)),
        ),
      ),
      h(
        'tbody',
        {},
        o.rows.map((r, ri) =>
          h(
            'tr',
            o.rowAttrs?.(ri) ?? {},
            r.map((c, i) =>
              h(
                'td',
                { class: numeric.has(i) ? 'num' : undefined, 'data-label': labels[i] || undefined },
                o.cards ? h('div', { class: 'cell' }, c) : c,
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

/** A page section with an h2 (and an id for the in-page contents). */
export function section(id, title, ...children) {
  return h('section', { id, 'aria-labelledby': `${id}-h` }, h('h2', { id: `${id}-h` }, title), ...children);
}

/** A notice (role status). */
export function notice(text, kind = 'info') {
  return h('p', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** A progress bar with its text. @param {{ done: number, total: number }} p */
export function progressBar(p, label = 'Progress') {
  const pctText = p.total > 0 ? `${Math.floor((100 * p.done) / p.total)}%` : '0%';
  return h(
    'div',
    { class: 'progress' },
    h('progress', { max: String(p.total || 1), value: String(p.done), 'aria-label': label }),
    h(
      'span',
      { class: 'progress-text' },
      `${pctText} (${p.done.toLocaleString()} / ${p.total.toLocaleString()} inferences)`,
    ),
  );
}
