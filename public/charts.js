// Hand-written SVG charts for the dashboard: line charts (numeric or categorical x), horizontal
// bar charts and scatter plots. Readable without colour: every series has its own dash pattern
// and marker shape (shown in the legend), bars of a second series are hatched, values are in a
// data table under each chart. Every mark carries its data as data-* attributes (data-series,
// data-x, data-y, data-key) so that tests and assistive tooling can read what is drawn.
import { h, s } from './dom.js';

export const COLORS = [
  '#0072B2',
  '#D55E00',
  '#009E73',
  '#CC79A7',
  '#E69F00',
  '#56B4E9',
  '#000000',
  '#7a7a7a',
];
const DASHES = ['', '8 4', '2 3', '10 3 2 3', '4 4', '1 4', '12 2', '3 6'];
const SHAPES = ['circle', 'square', 'triangle', 'diamond', 'cross', 'triangle-down', 'plus', 'bar'];

let uid = 0;
const nextId = (p) => `${p}-${++uid}`;

/** Marker path centred on 0,0. @param {string} shape @param {number} r */
function markerPath(shape, r) {
  switch (shape) {
    case 'square':
      return `M${-r},${-r}h${2 * r}v${2 * r}h${-2 * r}z`;
    case 'triangle':
      return `M0,${-r * 1.2}L${r * 1.1},${r * 0.8}L${-r * 1.1},${r * 0.8}z`;
    case 'triangle-down':
      return `M0,${r * 1.2}L${r * 1.1},${-r * 0.8}L${-r * 1.1},${-r * 0.8}z`;
    case 'diamond':
      return `M0,${-r * 1.3}L${r * 1.1},0L0,${r * 1.3}L${-r * 1.1},0z`;
    case 'cross':
      return `M${-r},${-r}L${r},${r}M${r},${-r}L${-r},${r}`;
    case 'plus':
      return `M${-r * 1.2},0H${r * 1.2}M0,${-r * 1.2}V${r * 1.2}`;
    case 'bar':
      return `M${-r * 1.3},${-r * 0.5}h${2.6 * r}v${r}h${-2.6 * r}z`;
    default:
      return `M${-r},0a${r},${r} 0 1,0 ${2 * r},0a${r},${r} 0 1,0 ${-2 * r},0`;
  }
}

/** Style of series i. @param {number} i */
export function styleOf(i) {
  return {
    color: COLORS[i % COLORS.length],
    dash: DASHES[i % DASHES.length],
    shape: SHAPES[i % SHAPES.length],
    open: SHAPES[i % SHAPES.length] === 'cross' || SHAPES[i % SHAPES.length] === 'plus',
  };
}

/** A marker element. */
function marker(style, x, y, r, attrs = {}) {
  return s('path', {
    d: markerPath(style.shape, r),
    transform: `translate(${x.toFixed(2)},${y.toFixed(2)})`,
    fill: style.open ? 'none' : style.color,
    stroke: style.color,
    'stroke-width': style.open ? 2 : 1,
    ...attrs,
  });
}

/** Nice round ticks covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => raw <= st) ?? 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

/** A vertical axis title, its font shrunk to fit the plot height. */
function yAxisTitle(text, cy, ph) {
  const size = Math.max(9, Math.min(12, (ph + 24) / (text.length * 0.6)));
  return s(
    'text',
    {
      transform: `translate(14,${cy}) rotate(-90)`,
      'text-anchor': 'middle',
      class: 'axis-title-y',
      'font-size': size.toFixed(1),
    },
    text,
  );
}

/** [lo, hi] widened to whole tick steps (so the top and bottom are labelled). */
export function niceDomain(lo, hi, count = 5) {
  if (!(hi > lo)) {
    const pad = Math.max(1, Math.abs(lo) * 0.1);
    return [lo - pad, hi + pad];
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => raw <= st) ?? 10 * mag;
  return [Math.floor(lo / step + 1e-9) * step, Math.ceil(hi / step - 1e-9) * step];
}

