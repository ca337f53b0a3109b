// How a run's transform points become chart series, for the dashboard and for the server's SVG
// charts alike (src/render/charts.ts imports this file; public/series.d.ts gives it types there):
// the x axis of a point is its first numeric parameter (in application order) and its line is
// named by the others, so a rotation sweep is one line against the angle, a grid of rotations x
// scales is one line per scale against the angle, and a concatenation of rotations and brightness
// deltas gives two panels (different units). Points without a numeric parameter (flips, identity,
// [dx, dy] translations, affine) go to a categorical panel labelled by their point key.
// Plain JavaScript with no imports: the browser loads it as it is, with no build step.

const UNITS = {
  rotate: 'rotation angle (degrees, counter-clockwise)',
  shear: 'shear angle (degrees)',
  scale: 'scale factor (\u00d7)',
  translate_x: 'horizontal shift (px)',
  translate_y: 'vertical shift (px)',
  translate_x_frac: 'horizontal shift (fraction of width)',
  translate_y_frac: 'vertical shift (fraction of height)',
  brightness: 'brightness delta (pixel value, 0\u20131)',
  contrast: 'contrast factor (\u00d7, about 0.5)',
  gamma: 'gamma exponent',
  gaussian_noise: 'noise \u03c3 (pixel value, 0\u20131)',
  gaussian_blur: 'blur \u03c3 (px)',
  dilate: 'dilation kernel size k (px)',
  erode: 'erosion kernel size k (px)',
  background: 'background value (0\u20131)',
};

/** @param {string | null} param */
export const axisTitle = (param) => (param === null ? 'transform point' : (UNITS[param] ?? param));

/** @param {number} x */
const fmt = (x) => String(x === 0 ? 0 : x);

/** Canonical point key (src/domain/sweep.ts pointKey). @param {Record<string, unknown>} params */
export function pointKey(params) {
  return Object.entries(params)
    .map(([k, v]) => {
      if (v === true) return k;
      if (v === false) return `${k}=false`;
      if (Array.isArray(v)) return `${k}=[${v.map(fmt).join(',')}]`;
      return `${k}=${fmt(/** @type {number} */ (v))}`;
    })
    .join(',');
}

/**
 * @typedef {object} SeriesPoint
 * @property {number} point Index of the point in the run's `points`.
 * @property {number | string} x The x value: a number, or the point key in the categorical panel.
 * @property {string} series
 * @property {string} key
 *
 * @typedef {object} Panel
 * @property {string | null} param The x parameter; null for the categorical panel.
 * @property {string} axisTitle Axis title with unit.
 * @property {SeriesPoint[]} points
 */

/**
 * Splits points into panels (first-seen order) of series sorted by x.
 * @param {ReadonlyArray<Record<string, unknown>>} params
 * @returns {Panel[]}
 */
export function panelsOf(params) {
  /** @type {Map<string, Panel>} */
  const panels = new Map();
  params.forEach((p, point) => {
    const entries = Object.entries(p);
    const at = entries.findIndex(([, v]) => typeof v === 'number');
    const param = at >= 0 ? entries[at][0] : null;
    const rest = Object.fromEntries(entries.filter((_, i) => i !== at));
    const id = param ?? '';
    let panel = panels.get(id);
    if (!panel) {
      panel = { param, axisTitle: axisTitle(param), points: [] };
      panels.set(id, panel);
    }
    panel.points.push({
      point,
      x: at >= 0 ? /** @type {number} */ (entries[at][1]) : pointKey(p),
      series: param === null ? 'points' : entries.length > 1 ? pointKey(rest) : param,
      key: pointKey(p),
    });
  });
  for (const panel of panels.values()) {
    if (panel.param === null) continue;
    const order = new Map();
    for (const q of panel.points) if (!order.has(q.series)) order.set(q.series, order.size);
    panel.points.sort((a, b) => order.get(a.series) - order.get(b.series) || Number(a.x) - Number(b.x));
  }
  return [...panels.values()];
}

/**
 * The results' layers in the model's graph order (unknown ones last, in results order).
 * @param {readonly string[]} layers @param {readonly string[]} order
 */
export function orderLayers(layers, order = []) {
  const rank = new Map(order.map((l, i) => [l, i]));
  return [...new Set(layers)]
    .map((l, i) => ({ l, r: rank.get(l) ?? order.length + i }))
    .sort((a, b) => a.r - b.r)
    .map((x) => x.l);
}
