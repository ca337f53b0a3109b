// The thumbnail transforms (plain JS, one image) agree with the engine's ONNX transform graphs.
import { afterAll, describe, expect, it } from 'vitest';
import {
  compileTransformPlan,
  createTransformRunner,
  type TransformRunner,
} from '../../src/engine/transformGraph.js';
import type { TransformOps } from '../../src/engine/transformOps.js';
import { transformImage } from '../../src/render/imageTransform.js';

const H = 9;
const W = 8;
const C = 2;
const SIZE = C * H * W;

function testImage(): Float32Array {
  const img = new Float32Array(SIZE);
  let s = 987;
  for (let i = 0; i < img.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    img[i] = i % 7 === 0 ? 0 : i % 13 === 0 ? 1 : (s >>> 8) / 16777216;
  }
  return img;
}

const CASES: Record<string, TransformOps> = {
  'rotate 30': [{ type: 'rotate', deg: 30 }],
  'rotate 90': [{ type: 'rotate', deg: 90 }],
  'rotate -180 fill 0.5': [{ type: 'rotate', deg: -180, fill: 0.5 }],
  'scale 1.3 fill 0.25': [{ type: 'scale', factor: 1.3, fill: 0.25 }],
  'translate (1.5, -2)': [{ type: 'translate', dx: 1.5, dy: -2 }],
  'translate fraction': [{ type: 'translate', dx: 0.25, dy: 0, unit: 'fraction' }],
  'shear 20': [{ type: 'shear', deg: 20 }],
  hflip: [{ type: 'hflip' }],
  'vflip then rotate 15': [{ type: 'vflip' }, { type: 'rotate', deg: 15 }],
  affine: [{ type: 'affine', matrix: [0.9, 0.1, 1, -0.2, 1.1, 0] }],
  brightness: [{ type: 'brightness', delta: 0.3 }],
  contrast: [{ type: 'contrast', factor: 1.7 }],
  gamma: [{ type: 'gamma', g: 0.5 }],
  noise: [{ type: 'gaussian_noise', sigma: 0.2, seed: 11 }],
  blur: [{ type: 'gaussian_blur', sigma: 1.2 }],
  dilate: [{ type: 'dilate', k: 3 }],
  'erode 2': [{ type: 'erode', k: 2 }],
  background: [{ type: 'background', value: 0.4 }],
  'rotate, brightness, scale': [
    { type: 'rotate', deg: 45 },
    { type: 'brightness', delta: -0.1 },
    { type: 'scale', factor: 0.8 },
  ],
  identity: [{ type: 'identity' }],
};

const runners: TransformRunner[] = [];
afterAll(async () => {
  await Promise.all(runners.map((r) => r.release()));
});

describe('transformImage (thumbnails) matches the engine', () => {
  const names = Object.keys(CASES);
  const image = testImage();
  const sampleIndex = 17;

  it.each(names)('%s', async (name) => {
    const ops = CASES[name];
    const plan = compileTransformPlan([ops], { height: H, width: W, channels: C });
    const runner = await createTransformRunner(plan, { executionProviders: ['cpu'] });
    runners.push(runner);
    const expected = await runner.run(image, 1, [sampleIndex]);
    const actual = transformImage({ data: image, channels: C, height: H, width: W }, ops, sampleIndex);
    expect(actual.data.length).toBe(SIZE);
    let worst = 0;
    for (let i = 0; i < SIZE; i++) worst = Math.max(worst, Math.abs(actual.data[i] - expected[i]));
    expect(worst).toBeLessThan(1e-5);
  });

  it('refuses invalid parameters', () => {
    const img = { data: image, channels: C, height: H, width: W };
    expect(() => transformImage(img, [{ type: 'gamma', g: 0 }], 0)).toThrow(/gamma\.g must be > 0/);
    expect(() => transformImage(img, [{ type: 'dilate', k: 1.5 }], 0)).toThrow(
      /dilate\.k must be an integer/,
    );
    expect(() => transformImage(img, [{ type: 'affine', matrix: [0, 0, 0, 0, 0, 0] }], 0)).toThrow();
  });
});
