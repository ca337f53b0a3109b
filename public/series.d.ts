// Types of public/series.js for the server's TypeScript (src/render/charts.ts imports that file, so
// the dashboard and the SVG charts share one implementation). Mirrors the JSDoc of series.js.

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

export declare function axisTitle(param: string | null): string;

/** Canonical point key (src/domain/sweep.ts pointKey). */
export declare function pointKey(params: Readonly<Record<string, unknown>>): string;

/** Splits points into panels (first-seen order) of series sorted by x. */
export declare function panelsOf(params: ReadonlyArray<Readonly<Record<string, unknown>>>): Panel[];

/** The results' layers in the model's graph order (unknown ones last, in results order). */
export declare function orderLayers(layers: readonly string[], order?: readonly string[]): string[];
