// One run: live progress while it runs, then its charts (accuracy, consistency and eKLD per point,
// eKLD per class, NV/TV/SV per layer), the gate table, the examples strip, its parameters and
// timings, and the server-rendered SVG charts for CI.
import { ApiError, api, blobUrl, cached } from './api.js';
import { barChart, lineChart, scatterChart } from './charts.js';
import { h, replace } from './dom.js';
import * as f from './format.js';
import { orderLayers, panelsOf, pointKey } from './series.js';
import { dl, notice, progressBar, section, statusBadge, table, verdictBadge } from './ui.js';

const FINISHED = new Set(['succeeded', 'failed', 'canceled']);

/** Accuracy-like charts of one or more runs, one chart per x parameter.
 * @param {{ name: string, runs: Array<{ label: string, results: any, style: number }>, metric: 'accuracy' | 'consistency' | 'ekld', perClass?: { classNames: string[] } | null }} o */
export function pointCharts(o) {
  const first = o.runs[0].results;
  const panels = panelsOf(first.points.map((p) => p.params));
  // Other runs' points are matched by point key.
  const byKey = o.runs.map((r) => new Map(r.results.points.map((p) => [pointKey(p.params), p])));
  const isRatio = o.metric !== 'ekld';
  const label = { accuracy: 'Accuracy', consistency: 'Consistency', ekld: 'eKLD' }[o.metric];
  const yTitle = {
    accuracy: 'accuracy (% correct)',
    consistency: 'consistency (% unchanged)',
    ekld: 'eKLD (nats)',
  }[o.metric];
  return panels.map((panel) => {
    const seriesNames = [...new Set(panel.points.map((q) => q.series))];
    const multiRun = o.runs.length > 1;
    /** @type {any[]} */
    const series = [];
    o.runs.forEach((r, ri) => {
      seriesNames.forEach((sn, si) => {
        series.push({
          name: multiRun ? `${r.label}: ${sn}` : sn,
          style: multiRun ? ri + si * o.runs.length : si,
          points: panel.points
            .filter((q) => q.series === sn)
            .map((q) => {
              const pt = byKey[ri].get(q.key);
              const v = pt ? pt[o.metric] : null;
              return { x: q.x, y: v ?? null, key: q.key };
            }),
        });
      });
    });
    if (o.perClass && o.metric === 'accuracy') {
      const base = series.length;
      o.perClass.classNames.forEach((cn, k) => {
        seriesNames.forEach((sn) => {
          series.push({
            name: `${seriesNames.length > 1 ? `${sn}, ` : ''}class ${k}: ${cn}`,
            style: base + k,
            thin: true,
            points: panel.points
              .filter((q) => q.series === sn)
              .map((q) => ({ x: q.x, y: first.points[q.point].perClassAccuracy?.[k] ?? null, key: q.key })),
          });
        });
      });
    }
    const refs =
      o.metric === 'accuracy'
        ? o.runs
            .filter((r) => r.results.clean?.accuracy !== null && r.results.clean?.accuracy !== undefined)
            .map((r, i) => ({
              y: r.results.clean.accuracy,
              label: `${multiRun ? `${r.label} ` : ''}clean accuracy ${f.pct(r.results.clean.accuracy)}`,
              style: i,
            }))
        : [];
    const what = panel.param ?? 'transform point';
    return lineChart({
      name: o.name,
      title: `${label} vs ${what}`,
      description: {
        accuracy: `Share of samples classified correctly at each point${seriesNames.length > 1 ? '; one line per value of the other parameters' : ''}${multiRun ? '; one line per run' : ''}; dashed: clean accuracy (untransformed images).`,
        consistency: 'Share of samples whose prediction is the same as on the untransformed image.',
        ekld: 'Mean KL divergence between the predictions on the untransformed and the transformed image.',
      }[o.metric],
      xTitle: panel.axisTitle,
      yTitle,
      xKind: panel.param === null ? 'band' : 'linear',
      categories: panel.param === null ? panel.points.map((q) => String(q.x)) : undefined,
      connect: panel.param !== null,
      yDomain: isRatio ? [0, 1] : undefined,
      yFormat: isRatio ? (v) => f.pct(v, 0) : (v) => f.num(v, 3),
      series,
      refs,
    });
  });
}

