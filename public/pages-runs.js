// The runs table: filters (model, dataset, status, tag, verdict, dates), sort, cursor pagination,
// verdict badges, live status of queued and running runs (refreshed every second), and a
// selection of two runs to compare.
import { api, cached } from './api.js';
import { h, replace } from './dom.js';
import * as f from './format.js';
import { notice, progressBar, statusBadge, table, verdictBadge } from './ui.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'];
const VERDICTS = ['PASS', 'WARN', 'FAIL', 'ERROR'];
const PAGE_SIZE = 25;

/** Cursors of the pages before the current one, per filter set (for "Previous page"). */
const history = new Map();

/** Does the API filter runs by verdict itself? (It is documented in its OpenAPI when it does.) */
async function apiFiltersVerdict() {
  try {
    const doc = /** @type {any} */ (await cached('/openapi.json'));
    const params = doc?.paths?.['/v1/runs']?.get?.parameters ?? [];
    return params.some((p) => p?.name === 'verdict');
  } catch {
    return false;
  }
}

/** Day (yyyy-mm-dd, local) to an ISO instant; `end` = the start of the next day. */
function dayToIso(day, end) {
  const d = new Date(`${day}T00:00:00`);
  if (Number.isNaN(d.getTime())) return null;
  if (end) d.setDate(d.getDate() + 1);
  return d.toISOString();
}

