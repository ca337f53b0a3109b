// Server-side SVG charts of a run's results for CI comments (GET /v1/runs/{id}/charts/*.svg):
// Vega-Lite specs compiled to Vega and rendered headless (vega.View#toSVG: no browser, no canvas;
// text widths are estimated). Every chart has axis titles with units, a legend or direct labels,
// and tells its series apart by dash pattern and marker shape as well as colour.
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
// The series logic is the dashboard's own module (no build step there), so both draw the same panels.
// Both src/render and dist/render sit two levels below the repository root, beside public/.
import { orderLayers, panelsOf } from '../../public/series.js';
import type { PointParams } from '../domain/sweep.js';

/** The parts of a run's `/results` the charts read (openapi.yaml RunResults). */
export interface ChartResults {
  samples: number;
  clean: { accuracy: number | null };
  points: Array<{
    params: PointParams;
    accuracy: number | null;
    consistency: number | null;
    ekld?: number | null;
  }>;
  ekld?: {
    overall: number | null;
    perClass: Array<{
      class: number;
      name: string;
      count: number;
      value: number | null;
      classSize: number | null;
    }>;
  };
  nv?: Array<{
    layer: string;
    aggregation: string;
    dispersion: string;
    nv: number | null;
    tv: number | null;
    sv: number | null;
    infinite: number;
    total: number;
  }>;
}

export const CHART_NAMES = ['accuracy', 'ekld', 'nv'] as const;
export type ChartName = (typeof CHART_NAMES)[number];

export interface ChartContext {
  /** Shown as the chart's title prefix, e.g. the run's name or id. */
  title: string;
  /** The model's layer names in graph order (for the nv chart). */
  layerOrder?: readonly string[];
}

/** Thrown when a run's results lack what the chart shows (e.g. no nv metric). */
export class ChartUnavailableError extends Error {}

// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];
const DASHES = [
  [1, 0],
  [6, 3],
  [2, 2],
  [8, 3, 2, 3],
  [4, 4],
  [1, 3],
  [10, 2],
  [3, 6],
];
const SHAPES = [
  'circle',
  'square',
  'triangle-up',
  'diamond',
  'cross',
  'triangle-down',
  'triangle-left',
  'triangle-right',
];

const WIDTH = 560;
const HEIGHT = 260;

const CONFIG = {
  font: 'DejaVu Sans, Arial, Helvetica, sans-serif',
  background: 'white',
  padding: 12,
  view: { stroke: '#888' },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal', grid: true, gridColor: '#e4e4e4' },
  legend: {
    labelFontSize: 11,
    titleFontSize: 12,
    orient: 'bottom',
    direction: 'horizontal',
    columns: 3,
    labelLimit: 240,
  },
  title: { fontSize: 14, anchor: 'start', subtitleFontSize: 11, subtitleColor: '#444' },
};

const pct = (v: number | null | undefined) =>
  v === null || v === undefined ? 'n/a' : `${(v * 100).toFixed(1)}%`;
const num = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : v.toPrecision(4));

/** Scales mapping series names to colour, dash and shape, in the given order. */
function seriesScales(names: readonly string[]) {
  const range = <T>(list: readonly T[]) => names.map((_, i) => list[i % list.length]);
  return {
    color: { scale: { domain: [...names], range: range(PALETTE) } },
    strokeDash: { scale: { domain: [...names], range: range(DASHES) } },
    shape: { scale: { domain: [...names], range: range(SHAPES) } },
  };
}

type Row = Record<string, number | string | null>;