/** NV per layer and TV/SV per layer charts. @param {Array<{ label: string, results: any }>} runs @param {string[]} graphOrder */
export function layerCharts(runs, graphOrder) {
  const multi = runs.length > 1;
  const layers = orderLayers(
    runs.flatMap((r) => (r.results.nv ?? []).map((x) => x.layer)),
    graphOrder,
  );
  const aggs = [...new Set(runs.flatMap((r) => (r.results.nv ?? []).map((x) => x.aggregation)))];
  const name = (r, what, agg) => `${multi ? `${r.label}: ` : ''}${what}${aggs.length > 1 ? ` (${agg})` : ''}`;
  const nvSeries = [];
  const tvsvSeries = [];
  runs.forEach((r, ri) => {
    for (const agg of aggs) {
      const rows = (r.results.nv ?? []).filter((x) => x.aggregation === agg);
      const at = (layer) => rows.find((x) => x.layer === layer);
      const pts = (field) => layers.filter((l) => at(l)).map((l) => ({ x: l, y: at(l)[field], key: l }));
      nvSeries.push({ name: name(r, 'NV', agg), style: nvSeries.length, points: pts('nv') });
      tvsvSeries.push({ name: name(r, 'TV', agg), style: tvsvSeries.length, points: pts('tv') });
      tvsvSeries.push({ name: name(r, 'SV', agg), style: tvsvSeries.length, points: pts('sv') });
    }
    void ri;
  });
  const dispersion = runs[0].results.nv?.[0]?.dispersion ?? 'std';
  return [
    lineChart({
      name: 'nv',
      title: 'Normalized variance per layer (graph order)',
      description:
        'NV = TV / SV: lower means the layer varies less under the transforms than across samples.',
      xTitle: 'layer (in graph order)',
      yTitle: 'NV (TV / SV, unitless)',
      xKind: 'band',
      categories: layers,
      yFormat: (v) => f.num(v, 3),
      series: nvSeries,
      refs: [{ y: 1, label: 'NV = 1' }],
    }),
    lineChart({
      name: 'tvsv',
      title: 'Transformation (TV) and sample (SV) variance per layer',
      description: `Mean ${dispersion === 'variance' ? 'variance' : 'standard deviation'} of the activations across transforms (TV) and across samples (SV).`,
      xTitle: 'layer (in graph order)',
      yTitle: `${dispersion === 'variance' ? 'variance' : 'std'} (activation units)`,
      xKind: 'band',
      categories: layers,
      yFormat: (v) => f.num(v, 3),
      series: tvsvSeries,
    }),
  ];
}

/** eKLD per class bars (+ scatter against class size when known). @param {Array<{ label: string, results: any }>} runs */
export function classCharts(runs) {
  const first = runs[0].results.ekld;
  if (!first) return [];
  const categories = first.perClass.map((c) => `${c.class}: ${c.name}`);
  const out = [
    barChart({
      name: 'ekld-class',
      title: 'eKLD per class',
      description:
        'Mean KL divergence between predictions on the original and transformed images, over the class samples and all points.',
      xTitle: 'eKLD (nats)',
      categories,
      series: runs.map((r) => ({
        name: r.label,
        values: first.perClass.map(
          (c) => r.results.ekld?.perClass.find((x) => x.class === c.class)?.value ?? null,
        ),
      })),
      format: (v) => f.num(v, 3),
    }),
  ];
  const sized = runs.filter((r) => r.results.ekld?.perClass.some((c) => c.classSize !== null));
  if (sized.length) {
    out.push(
      scatterChart({
        name: 'ekld-size',
        title: 'eKLD vs training class size',
        description:
          'One point per class; classes with fewer training samples tend to be less invariant (Zhou et al.).',
        xTitle: 'training samples in the class',
        yTitle: 'eKLD (nats)',
        series: sized.map((r) => ({
          name: r.label,
          points: r.results.ekld.perClass
            .filter((c) => c.classSize !== null)
            .map((c) => ({ x: c.classSize, y: c.value, label: c.name })),
        })),
      }),
    );
  }
  return out;
}

