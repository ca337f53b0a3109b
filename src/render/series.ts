// How a run's transform points become chart series: the x axis of a point is its first numeric
// parameter (in application order) and its line is named by the others, so a rotation sweep is one
// line against the angle, a grid of rotations x scales is one line per scale against the angle, and
// a concatenation of rotations and brightness deltas gives two panels (different units). Points
// without a numeric parameter (flips, identity, [dx, dy] translations, affine) go to a categorical
// panel labelled by their point key. The dashboard (public/series.js) groups points the same way.
import { type PointParams, pointKey } from '../domain/sweep.js';

export interface SeriesPoint {
  /** Index of the point in the run's `points`. */
  point: number;
  /** The x value: a number, or the point key in the categorical panel. */
  x: number | string;
  series: string;
  key: string;
}

export interface Panel {
  /** The x parameter; null for the categorical panel. */
  param: string | null;
  /** Axis title with unit. */
  axisTitle: string;
  points: SeriesPoint[];
}

const UNITS: Record<string, string> = {
  rotate: 'rotation angle (degrees, counter-clockwise)',
  shear: 'shear angle (degrees)',
  scale: 'scale factor (x)',
  translate_x: 'horizontal shift (px)',
  translate_y: 'vertical shift (px)',
  translate_x_frac: 'horizontal shift (fraction of width)',
  translate_y_frac: 'vertical shift (fraction of height)',
  brightness: 'brightness delta (pixel value, 0-1)',
  contrast: 'contrast factor (x, about 0.5)',
  gamma: 'gamma exponent',
  gaussian_noise: 'noise sigma (pixel value, 0-1)',
  gaussian_blur: 'blur sigma (px)',
  dilate: 'dilation kernel size k (px)',
  erode: 'erosion kernel size k (px)',
  background: 'background value (0-1)',
};

export function axisTitle(param: string | null): string {
  if (param === null) return 'transform point';
  return UNITS[param] ?? param;
}

/** Splits points into panels (first-seen order) of series sorted by x. */
export function panelsOf(params: readonly PointParams[]): Panel[] {
  const panels = new Map<string, Panel>();
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
      x: at >= 0 ? (entries[at][1] as number) : pointKey(p),
      series: param === null ? 'points' : entries.length > 1 ? pointKey(rest) : param,
      key: pointKey(p),
    });
  });
  for (const panel of panels.values()) {
    if (panel.param === null) continue;
    const order = new Map<string, number>();
    for (const q of panel.points) if (!order.has(q.series)) order.set(q.series, order.size);
    panel.points.sort((a, b) => order.get(a.series)! - order.get(b.series)! || +a.x - +b.x);
  }
  return [...panels.values()];
}