/** Legend: one entry per series with a swatch showing its line dash and marker. */
function legend(series, kind = 'line') {
  if (series.length < 2 && kind === 'line') return null;
  return h(
    'ul',
    { class: 'legend', 'aria-label': 'legend' },
    series.map((se) => {
      const st = styleOf(se.style ?? 0);
      const sw =
        kind === 'bar'
          ? s(
              'svg',
              { width: 26, height: 14, 'aria-hidden': 'true' },
              s('rect', {
                x: 1,
                y: 1,
                width: 24,
                height: 12,
                fill: barFill(se.style ?? 0),
                stroke: st.color,
              }),
            )
          : s(
              'svg',
              { width: 34, height: 14, 'aria-hidden': 'true' },
              s('line', {
                x1: 1,
                x2: 33,
                y1: 7,
                y2: 7,
                stroke: st.color,
                'stroke-width': 2,
                'stroke-dasharray': st.dash,
              }),
              marker(st, 17, 7, 4),
            );
      return h('li', {}, sw, ' ', se.name);
    }),
  );
}

/** A collapsible data table. @param {string[]} head @param {unknown[][]} rows */
function dataTable(caption, head, rows) {
  return h(
    'details',
    { class: 'data-table' },
    h('summary', {}, 'Data table'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        {},
        h('caption', { class: 'visually-hidden' }, caption),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            head.map((c) => h('th', { scope: 'col' }, c)),
          ),
        ),
        h(
          'tbody',
          {},
          rows.map((r) =>
            h(
              'tr',
              {},
              r.map((c, i) => (i === 0 ? h('th', { scope: 'row' }, c) : h('td', {}, c))),
            ),
          ),
        ),
      ),
    ),
  );
}

/**
 * Mounts a chart that re-renders at its container's width.
 * @param {HTMLElement} container
 * @param {(width: number) => SVGElement} render
 */
function responsive(container, render) {
  const host = h('div', { class: 'chart-canvas' });
  container.append(host);
  let last = 0;
  const draw = () => {
    const w = Math.max(280, Math.min(1400, Math.floor(host.clientWidth || container.clientWidth || 640)));
    if (Math.abs(w - last) < 8) return;
    last = w;
    host.replaceChildren(render(w));
  };
  draw();
  if (typeof ResizeObserver !== 'undefined') new ResizeObserver(() => draw()).observe(host);
}

/**
 * A line chart.
 * @param {{
 *   name: string, title: string, description?: string, xTitle: string, yTitle: string,
 *   xKind?: 'linear' | 'band', categories?: string[], yFormat?: (v: number) => string,
 *   xFormat?: (v: number | string) => string, yDomain?: [number, number], height?: number,
 *   series: Array<{ name: string, style?: number, thin?: boolean, points: Array<{ x: number | string, y: number | null, key?: string }> }>,
 *   refs?: Array<{ y: number, label: string, style?: number }>, connect?: boolean,
 * }} o
 * @returns {HTMLElement}
 */