/** @param {import('./app.js').PageContext} ctx @param {URLSearchParams} q */
export async function runsPage(ctx, q) {
  ctx.title('Runs');
  const filters = {
    model: q.get('model') ?? '',
    dataset: q.get('dataset') ?? '',
    status: q.get('status') ?? '',
    tag: q.get('tag') ?? '',
    verdict: q.get('verdict') ?? '',
    from: q.get('from') ?? '',
    to: q.get('to') ?? '',
    sort: q.get('sort') === 'createdAt' ? 'createdAt' : '-createdAt',
  };
  const cursor = q.get('cursor') ?? '';
  const [models, datasets, verdictOnServer] = await Promise.all([
    cached('/v1/models?limit=200').catch(() => ({ items: [] })),
    cached('/v1/datasets?limit=200').catch(() => ({ items: [] })),
    apiFiltersVerdict(),
  ]);
  const modelName = new Map(models.items.map((m) => [m.id, `${m.name}${m.version ? ` v${m.version}` : ''}`]));
  const datasetName = new Map(datasets.items.map((d) => [d.id, d.name]));

  const params = new URLSearchParams({ limit: String(PAGE_SIZE), sort: filters.sort });
  if (filters.model) params.set('modelId', filters.model);
  if (filters.dataset) params.set('datasetId', filters.dataset);
  if (filters.status) params.set('status', filters.status);
  if (filters.tag) params.set('tag', filters.tag);
  if (filters.verdict && verdictOnServer) params.set('verdict', filters.verdict);
  const after = filters.from && dayToIso(filters.from, false);
  const before = filters.to && dayToIso(filters.to, true);
  if (after) params.set('createdAfter', after);
  if (before) params.set('createdBefore', before);
  const filterKey = params.toString();
  if (cursor) params.set('cursor', cursor);

  const select = (name, label, options, value) =>
    h(
      'div',
      { class: 'field' },
      h('label', { for: `f-${name}` }, label),
      h(
        'select',
        { id: `f-${name}`, name },
        options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)),
      ),
    );
  const input = (name, label, type, value, extra = {}) =>
    h(
      'div',
      { class: 'field' },
      h('label', { for: `f-${name}` }, label),
      h('input', { id: `f-${name}`, name, type, value, ...extra }),
    );
  const form = h(
    'form',
    {
      class: 'filters',
      'aria-label': 'Filter runs',
      onsubmit: (/** @type {SubmitEvent} */ e) => {
        e.preventDefault();
        const data = new FormData(/** @type {HTMLFormElement} */ (e.currentTarget));
        const next = new URLSearchParams();
        for (const [k, v] of data.entries()) if (typeof v === 'string' && v.trim()) next.set(k, v.trim());
        location.hash = `#/runs?${next}`;
      },
    },
    select(
      'model',
      'Model',
      [['', 'any model'], ...models.items.map((m) => [m.id, modelName.get(m.id)])],
      filters.model,
    ),
    select(
      'dataset',
      'Dataset',
      [['', 'any dataset'], ...datasets.items.map((d) => [d.id, d.name])],
      filters.dataset,
    ),
    select('status', 'Status', [['', 'any status'], ...STATUSES.map((s) => [s, s])], filters.status),
    input('tag', 'Tag', 'text', filters.tag, { maxlength: 64, placeholder: 'e.g. nightly' }),
    select(
      'verdict',
      'Verdict',
      [['', 'any verdict'], ...VERDICTS.map((v) => [v, v]), ['NONE', 'none (no gates)']],
      filters.verdict,
    ),
    input('from', 'Created from', 'date', filters.from),
    input('to', 'Created until', 'date', filters.to),
    select(
      'sort',
      'Order',
      [
        ['-createdAt', 'newest first'],
        ['createdAt', 'oldest first'],
      ],
      filters.sort,
    ),
    h(
      'div',
      { class: 'field actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('a', { href: '#/runs', class: 'button' }, 'Reset'),
    ),
  );

  const tableHost = h('div', { class: 'runs-table' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const live = h('p', { class: 'visually-hidden', 'aria-live': 'polite' });
  const selected = new Set();
  const compareButton = h('button', { type: 'button', disabled: true }, 'Compare 2 selected runs');
  compareButton.addEventListener('click', () => {
    const [a, b] = [...selected];
    if (a && b) location.hash = `#/compare/${a}/${b}`;
  });
  const updateCompare = () => {
    /** @type {HTMLButtonElement} */ (compareButton).disabled = selected.size !== 2;
    compareButton.textContent =
      selected.size === 2
        ? 'Compare the 2 selected runs'
        : `Select 2 runs to compare (${selected.size} selected)`;
  };
  updateCompare();

  replace(
    ctx.main,
    h('h1', { tabindex: '-1' }, 'Runs'),
    form,
    filters.verdict && !verdictOnServer
      ? notice('The verdict filter applies to the runs of this page (the API does not filter by verdict).')
      : null,
    h('div', { class: 'toolbar' }, compareButton),
    tableHost,
    pager,
    live,
  );

  /** @param {any} run */
  const statusCell = (run) =>
    h(
      'div',
      { class: 'status-cell' },
      statusBadge(run.status),
      run.status === 'running' || run.status === 'queued'
        ? progressBar(run.progress, `Progress of run ${f.shortId(run.id)}`)
        : null,
    );
  /** @param {any} run */
  const cells = (run) => [
    h('input', {
      type: 'checkbox',
      'aria-label': `Select run ${run.name ?? f.shortId(run.id)} to compare`,
      checked: selected.has(run.id),
      onchange: (/** @type {Event} */ e) => {
        if (/** @type {HTMLInputElement} */ (e.target).checked) selected.add(run.id);
        else selected.delete(run.id);
        updateCompare();
      },
    }),
    h(
      'a',
      { href: `#/runs/${run.id}`, class: 'run-link' },
      run.name ?? `run ${f.shortId(run.id)}`,
      run.name ? h('span', { class: 'muted small' }, ` ${f.shortId(run.id)}`) : null,
    ),
    statusCell(run),
    verdictBadge(run.verdict),
    h('a', { href: `#/models/${run.modelId}` }, modelName.get(run.modelId) ?? f.shortId(run.modelId)),
    h(
      'a',
      { href: `#/datasets/${run.datasetId}` },
      datasetName.get(run.datasetId) ?? f.shortId(run.datasetId),
    ),
    run.tags.length ? run.tags.map((t) => h('span', { class: 'tag' }, t)) : '\u2014',
    `${run.request?.points ?? '?'} \u00d7 ${run.request?.limit ?? '?'}`,
    run.summary ? f.pct(run.summary.accuracy?.clean) : '\u2014',
    run.summary ? f.pct(run.summary.accuracy?.mean) : '\u2014',
    run.summary?.ekld !== undefined && run.summary?.ekld !== null ? f.num(run.summary.ekld, 3) : '\u2014',
    h('time', { datetime: run.createdAt }, f.date(run.createdAt)),
  ];

  let shown = /** @type {any[]} */ ([]);
  const draw = (page) => {
    let items = page.items;
    if (filters.verdict && !verdictOnServer) {
      items = items.filter((r) => (r.verdict?.status ?? 'NONE') === filters.verdict);
    }
    shown = items;
    if (items.length === 0) {
      replace(tableHost, notice('No runs match these filters.'));
    } else {
      replace(
        tableHost,
        table({
          cards: true,
          caption: `Runs (${items.length} on this page, ${filters.sort === 'createdAt' ? 'oldest' : 'newest'} first)`,
          head: [
            h('span', { class: 'visually-hidden' }, 'Compare'),
            'Run',
            'Status',
            'Verdict',
            'Model',
            'Dataset',
            'Tags',
            'Points \u00d7 samples',
            'Clean acc.',
            'Mean acc.',
            'eKLD',
            'Created',
          ],
          rows: items.map(cells),
          rowAttrs: (i) => ({ dataset: { runId: items[i].id, status: items[i].status } }),
          numeric: [7, 8, 9, 10],
        }),
      );
    }
    const prev = history.get(filterKey) ?? [];
    const nextHref = (c) => {
      const p = new URLSearchParams(q);
      if (c) p.set('cursor', c);
      else p.delete('cursor');
      return `#/runs?${p}`;
    };
    replace(
      pager,
      cursor
        ? h(
            'a',
            {
              href: nextHref(prev[prev.length - 1] ?? ''),
              class: 'button',
              onclick: () => history.set(filterKey, prev.slice(0, -1)),
            },
            '\u2190 Previous page',
          )
        : null,
      cursor
        ? h(
            'a',
            { href: nextHref(''), class: 'button', onclick: () => history.set(filterKey, []) },
            'First page',
          )
        : null,
      page.nextCursor
        ? h(
            'a',
            {
              href: nextHref(page.nextCursor),
              class: 'button',
              onclick: () => history.set(filterKey, [...prev, cursor]),
            },
            'Next page \u2192',
          )
        : h('span', { class: 'muted' }, 'Last page'),
    );
  };

  const load = () => api(`/v1/runs?${params}`);
  draw(await load());

  // Live status: refresh the page every second while any of its runs is queued or running.
  ctx.interval(async () => {
    if (!shown.some((r) => r.status === 'queued' || r.status === 'running')) return;
    const page = await load();
    if (!ctx.alive()) return;
    const before = new Map(shown.map((r) => [r.id, r.status]));
    const sameRows =
      page.items.length === shown.length &&
      page.items.every((r, i) => r.id === shown[i].id) &&
      !filters.verdict;
    if (!sameRows) {
      draw(page);
      return;
    }
    // Update the changed rows in place, so focus and selection stay where they are.
    page.items.forEach((run, i) => {
      const row = tableHost.querySelector(`tr[data-run-id="${run.id}"]`);
      if (!row) return;
      const tds = row.querySelectorAll('td');
      const fresh = cells(run);
      for (const idx of [2, 3, 8, 9, 10]) replace(tds[idx].querySelector('.cell') ?? tds[idx], fresh[idx]);
      row.setAttribute('data-status', run.status);
      shown[i] = run;
      if (before.get(run.id) !== run.status)
        live.textContent = `Run ${run.name ?? f.shortId(run.id)} is ${run.status}.`;
    });
  }, 1000);
}
