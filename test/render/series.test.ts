// public/series.js, the one series module of the dashboard and of the server's SVG charts: how
// transform points become panels and lines, the point keys, the layer order, the axis titles.
import { describe, expect, it } from 'vitest';
import { axisTitle, orderLayers, panelsOf, pointKey } from '../../public/series.js';
import { renderChart } from '../../src/render/charts.js';

describe('series (public/series.js)', () => {
  it('writes point keys as src/domain/sweep.ts does', () => {
    expect(pointKey({ rotate: 90 })).toBe('rotate=90');
    expect(pointKey({ rotate: 15, scale: 1.2 })).toBe('rotate=15,scale=1.2');
    expect(pointKey({ translate: [2, -3] })).toBe('translate=[2,-3]');
    expect(pointKey({ hflip: true })).toBe('hflip');
    expect(pointKey({ hflip: false })).toBe('hflip=false');
    expect(pointKey({ rotate: -0, translate: [-0, 1] })).toBe('rotate=0,translate=[0,1]');
  });

  it('puts points in panels by their first numeric parameter, lines by the others, sorted by x', () => {
    const panels = panelsOf([
      { rotate: 90, scale: 1.2 },
      { rotate: 0, scale: 1.2 },
      { rotate: 0, scale: 0.8 },
      { brightness: -0.2 },
      { hflip: true },
      { translate: [2, -3] },
      { rotate: 45, scale: 0.8 },
      { hflip: true, rotate: 30 },
    ]);
    expect(panels).toEqual([
      {
        param: 'rotate',
        axisTitle: 'rotation angle (degrees, counter-clockwise)',
        points: [
          { point: 1, x: 0, series: 'scale=1.2', key: 'rotate=0,scale=1.2' },
          { point: 0, x: 90, series: 'scale=1.2', key: 'rotate=90,scale=1.2' },
          { point: 2, x: 0, series: 'scale=0.8', key: 'rotate=0,scale=0.8' },
          { point: 6, x: 45, series: 'scale=0.8', key: 'rotate=45,scale=0.8' },
          { point: 7, x: 30, series: 'hflip', key: 'hflip,rotate=30' },
        ],
      },
      {
        param: 'brightness',
        axisTitle: 'brightness delta (pixel value, 0\u20131)',
        points: [{ point: 3, x: -0.2, series: 'brightness', key: 'brightness=-0.2' }],
      },
      {
        param: null,
        axisTitle: 'transform point',
        // The categorical panel keeps the run's order.
        points: [
          { point: 4, x: 'hflip', series: 'points', key: 'hflip' },
          { point: 5, x: 'translate=[2,-3]', series: 'points', key: 'translate=[2,-3]' },
        ],
      },
    ]);
  });

  it('orders layers as the graph, unknown ones last in results order, each once', () => {
    expect(orderLayers(['fc', 'conv1', 'extra', 'conv1', 'relu'], ['conv1', 'relu', 'fc'])).toEqual([
      'conv1',
      'relu',
      'fc',
      'extra',
    ]);
    expect(orderLayers(['zeta', 'fc', 'alpha'], ['fc'])).toEqual(['fc', 'zeta', 'alpha']);
    expect(orderLayers(['b', 'a'])).toEqual(['b', 'a']);
  });

  it('titles axes with their units; an unknown parameter by its name', () => {
    expect(axisTitle('scale')).toBe('scale factor (\u00d7)');
    expect(axisTitle('gaussian_noise')).toBe('noise \u03c3 (pixel value, 0\u20131)');
    expect(axisTitle('hue')).toBe('hue');
    expect(axisTitle(null)).toBe('transform point');
  });

  it('is what the server-side SVG charts draw', async () => {
    const svg = await renderChart(
      'accuracy',
      {
        samples: 10,
        clean: { accuracy: 0.9 },
        points: [0.8, 1.2].map((scale, i) => ({
          params: { scale },
          accuracy: 0.5 + i / 10,
          consistency: null,
        })),
      },
      { title: 'scales' },
    );
    expect(svg).toContain('scale factor (\u00d7)');
    expect(svg).toContain('scale=0.8 50.0%');
    expect(svg).toContain('scale=1.2 60.0%');
  });
});