/** One line panel: y against the panel's x, one line per series, optional reference rule. */
function linePanel(opts: {
  title: string;
  subtitle?: string;
  rows: Row[];
  xTitle: string;
  xType: 'quantitative' | 'ordinal';
  xSort?: readonly string[];
  y: { field: string; title: string; format?: string; domain?: [number, number] };
  seriesTitle: string;
  series: readonly string[];
  rule?: { value: number; label: string };
  /** Join the points with lines (false for unordered categories, e.g. flips next to translations). */
  connect?: boolean;
  description: string;
}): Record<string, unknown> {
  const s = seriesScales(opts.series);
  const ticks = [
    ...new Set(opts.rows.map((r) => r.x).filter((v): v is number => typeof v === 'number')),
  ].sort((a, b) => a - b);
  const legend = opts.series.length > 1 ? { title: opts.seriesTitle, symbolStrokeWidth: 2 } : null;
  const x = {
    field: 'x',
    type: opts.xType,
    title: opts.xTitle,
    ...(opts.xSort ? { sort: [...opts.xSort] } : {}),
    ...(opts.xType === 'ordinal'
      ? { axis: { labelAngle: -30, labelLimit: 260 } }
      : { scale: { zero: false, nice: false }, ...(ticks.length <= 13 ? { axis: { values: ticks } } : {}) }),
  };
  const y = {
    field: opts.y.field,
    type: 'quantitative',
    title: opts.y.title,
    ...(opts.y.format ? { axis: { format: opts.y.format } } : {}),
    ...(opts.y.domain ? { scale: { domain: opts.y.domain } } : {}),
  };
  const layers: Record<string, unknown>[] = [
    {
      mark:
        opts.connect === false
          ? { type: 'point', filled: true, size: 70 }
          : { type: 'line', strokeWidth: 2, point: { filled: true, size: 55 } },
      encoding: {
        x,
        y,
        color: { field: 'series', type: 'nominal', ...s.color, legend },
        strokeDash: { field: 'series', type: 'nominal', ...s.strokeDash, legend },
        shape: { field: 'series', type: 'nominal', ...s.shape, legend },
        tooltip: [
          { field: 'label', type: 'nominal', title: 'point' },
          { field: opts.y.field, type: 'quantitative', title: opts.y.title, format: opts.y.format ?? '.4g' },
        ],
      },
    },
  ];
  if (opts.rule) {
    layers.push(
      {
        data: { values: [{}] },
        mark: { type: 'rule', strokeDash: [6, 4], color: '#333' },
        encoding: { y: { datum: opts.rule.value } },
      },
      {
        data: { values: [{}] },
        mark: { type: 'text', align: 'left', dx: 4, dy: -7, fontSize: 11, color: '#222' },
        encoding: { y: { datum: opts.rule.value }, x: { value: 0 }, text: { value: opts.rule.label } },
      },
    );
  }
  return {
    title: { text: opts.title, ...(opts.subtitle ? { subtitle: opts.subtitle } : {}) },
    description: opts.description,
    width: WIDTH,
    height: HEIGHT,
    data: { values: opts.rows },
    layer: layers,
  };
}

function accuracySpec(results: ChartResults, ctx: ChartContext): TopLevelSpec {
  const params = results.points.map((p) => p.params);
  const clean = results.clean.accuracy;
  const panels = panelsOf(params).map((panel) => {
    const rows: Row[] = panel.points.map((q) => ({
      x: q.x,
      series: q.series,
      label: q.key,
      accuracy: results.points[q.point].accuracy,
    }));
    const series = [...new Set(panel.points.map((q) => q.series))];
    const what = panel.param ?? 'transform point';
    return linePanel({
      title: `Accuracy vs ${what}`,
      subtitle: `${ctx.title}; ${results.samples} samples; dashed rule: clean accuracy`,
      rows,
      xTitle: panel.axisTitle,
      xType: panel.param === null ? 'ordinal' : 'quantitative',
      xSort: panel.param === null ? panel.points.map((q) => String(q.x)) : undefined,
      y: { field: 'accuracy', title: 'accuracy (% of samples correct)', format: '.0%', domain: [0, 1] },
      seriesTitle: 'other parameters',
      connect: panel.param !== null,
      series,
      rule: clean === null ? undefined : { value: clean, label: `clean ${pct(clean)}` },
      description: `Accuracy against ${what}: ${rows.map((r) => `${r.label} ${pct(r.accuracy as number | null)}`).join(', ')}; clean accuracy ${pct(clean)}.`,
    });
  });
  return wrap(panels, `Accuracy of ${ctx.title} under its transform sweep`);
}