export function lineChart(o) {
  const titleId = nextId('chart-title');
  const descId = nextId('chart-desc');
  const yFormat = o.yFormat ?? ((v) => String(Number(v.toPrecision(4))));
  const xFormat = o.xFormat ?? ((v) => String(v));
  const band = o.xKind === 'band';
  const figure = h(
    'figure',
    { class: 'chart', dataset: { chart: o.name } },
    h('figcaption', { id: titleId }, o.title),
    o.description ? h('p', { id: descId, class: 'chart-desc' }, o.description) : null,
  );
  const all = o.series.flatMap((se) => se.points.filter((p) => p.y !== null && Number.isFinite(p.y)));
  const refs = o.refs ?? [];
  let [y0, y1] = o.yDomain ?? [
    Math.min(0, ...all.map((p) => p.y), ...refs.map((r) => r.y)),
    Math.max(...all.map((p) => p.y), ...refs.map((r) => r.y), 1e-9),
  ];
  if (!o.yDomain) [y0, y1] = niceDomain(y0, y1);
  const categories = band ? (o.categories ?? [...new Set(all.map((p) => String(p.x)))]) : [];
  const xs = band ? [] : all.map((p) => Number(p.x));
  const x0 = band ? 0 : Math.min(...xs);
  const x1 = band ? 0 : Math.max(...xs);
  const longest = band ? Math.max(...categories.map((c) => Math.min(c.length, 22))) : 0;

  responsive(figure, (W) => {
    const m = { l: 58, r: 14, t: 12, b: band ? 34 + Math.round(longest * 4.6) : 46 };
    const ph = o.height ?? Math.round(Math.max(170, Math.min(270, W * 0.42)));
    const H = ph + m.t + m.b;
    const pw = W - m.l - m.r;
    const sy = (v) => m.t + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
    const step = band ? pw / Math.max(1, categories.length) : 0;
    const sx = band
      ? (v) => m.l + (categories.indexOf(String(v)) + 0.5) * step
      : (v) => (x1 > x0 ? m.l + ((Number(v) - x0) / (x1 - x0)) * (pw - 16) + 8 : m.l + pw / 2);
    const svg = s('svg', {
      viewBox: `0 0 ${W} ${H}`,
      width: W,
      height: H,
      role: 'img',
      'aria-labelledby': titleId,
      ...(o.description ? { 'aria-describedby': descId } : {}),
      class: 'chart-svg',
    });
    // Grid and y axis.
    const yt = niceTicks(y0, y1, ph < 180 ? 4 : 5).filter((v) => v >= y0 - 1e-12 && v <= y1 + 1e-12);
    for (const v of yt) {
      svg.append(
        s('line', { x1: m.l, x2: m.l + pw, y1: sy(v), y2: sy(v), class: 'grid' }),
        s('text', { x: m.l - 6, y: sy(v) + 4, 'text-anchor': 'end', class: 'tick' }, yFormat(v)),
      );
    }
    svg.append(
      s('line', { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph, class: 'axis' }),
      s('line', { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, class: 'axis' }),
      yAxisTitle(o.yTitle, m.t + ph / 2, ph),
      s('text', { x: m.l + pw / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis-title' }, o.xTitle),
    );
    // x ticks.
    if (band) {
      const every = Math.max(1, Math.ceil(categories.length / Math.max(1, Math.floor(pw / 16))));
      categories.forEach((c, i) => {
        if (i % every !== 0) return;
        const label = c.length > 22 ? `${c.slice(0, 21)}\u2026` : c;
        svg.append(
          s(
            'text',
            {
              transform: `translate(${sx(c)},${m.t + ph + 12}) rotate(-35)`,
              'text-anchor': 'end',
              class: 'tick',
            },
            s('title', {}, c),
            label,
          ),
        );
      });
    } else {
      const distinct = [...new Set(xs)].sort((a, b) => a - b);
      let ticks = distinct.length <= 13 ? distinct : niceTicks(x0, x1, 6);
      const maxLabels = Math.max(2, Math.floor(pw / 44));
      if (ticks.length > maxLabels) {
        const k = Math.ceil(ticks.length / maxLabels);
        ticks = ticks.filter((_, i) => i % k === 0);
      }
      for (const v of ticks) {
        svg.append(
          s('line', { x1: sx(v), x2: sx(v), y1: m.t + ph, y2: m.t + ph + 4, class: 'axis' }),
          s('text', { x: sx(v), y: m.t + ph + 17, 'text-anchor': 'middle', class: 'tick' }, xFormat(v)),
        );
      }
    }
    // Reference lines, labelled in text.
    for (const r of refs) {
      const y = sy(r.y);
      svg.append(
        s('line', {
          x1: m.l,
          x2: m.l + pw,
          y1: y,
          y2: y,
          class: 'ref',
          'stroke-dasharray': r.style ? '2 3' : '7 4',
        }),
        s('text', { x: m.l + pw - 4, y: y - 5, 'text-anchor': 'end', class: 'ref-label' }, r.label),
      );
    }
    // Series: line segments between non-null points, markers with data attributes.
    o.series.forEach((se, si) => {
      const st = styleOf(se.style ?? si);
      const g = s('g', { class: 'series', dataset: { series: se.name } });
      let d = '';
      let pen = false;
      for (const p of se.points) {
        if (p.y === null || !Number.isFinite(p.y)) {
          pen = false;
          continue;
        }
        d += `${pen ? 'L' : 'M'}${sx(p.x).toFixed(2)},${sy(p.y).toFixed(2)}`;
        // Unordered categories (a flip next to a translation) are not joined.
        pen = o.connect !== false;
      }
      g.append(
        s('path', {
          d,
          fill: 'none',
          stroke: st.color,
          'stroke-width': se.thin ? 1.2 : 2.2,
          'stroke-dasharray': st.dash,
          class: 'line',
        }),
      );
      for (const p of se.points) {
        if (p.y === null || !Number.isFinite(p.y)) continue;
        const mk = marker(st, sx(p.x), sy(p.y), se.thin ? 3 : 4.5, {
          class: 'pt',
          dataset: { series: se.name, x: String(p.x), y: String(p.y), key: p.key ?? String(p.x) },
        });
        mk.append(s('title', {}, `${se.name}, ${p.key ?? xFormat(p.x)}: ${yFormat(p.y)}`));
        g.append(mk);
      }
      svg.append(g);
    });
    return svg;
  });
  figure.append(
    legend(o.series.map((se, i) => ({ name: se.name, style: se.style ?? i }))) ?? '',
    dataTable(
      o.title,
      ['series', 'point', o.xTitle, o.yTitle],
      o.series.flatMap((se) =>
        se.points.map((p) => [
          se.name,
          p.key ?? String(p.x),
          xFormat(p.x),
          p.y === null ? 'n/a' : yFormat(p.y),
        ]),
      ),
    ),
  );
  return figure;
}

/** Fill of bar series i: solid, then hatched patterns (defined per chart). */
function barFill(i) {
  return i === 0 ? COLORS[0] : `url(#hatch-${i % 4})`;
}

function hatchDefs() {
  const defs = s('defs');
  for (let i = 1; i < 4; i++) {
    const st = styleOf(i);
    defs.append(
      s(
        'pattern',
        {
          id: `hatch-${i}`,
          width: 6,
          height: 6,
          patternUnits: 'userSpaceOnUse',
          patternTransform: `rotate(${i === 2 ? -45 : 45})`,
        },
        s('rect', { width: 6, height: 6, fill: '#fff' }),
        s('line', { x1: 0, y1: 0, x2: 0, y2: 6, stroke: st.color, 'stroke-width': i === 3 ? 4 : 3 }),
      ),
    );
  }
  return defs;
}

/**
 * Horizontal bars: one group per category, one bar per series, value labels at the bar ends.
 * @param {{ name: string, title: string, description?: string, xTitle: string, categories: string[],
 *   series: Array<{ name: string, values: Array<number | null> }>, format?: (v: number) => string }} o
 */
export function barChart(o) {
  const titleId = nextId('chart-title');
  const format = o.format ?? ((v) => String(Number(v.toPrecision(3))));
  const figure = h(
    'figure',
    { class: 'chart', dataset: { chart: o.name } },
    h('figcaption', { id: titleId }, o.title),
    o.description ? h('p', { class: 'chart-desc' }, o.description) : null,
  );
  const values = o.series.flatMap((se) => se.values.filter((v) => v !== null && Number.isFinite(v)));
  const max = Math.max(1e-9, ...values);
  const [, top] = niceDomain(0, max, 4);
  const ticks = niceTicks(0, top, 4);
  const nS = o.series.length;
  responsive(figure, (W) => {
    const labelW = Math.min(150, Math.max(70, Math.round(W * 0.28)));
    const m = { l: labelW, r: 54, t: 8, b: 40 };
    const barH = 12;
    const groupH = nS * barH + 8;
    const H = m.t + m.b + groupH * o.categories.length;
    const pw = W - m.l - m.r;
    const sx = (v) => m.l + (v / top) * pw;
    const svg = s('svg', {
      viewBox: `0 0 ${W} ${H}`,
      width: W,
      height: H,
      role: 'img',
      'aria-labelledby': titleId,
      class: 'chart-svg',
    });
    svg.append(hatchDefs());
    for (const v of ticks) {
      svg.append(
        s('line', { x1: sx(v), x2: sx(v), y1: m.t, y2: H - m.b, class: 'grid' }),
        s('text', { x: sx(v), y: H - m.b + 15, 'text-anchor': 'middle', class: 'tick' }, format(v)),
      );
    }
    svg.append(
      s('line', { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: 'axis' }),
      s('text', { x: m.l + pw / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis-title' }, o.xTitle),
    );
    o.categories.forEach((c, ci) => {
      const gy = m.t + ci * groupH + 4;
      const maxChars = Math.floor((labelW - 8) / 6.2);
      svg.append(
        s(
          'text',
          { x: m.l - 6, y: gy + (nS * barH) / 2 + 4, 'text-anchor': 'end', class: 'tick' },
          s('title', {}, c),
          c.length > maxChars ? `${c.slice(0, maxChars - 1)}\u2026` : c,
        ),
      );
      o.series.forEach((se, si) => {
        const v = se.values[ci];
        const y = gy + si * barH;
        if (v === null || v === undefined || !Number.isFinite(v)) {
          svg.append(s('text', { x: m.l + 4, y: y + barH - 2, class: 'tick' }, 'n/a'));
          return;
        }
        const st = styleOf(si);
        const bar = s('rect', {
          x: m.l,
          y,
          width: Math.max(0.5, sx(v) - m.l),
          height: barH - 2,
          fill: barFill(si),
          stroke: st.color,
          class: 'bar',
          dataset: { series: se.name, category: c, value: String(v) },
        });
        bar.append(s('title', {}, `${se.name}, ${c}: ${format(v)}`));
        svg.append(bar, s('text', { x: sx(v) + 4, y: y + barH - 3, class: 'bar-label' }, format(v)));
      });
    });
    return svg;
  });
  figure.append(
    nS > 1
      ? legend(
          o.series.map((se, i) => ({ name: se.name, style: i })),
          'bar',
        )
      : '',
    dataTable(
      o.title,
      ['category', ...o.series.map((se) => se.name)],
      o.categories.map((c, ci) => [
        c,
        ...o.series.map((se) =>
          se.values[ci] === null ? 'n/a' : format(/** @type {number} */ (se.values[ci])),
        ),
      ]),
    ),
  );
  return figure;
}

/**
 * A scatter plot with text labels next to the points.
 * @param {{ name: string, title: string, description?: string, xTitle: string, yTitle: string,
 *   series: Array<{ name: string, points: Array<{ x: number, y: number | null, label: string }> }> }} o
 */
export function scatterChart(o) {
  const titleId = nextId('chart-title');
  const figure = h(
    'figure',
    { class: 'chart', dataset: { chart: o.name } },
    h('figcaption', { id: titleId }, o.title),
    o.description ? h('p', { class: 'chart-desc' }, o.description) : null,
  );
  const pts = o.series.flatMap((se) => se.points.filter((p) => p.y !== null && Number.isFinite(p.y)));
  const [xd0, xd1] = niceDomain(Math.min(...pts.map((p) => p.x)), Math.max(...pts.map((p) => p.x)));
  const [, yd1] = niceDomain(0, Math.max(1e-9, ...pts.map((p) => p.y)));
  const xt = niceTicks(xd0, xd1, 5);
  const yt = niceTicks(0, yd1, 5);
  responsive(figure, (W) => {
    const m = { l: 58, r: 70, t: 12, b: 46 };
    const ph = Math.round(Math.max(170, Math.min(270, W * 0.42)));
    const H = ph + m.t + m.b;
    const pw = W - m.l - m.r;
    const [x0, x1] = [xd0, xd1];
    const [y0, y1] = [0, yd1];
    const sx = (v) => m.l + ((v - x0) / (x1 - x0 || 1)) * pw;
    const sy = (v) => m.t + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
    const svg = s('svg', {
      viewBox: `0 0 ${W} ${H}`,
      width: W,
      height: H,
      role: 'img',
      'aria-labelledby': titleId,
      class: 'chart-svg',
    });
    for (const v of yt) {
      svg.append(
        s('line', { x1: m.l, x2: m.l + pw, y1: sy(v), y2: sy(v), class: 'grid' }),
        s('text', { x: m.l - 6, y: sy(v) + 4, 'text-anchor': 'end', class: 'tick' }, String(v)),
      );
    }
    for (const v of xt.filter((_, i) => pw > 300 || i % 2 === 0)) {
      svg.append(
        s('text', { x: sx(v), y: m.t + ph + 17, 'text-anchor': 'middle', class: 'tick' }, String(v)),
      );
    }
    svg.append(
      s('line', { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph, class: 'axis' }),
      s('line', { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, class: 'axis' }),
      yAxisTitle(o.yTitle, m.t + ph / 2, ph),
      s('text', { x: m.l + pw / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis-title' }, o.xTitle),
    );
    o.series.forEach((se, si) => {
      const st = styleOf(si);
      for (const p of se.points) {
        if (p.y === null || !Number.isFinite(p.y)) continue;
        const mk = marker(st, sx(p.x), sy(p.y), 4.5, {
          class: 'pt',
          dataset: { series: se.name, x: String(p.x), y: String(p.y), key: p.label },
        });
        mk.append(s('title', {}, `${se.name}, ${p.label}: size ${p.x}, ${p.y}`));
        svg.append(mk, s('text', { x: sx(p.x) + 7, y: sy(p.y) - 5, class: 'bar-label' }, p.label));
      }
    });
    return svg;
  });
  figure.append(
    legend(o.series.map((se, i) => ({ name: se.name, style: i }))) ?? '',
    dataTable(
      o.title,
      ['series', 'label', o.xTitle, o.yTitle],
      o.series.flatMap((se) =>
        se.points.map((p) => [se.name, p.label, String(p.x), p.y === null ? 'n/a' : String(p.y)]),
      ),
    ),
  );
  return figure;
}