/** The gate table of a verdict. @param {any} verdict */
export function gateTable(verdict) {
  return table({
    caption: `Gates: ${verdict.status}`,
    head: ['Gate', 'Metric', 'Condition', 'Actual', 'Baseline', 'Result', 'Message'],
    rows: verdict.gates.map((g) => [
      g.name,
      h('code', {}, g.metric),
      `${g.op} ${g.value}${g.severity === 'warn' ? ' (warn)' : ''}`,
      g.actual === null ? 'n/a' : f.num(g.actual, 4),
      g.baseline === undefined || g.baseline === null ? '\u2014' : f.num(g.baseline, 4),
      verdictBadge({ status: g.status }),
      g.message,
    ]),
  });
}

/** @param {HTMLImageElement} img @param {string} path */
function loadImage(img, path) {
  blobUrl(path)
    .then((url) => {
      img.src = url;
    })
    .catch(() => {
      img.alt = `${img.alt} (could not load)`;
    });
  return img;
}

/** The examples strip. @param {any} ex */
function examplesStrip(ex) {
  if (ex.items.length === 0) return notice('No sample changed its prediction under any transform point.');
  return h(
    'ol',
    { class: 'examples' },
    ex.items.map((e) =>
      h(
        'li',
        { class: 'example', dataset: { index: String(e.index) } },
        h(
          'p',
          { class: 'example-head' },
          h('strong', {}, `Sample ${e.index}`),
          ` \u2014 true: ${e.labelName}; flips at ${e.flips} of ${ex.points} points`,
        ),
        h(
          'div',
          { class: 'example-row', role: 'list' },
          h(
            'figure',
            { class: 'thumb original', role: 'listitem' },
            loadImage(
              /** @type {HTMLImageElement} */ (
                h('img', { alt: `Sample ${e.index}, original (${e.labelName})`, width: 84, height: 84 })
              ),
              e.image,
            ),
            h(
              'figcaption',
              {},
              h('span', { class: 'small' }, 'original'),
              h('br'),
              'predicted ',
              h('strong', {}, e.predictionName ?? 'none'),
              e.prediction === e.label ? ' \u2713' : ' \u2717',
            ),
          ),
          e.changed.map((c) =>
            h(
              'figure',
              { class: 'thumb', role: 'listitem' },
              loadImage(
                /** @type {HTMLImageElement} */ (
                  h('img', {
                    alt: `Sample ${e.index} under ${c.key}, predicted ${c.predictionName ?? 'none'}`,
                    width: 84,
                    height: 84,
                  })
                ),
                c.image,
              ),
              h(
                'figcaption',
                {},
                h('code', { class: 'small' }, c.key ?? `point ${c.point}`),
                h('br'),
                '\u2192 ',
                h('strong', {}, c.predictionName ?? 'none'),
                c.prediction === e.label ? ' \u2713' : ' \u2717',
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

/** Download buttons for the server-rendered SVG charts. @param {string} id @param {any} run */
function svgLinks(id, run) {
  const names = [
    'accuracy',
    ...(run.request.metrics.includes('ekld') ? ['ekld'] : []),
    ...(run.request.metrics.includes('nv') ? ['nv'] : []),
  ];
  const status = h('span', { 'aria-live': 'polite', class: 'muted small' });
  return h(
    'div',
    { class: 'toolbar' },
    names.map((n) =>
      h(
        'button',
        {
          type: 'button',
          onclick: async () => {
            status.textContent = `Rendering ${n}.svg\u2026`;
            try {
              const url = await blobUrl(`/v1/runs/${id}/charts/${n}.svg`);
              const a = h('a', { href: url, download: `${id}-${n}.svg` });
              document.body.append(a);
              a.click();
              a.remove();
              status.textContent = `${n}.svg downloaded.`;
            } catch (err) {
              status.textContent = `Could not render ${n}.svg: ${err instanceof Error ? err.message : err}`;
            }
          },
        },
        `${n}.svg`,
      ),
    ),
    status,
  );
}

/** @param {any} run @param {any} model @param {any} dataset */
function parameters(run, model, dataset) {
  const r = run.request;
  return h(
    'div',
    {},
    dl([
      [
        'Model',
        model
          ? h(
              'a',
              { href: `#/models/${model.id}` },
              `${model.name}${model.version ? ` v${model.version}` : ''}`,
            )
          : run.modelId,
      ],
      ['Dataset', dataset ? h('a', { href: `#/datasets/${dataset.id}` }, dataset.name) : run.datasetId],
      ['Samples', String(r.limit)],
      ['Transform points', String(r.points)],
      ['Metrics', r.metrics.join(', ')],
      ...(r.metrics.includes('nv')
        ? [
            ['NV layers', r.nv.layers.join(', ') || '\u2014'],
            [
              'NV options',
              `aggregation ${r.nv.aggregation.join(', ')}; dispersion ${r.nv.dispersion}${r.nv.perClass ? '; per class' : ''}`,
            ],
          ]
        : []),
      [
        'Preprocessing',
        `mean [${r.preprocessing.mean.join(', ')}], std [${r.preprocessing.std.join(', ')}], ${r.preprocessing.layout}`,
      ],
      [
        'Input',
        `${r.input.name}: ${r.input.channels} \u00d7 ${r.input.height} \u00d7 ${r.input.width}${r.resize ? ' (resized)' : ''}`,
      ],
      ['Class sizes', r.classSizes ? r.classSizes.join(', ') : 'not given'],
      ['Tags', r.tags.length ? r.tags.join(', ') : '\u2014'],
    ]),
    h(
      'details',
      {},
      h('summary', {}, 'Transforms (as submitted)'),
      h('pre', { class: 'code' }, JSON.stringify(r.transforms, null, 2)),
    ),
  );
}

/** @param {any} run */
function timings(run) {
  const t = run.timings;
  return dl([
    ['Created', f.date(run.createdAt)],
    ['Started', f.date(run.startedAt)],
    ['Finished', f.date(run.finishedAt)],
    ...(t
      ? [
          ['Queued for', f.duration(t.queuedMs)],
          ['Running for', f.duration(t.runningMs)],
          ['Total', f.duration(t.totalMs)],
          ['Shards', `${t.shards} (${f.duration(t.shardMsTotal)} of evaluation in all)`],
        ]
      : []),
  ]);
}

/** Headline numbers. @param {any} results */
function headline(results) {
  const tiles = [
    ['Clean accuracy', f.pct(results.clean.accuracy)],
    ['Mean accuracy', f.pct(results.accuracy.mean)],
    ['Min accuracy', f.pct(results.accuracy.min)],
    ['Worst case', f.pct(results.accuracy.worstCase)],
    ['Consistency', f.pct(results.consistency.mean)],
    ['TTA accuracy', f.pct(results.tta.accuracy)],
    ...(results.ekld ? [['eKLD', `${f.num(results.ekld.overall, 3)} nats`]] : []),
  ];
  return h(
    'dl',
    { class: 'tiles' },
    tiles.map(([k, v]) => h('div', { class: 'tile' }, h('dt', {}, k), h('dd', {}, v))),
  );
}

/** @param {import('./app.js').PageContext} ctx @param {string} id */
export async function runPage(ctx, id) {
  let run = await api(`/v1/runs/${id}`);
  const title = () => run.name ?? `Run ${f.shortId(run.id)}`;
  ctx.title(title());
  const statusHost = h('div', { class: 'run-status', 'aria-live': 'polite' });
  const body = h('div');
  const drawStatus = () =>
    replace(
      statusHost,
      h('p', {}, statusBadge(run.status), run.verdict ? [' ', verdictBadge(run.verdict)] : null),
      run.status === 'queued' || run.status === 'running' ? progressBar(run.progress, 'Run progress') : null,
      run.error ? notice(`${run.error.code}: ${run.error.message}`, 'error') : null,
    );
  replace(
    ctx.main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/runs' }, 'Runs'), ' / ', f.shortId(run.id)),
    h('h1', { tabindex: '-1' }, title()),
    statusHost,
    body,
  );
  drawStatus();

  const [model, dataset] = await Promise.all([
    cached(`/v1/models/${run.modelId}`).catch(() => null),
    cached(`/v1/datasets/${run.datasetId}`).catch(() => null),
  ]);

  const drawBody = async () => {
    if (run.status !== 'succeeded') {
      replace(
        body,
        section('parameters', 'Run parameters', parameters(run, model, dataset)),
        section('timings', 'Timings', timings(run)),
      );
      return;
    }
    const results = await cached(`/v1/runs/${id}/results`);
    if (!ctx.alive()) return;
    const perClassToggle = h('input', { type: 'checkbox', id: 'show-per-class' });
    const accHost = h('div', { class: 'charts' });
    const classNames = (dataset?.classes ?? []).map((c) => c.name);
    const K = results.points[0]?.perClassAccuracy?.length ?? 0;
    const names = Array.from({ length: K }, (_, k) => classNames[k] ?? String(k));
    const drawAcc = () =>
      replace(
        accHost,
        pointCharts({
          name: 'accuracy',
          runs: [{ label: title(), results, style: 0 }],
          metric: 'accuracy',
          perClass: /** @type {HTMLInputElement} */ (perClassToggle).checked ? { classNames: names } : null,
        }),
      );
    perClassToggle.addEventListener('change', drawAcc);
    drawAcc();
    const examplesHost = h('div', {}, h('p', { class: 'muted' }, 'Loading examples\u2026'));
    const sections = [
      h(
        'nav',
        { class: 'toc', 'aria-label': 'On this page' },
        h(
          'ul',
          {},
          [
            ['summary', 'Summary'],
            ['accuracy', 'Accuracy'],
            ['per-point', results.ekld ? 'Consistency and eKLD' : 'Consistency'],
            ...(results.ekld ? [['per-class', 'eKLD per class']] : []),
            ...(results.nv ? [['layers', 'Layers']] : []),
            ...(run.verdict ? [['gates', 'Gates']] : []),
            ['examples', 'Examples'],
            ['parameters', 'Parameters'],
            ['timings', 'Timings'],
          ].map(([a, t]) => h('li', {}, h('a', { href: `#/runs/${id}`, onclick: (e) => jump(e, a) }, t))),
        ),
      ),
      section(
        'summary',
        'Summary',
        headline(results),
        h(
          'p',
          { class: 'muted small' },
          `${results.samples} samples \u00d7 ${results.points.length} transform points.`,
        ),
      ),
      section(
        'accuracy',
        'Accuracy vs transform',
        h(
          'div',
          { class: 'toggle' },
          perClassToggle,
          h('label', { for: 'show-per-class' }, ' Show one line per class'),
        ),
        accHost,
      ),
      section(
        'per-point',
        results.ekld ? 'Consistency and eKLD per point' : 'Consistency per point',
        h(
          'div',
          { class: 'charts' },
          pointCharts({
            name: 'consistency',
            runs: [{ label: title(), results, style: 0 }],
            metric: 'consistency',
          }),
          results.ekld
            ? pointCharts({ name: 'ekld', runs: [{ label: title(), results, style: 0 }], metric: 'ekld' })
            : [],
        ),
      ),
      results.ekld
        ? section(
            'per-class',
            'eKLD per class',
            h('div', { class: 'charts' }, classCharts([{ label: title(), results }])),
          )
        : null,
      results.nv
        ? section(
            'layers',
            'Invariance per layer',
            h(
              'div',
              { class: 'charts' },
              layerCharts(
                [{ label: title(), results }],
                (model?.layers ?? []).map((l) => l.name),
              ),
            ),
          )
        : null,
      run.verdict ? section('gates', 'Gates', gateTable(run.verdict)) : null,
      section('examples', 'Examples: the samples whose prediction flips most', examplesHost),
      section(
        'charts-svg',
        'Charts for CI (SVG)',
        h(
          'p',
          { class: 'hint' },
          'Rendered by the server; the CLI downloads the same files for its Markdown summary.',
        ),
        svgLinks(id, run),
      ),
      section('compare', 'Compare', await compareForm(run)),
      section('parameters', 'Run parameters', parameters(run, model, dataset)),
      section('timings', 'Timings', timings(run)),
    ];
    replace(body, sections);
    try {
      const ex = await api(`/v1/runs/${id}/examples?limit=8`);
      if (ctx.alive()) replace(examplesHost, examplesStrip(ex));
    } catch (err) {
      if (!ctx.alive()) return;
      replace(
        examplesHost,
        notice(
          err instanceof ApiError && err.code === 'EXAMPLES_UNAVAILABLE'
            ? 'This run has no recorded examples (it ran before the engine recorded them).'
            : `Could not load the examples: ${err instanceof Error ? err.message : err}`,
        ),
      );
    }
  };
  await drawBody();

  if (!FINISHED.has(run.status)) {
    // Live progress: poll every second until the run finishes, then show its results.
    ctx.interval(async () => {
      if (FINISHED.has(run.status)) return;
      const fresh = await api(`/v1/runs/${id}`);
      if (!ctx.alive()) return;
      const changed = fresh.status !== run.status;
      run = fresh;
      drawStatus();
      if (changed && FINISHED.has(run.status)) await drawBody();
    }, 1000);
  }
}

/** In-page jump that keeps the hash route. @param {Event} e @param {string} target */
function jump(e, target) {
  e.preventDefault();
  const el = document.getElementById(target);
  if (!el) return;
  el.scrollIntoView({ block: 'start' });
  const h2 = el.querySelector('h2');
  if (h2) {
    h2.setAttribute('tabindex', '-1');
    h2.focus({ preventScroll: true });
  }
}

/** A form to pick another succeeded run to compare with. @param {any} run */
async function compareForm(run) {
  const page = await api(`/v1/runs?status=succeeded&datasetId=${run.datasetId}&limit=50`).catch(() => ({
    items: [],
  }));
  const others = page.items.filter((r) => r.id !== run.id);
  if (others.length === 0)
    return h('p', { class: 'muted' }, 'No other succeeded run on this dataset to compare with.');
  const sel = h(
    'select',
    { id: 'compare-with', name: 'with' },
    others.map((r) =>
      h(
        'option',
        { value: r.id },
        `${r.name ?? f.shortId(r.id)} \u2014 ${f.date(r.createdAt)}${r.tags.length ? ` [${r.tags.join(', ')}]` : ''}`,
      ),
    ),
  );
  return h(
    'form',
    {
      class: 'inline-form',
      onsubmit: (/** @type {SubmitEvent} */ e) => {
        e.preventDefault();
        location.hash = `#/compare/${run.id}/${/** @type {HTMLSelectElement} */ (sel).value}`;
      },
    },
    h('label', { for: 'compare-with' }, 'Compare with '),
    sel,
    h('button', { type: 'submit' }, 'Compare'),
  );
}