function ekldSpec(results: ChartResults, ctx: ChartContext): TopLevelSpec {
  const ekld = results.ekld;
  if (!ekld) throw new ChartUnavailableError('the run did not compute the ekld metric');
  const panels: Record<string, unknown>[] = [];
  const params = results.points.map((p) => p.params);
  for (const panel of panelsOf(params)) {
    const rows: Row[] = panel.points.map((q) => ({
      x: q.x,
      series: q.series,
      label: q.key,
      ekld: results.points[q.point].ekld ?? null,
    }));
    const what = panel.param ?? 'transform point';
    panels.push(
      linePanel({
        title: `eKLD vs ${what}`,
        subtitle: `${ctx.title}; mean KL(p(x) || p(t(x))) over samples; overall ${num(ekld.overall)} nats`,
        rows,
        xTitle: panel.axisTitle,
        xType: panel.param === null ? 'ordinal' : 'quantitative',
        xSort: panel.param === null ? panel.points.map((q) => String(q.x)) : undefined,
        y: { field: 'ekld', title: 'eKLD (nats)' },
        seriesTitle: 'other parameters',
        connect: panel.param !== null,
        series: [...new Set(panel.points.map((q) => q.series))],
        description: `eKLD per point: ${rows.map((r) => `${r.label} ${num(r.ekld as number | null)}`).join(', ')}.`,
      }),
    );
  }
  const classes = ekld.perClass.map((c) => ({
    name: `${c.class}: ${c.name}`,
    value: c.value,
    label: num(c.value),
    count: c.count,
    classSize: c.classSize,
  }));
  panels.push({
    title: { text: 'eKLD per class', subtitle: 'mean KL over the class samples and all points (nats)' },
    description: `eKLD per class: ${classes.map((c) => `${c.name} ${c.label}`).join(', ')}.`,
    width: WIDTH,
    height: Math.max(120, 22 * classes.length),
    data: { values: classes },
    encoding: {
      y: {
        field: 'name',
        type: 'nominal',
        sort: classes.map((c) => c.name),
        title: 'class',
        axis: { labelLimit: 180 },
      },
      x: { field: 'value', type: 'quantitative', title: 'eKLD (nats)' },
    },
    layer: [
      { mark: { type: 'bar', color: PALETTE[0], stroke: '#003a5c' } },
      { mark: { type: 'text', align: 'left', dx: 3, fontSize: 10 }, encoding: { text: { field: 'label' } } },
    ],
  });
  const sized = classes.filter((c) => c.classSize !== null && c.value !== null);
  if (sized.length > 0) {
    panels.push({
      title: { text: 'eKLD vs training class size', subtitle: 'one point per class (Zhou et al.)' },
      description: `eKLD against class size: ${sized.map((c) => `${c.name} size ${c.classSize} eKLD ${c.label}`).join(', ')}.`,
      width: WIDTH,
      height: HEIGHT,
      data: { values: sized },
      encoding: {
        x: {
          field: 'classSize',
          type: 'quantitative',
          title: 'training samples in the class',
          scale: { zero: false, padding: 40 },
        },
        y: { field: 'value', type: 'quantitative', title: 'eKLD (nats)' },
      },
      layer: [
        { mark: { type: 'point', filled: true, size: 70, shape: 'diamond', color: PALETTE[1] } },
        {
          mark: { type: 'text', align: 'left', dx: 6, dy: -6, fontSize: 10 },
          encoding: { text: { field: 'name' } },
        },
      ],
    });
  }
  return wrap(panels, `eKLD of ${ctx.title}`);
}

