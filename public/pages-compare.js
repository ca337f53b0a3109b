// Two runs overlaid on the same charts (A solid, B dashed, different markers), with deltas B - A
// for the headline numbers, every shared transform point, every class and every layer.
import { api, cached } from './api.js';
import { h, replace } from './dom.js';
import * as f from './format.js';
import { classCharts, layerCharts, pointCharts } from './pages-run.js';
import { pointKey } from './series.js';
import { notice, section, statusBadge, table } from './ui.js';

/** @param {import('./app.js').PageContext} ctx @param {string} a @param {string} b */
export async function comparePage(ctx, a, b) {
  ctx.title('Compare runs');
  if (!a || !b) {
    replace(
      ctx.main,
      h('h1', { tabindex: '-1' }, 'Compare runs'),
      notice('Pick two runs: select them in the runs table, or use "Compare with" on a run page.'),
      h('p', {}, h('a', { href: '#/runs' }, 'Go to the runs')),
    );
    return;
  }
  const [runA, runB] = await Promise.all([api(`/v1/runs/${a}`), api(`/v1/runs/${b}`)]);
  const label = (r, which) => `${which} (${r.name ?? f.shortId(r.id)})`;
  const LA = label(runA, 'A');
  const LB = label(runB, 'B');
  const header = [
    h('p', { class: 'crumbs' }, h('a', { href: '#/runs' }, 'Runs'), ' / compare'),
    h('h1', { tabindex: '-1' }, 'Compare runs'),
    h(
      'ul',
      { class: 'compare-legend' },
      h(
        'li',
        {},
        h('strong', {}, 'A: '),
        h('a', { href: `#/runs/${runA.id}` }, runA.name ?? f.shortId(runA.id)),
        ' ',
        statusBadge(runA.status),
        '',
      ),
      h(
        'li',
        {},
        h('strong', {}, 'B: '),
        h('a', { href: `#/runs/${runB.id}` }, runB.name ?? f.shortId(runB.id)),
        ' ',
        statusBadge(runB.status),
        '',
      ),
    ),
    h(
      'p',
      { class: 'hint' },
      'In every chart the two runs differ in line dash, marker shape and bar fill as well as colour (see each legend). ',
      h('a', { href: `#/compare/${b}/${a}`, class: 'button' }, 'Swap A and B'),
    ),
  ];
  if (runA.status !== 'succeeded' || runB.status !== 'succeeded') {
    replace(ctx.main, header, notice('Both runs must have succeeded to be compared.', 'error'));
    return;
  }
  const [resA, resB, modelA, modelB] = await Promise.all([
    cached(`/v1/runs/${a}/results`),
    cached(`/v1/runs/${b}/results`),
    cached(`/v1/models/${runA.modelId}`).catch(() => null),
    cached(`/v1/models/${runB.modelId}`).catch(() => null),
  ]);
  if (!ctx.alive()) return;
  const runs = [
    { label: LA, results: resA, style: 0 },
    { label: LB, results: resB, style: 1 },
  ];
  const d = (x, y) => (x === null || x === undefined || y === null || y === undefined ? null : y - x);
  const cmpRow = (name, x, y, asPct) => [
    name,
    asPct ? f.pct(x) : f.num(x, 4),
    asPct ? f.pct(y) : f.num(y, 4),
    deltaCell(d(x, y), name, asPct),
  ];
  const summary = table({
    caption: 'Headline numbers (\u0394 = B \u2212 A; pp = percentage points)',
    head: ['Metric', 'A', 'B', '\u0394'],
    numeric: [1, 2, 3],
    rows: [
      cmpRow('Clean accuracy', resA.clean.accuracy, resB.clean.accuracy, true),
      cmpRow('Mean accuracy', resA.accuracy.mean, resB.accuracy.mean, true),
      cmpRow('Min accuracy', resA.accuracy.min, resB.accuracy.min, true),
      cmpRow('Worst-case accuracy', resA.accuracy.worstCase, resB.accuracy.worstCase, true),
      cmpRow('Consistency (mean)', resA.consistency.mean, resB.consistency.mean, true),
      cmpRow('TTA accuracy', resA.tta.accuracy, resB.tta.accuracy, true),
      ...(resA.ekld && resB.ekld ? [cmpRow('eKLD (nats)', resA.ekld.overall, resB.ekld.overall, false)] : []),
    ],
  });
  const bByKey = new Map(resB.points.map((p) => [pointKey(p.params), p]));
  const shared = resA.points.filter((p) => bByKey.has(pointKey(p.params)));
  const pointTable = table({
    caption: `Per point (${shared.length} points in both runs; \u0394 = B \u2212 A)`,
    head: ['Point', 'Accuracy A', 'Accuracy B', '\u0394 accuracy', 'eKLD A', 'eKLD B', '\u0394 eKLD'],
    numeric: [1, 2, 3, 4, 5, 6],
    rows: shared.map((p) => {
      const q = bByKey.get(pointKey(p.params));
      return [
        h('code', {}, pointKey(p.params)),
        f.pct(p.accuracy),
        f.pct(q.accuracy),
        deltaCell(d(p.accuracy, q.accuracy), 'accuracy', true),
        f.num(p.ekld, 3),
        f.num(q.ekld, 3),
        deltaCell(d(p.ekld, q.ekld), 'ekld', false),
      ];
    }),
  });
  const layerOrder = [...(modelA?.layers ?? []), ...(modelB?.layers ?? [])].map((l) => l.name);
  const nvB = new Map((resB.nv ?? []).map((r) => [`${r.layer}|${r.aggregation}`, r]));
  const layerTable =
    resA.nv && resB.nv
      ? table({
          caption: 'Per layer (\u0394 = B \u2212 A)',
          head: ['Layer', 'NV A', 'NV B', '\u0394 NV', 'TV A', 'TV B', 'SV A', 'SV B'],
          numeric: [1, 2, 3, 4, 5, 6, 7],
          rows: resA.nv
            .filter((r) => nvB.has(`${r.layer}|${r.aggregation}`))
            .map((r) => {
              const q = nvB.get(`${r.layer}|${r.aggregation}`);
              return [
                h('code', {}, `${r.layer} (${r.aggregation})`),
                f.num(r.nv, 3),
                f.num(q.nv, 3),
                f.delta(d(r.nv, q.nv), false),
                f.num(r.tv, 3),
                f.num(q.tv, 3),
                f.num(r.sv, 3),
                f.num(q.sv, 3),
              ];
            }),
        })
      : null;
  replace(
    ctx.main,
    header,
    section('summary', 'Summary', summary),
    section(
      'accuracy',
      'Accuracy vs transform',
      h('div', { class: 'charts' }, pointCharts({ name: 'accuracy', runs, metric: 'accuracy' })),
      pointTable,
    ),
    section(
      'per-point',
      'Consistency and eKLD per point',
      h(
        'div',
        { class: 'charts' },
        pointCharts({ name: 'consistency', runs, metric: 'consistency' }),
        resA.ekld && resB.ekld ? pointCharts({ name: 'ekld', runs, metric: 'ekld' }) : [],
      ),
    ),
    resA.ekld && resB.ekld
      ? section('per-class', 'eKLD per class', h('div', { class: 'charts' }, classCharts(runs)))
      : null,
    resA.nv || resB.nv
      ? section(
          'layers',
          'Invariance per layer',
          h('div', { class: 'charts' }, layerCharts(runs, layerOrder)),
          layerTable,
        )
      : null,
  );
}

/**
 * A delta B - A, marked better or worse (accuracy up is better, eKLD up is worse) by colour, a
 * symbol and, for screen readers, a word.
 */
function deltaCell(v, name, asPct) {
  const text = f.delta(v, asPct);
  if (v === null || v === 0 || !Number.isFinite(v)) return h('span', { class: 'delta' }, text);
  const better = v > 0 === !/ekld/i.test(name);
  return h(
    'span',
    { class: `delta ${better ? 'delta-better' : 'delta-worse'}` },
    text,
    h('span', { 'aria-hidden': 'true' }, better ? ' \u2714' : ' \u2716'),
    h('span', { class: 'visually-hidden' }, better ? ' (better)' : ' (worse)'),
  );
}