function nvSpec(results: ChartResults, ctx: ChartContext): TopLevelSpec {
  const nv = results.nv;
  if (!nv || nv.length === 0) throw new ChartUnavailableError('the run did not compute the nv metric');
  const order = orderLayers(
    nv.map((r) => r.layer),
    ctx.layerOrder,
  );
  const aggregations = [...new Set(nv.map((r) => r.aggregation))];
  const dispersion = nv[0].dispersion;
  const multi = aggregations.length > 1;
  const nvRows: Row[] = nv.map((r) => ({
    x: r.layer,
    series: multi ? `NV (${r.aggregation})` : 'NV',
    label: `${r.layer} (${r.aggregation})`,
    value: r.nv,
  }));
  const tvsvRows: Row[] = nv.flatMap((r) => [
    { x: r.layer, series: multi ? `TV (${r.aggregation})` : 'TV', label: `${r.layer} TV`, value: r.tv },
    { x: r.layer, series: multi ? `SV (${r.aggregation})` : 'SV', label: `${r.layer} SV`, value: r.sv },
  ]);
  const panels = [
    linePanel({
      title: 'Normalized variance per layer (graph order)',
      subtitle: `${ctx.title}; NV = TV / SV, lower is more invariant; dashed rule: NV = 1`,
      rows: nvRows,
      xTitle: 'layer (ONNX value, in graph order)',
      xType: 'ordinal',
      xSort: order,
      y: { field: 'value', title: 'NV (TV / SV, unitless)' },
      seriesTitle: 'measure',
      series: [...new Set(nvRows.map((r) => String(r.series)))],
      rule: { value: 1, label: 'NV = 1' },
      description: `NV per layer: ${nv.map((r) => `${r.layer} (${r.aggregation}) ${num(r.nv)}`).join(', ')}.`,
    }),
    linePanel({
      title: 'Transformation (TV) and sample (SV) variance per layer',
      subtitle: `mean ${dispersion === 'variance' ? 'variance' : 'standard deviation'} of the activations`,
      rows: tvsvRows,
      xTitle: 'layer (ONNX value, in graph order)',
      xType: 'ordinal',
      xSort: order,
      y: { field: 'value', title: `${dispersion === 'variance' ? 'variance' : 'std'} (activation units)` },
      seriesTitle: 'measure',
      series: [...new Set(tvsvRows.map((r) => String(r.series)))],
      description: `TV and SV per layer: ${nv.map((r) => `${r.layer} TV ${num(r.tv)} SV ${num(r.sv)}`).join(', ')}.`,
    }),
  ];
  return wrap(panels, `Normalized variance of ${ctx.title}`);
}

function wrap(panels: Record<string, unknown>[], description: string): TopLevelSpec {
  const base = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    config: CONFIG,
    // Each panel's text description, for the SVG's <desc>.
    usermeta: { descriptions: panels.map((p) => String(p.description ?? '')) },
  };
  if (panels.length === 1) return { ...base, ...panels[0], description } as unknown as TopLevelSpec;
  return {
    ...base,
    description,
    vconcat: panels,
    spacing: 28,
    resolve: { scale: { color: 'independent', strokeDash: 'independent', shape: 'independent' } },
  } as unknown as TopLevelSpec;
}

export function chartSpec(name: ChartName, results: ChartResults, ctx: ChartContext): TopLevelSpec {
  switch (name) {
    case 'accuracy':
      return accuracySpec(results, ctx);
    case 'ekld':
      return ekldSpec(results, ctx);
    case 'nv':
      return nvSpec(results, ctx);
  }
}

const escapeXml = (t: string) =>
  t.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c,
  );

/** Title and text description of a chart (every panel's description), for <title> and <desc>. */
function describe(spec: TopLevelSpec): { title: string; desc: string } {
  const s = spec as unknown as { description?: string; usermeta?: { descriptions?: string[] } };
  return {
    title: s.description ?? 'chart',
    desc: (s.usermeta?.descriptions ?? []).filter(Boolean).join(' '),
  };
}

/** Renders a chart of a run's results as a standalone SVG document, with <title> and <desc>. */
export async function renderChart(
  name: ChartName,
  results: ChartResults,
  ctx: ChartContext,
): Promise<string> {
  const spec = chartSpec(name, results, ctx);
  const { title, desc } = describe(spec);
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    return svg.replace(
      /^<svg ([^>]*)>/,
      (_m, attrs: string) =>
        `<svg ${attrs} role="img" aria-labelledby="chart-title chart-desc"><title id="chart-title">${escapeXml(title)}</title><desc id="chart-desc">${escapeXml(desc)}</desc>`,
    );
  } finally {
    view.finalize();
  }
}
