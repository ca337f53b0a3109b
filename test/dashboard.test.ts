// The dashboard's server side: the page and its assets (public, with a CSP), the SVG charts of a
// run, the examples of a run and dataset images (plain and transformed), every response checked
// against openapi.yaml.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExamplesAccumulator } from '../src/domain/examples.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';
import {
  FMNIST_CLASSES,
  FMNIST_PREPROCESSING,
  submitRun,
  uploadFmnist,
  uploadModel,
  waitForRun,
} from './helpers/runs.js';

let t: TestApp;
let datasetId: string;
let runId: string;
let accuracyRunId: string;
const ANGLES = [-90, 0, 90];

const get = (url: string, auth = true) => t.app.inject({ method: 'GET', url, headers: auth ? t.auth : {} });

async function pixels(png: Buffer) {
  const meta = await sharp(png).metadata();
  const { data, info } = await sharp(png).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: meta.channels };
}

beforeAll(async () => {
  t = await createTestApp({}, { workers: true });
  const model = await uploadModel(t, 'fmnist-cnn-plain.onnx', {
    name: 'plain',
    preprocessing: JSON.stringify(FMNIST_PREPROCESSING),
  });
  datasetId = (await uploadFmnist(t)).id;
  const run = await submitRun(t, {
    modelId: model.id,
    datasetId,
    name: 'dash',
    transforms: [{ type: 'rotate', values: ANGLES }],
    metrics: ['accuracy', 'ekld', 'nv'],
    nv: { layers: [model.layers[0].name, 'logits'] },
    classSizes: FMNIST_CLASSES.map((_, i) => 6000 - 100 * i),
    limit: 40,
  });
  const accOnly = await submitRun(t, {
    modelId: model.id,
    datasetId,
    transforms: [{ type: 'brightness', values: [-0.2, 0.2] }],
    metrics: ['accuracy'],
    limit: 20,
  });
  runId = run.id;
  accuracyRunId = accOnly.id;
  expect((await waitForRun(t, runId)).status).toBe('succeeded');
  expect((await waitForRun(t, accuracyRunId)).status).toBe('succeeded');
}, 180_000);
afterAll(async () => t?.close());

describe('dashboard page and assets', () => {
  it('serves the page and its modules without a key, with a strict CSP', async () => {
    const page = await get('/', false);
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    expect(page.body).toContain('/ui/app.js');
    expect(page.body).not.toMatch(/https?:\/\/(?!www\.w3\.org)/); // no CDN
    expectMatchesSpec('GET', '/', page);
    for (const file of ['app.js', 'charts.js', 'style.css', 'favicon.svg']) {
      const res = await get(`/ui/${file}`, false);
      expect(res.statusCode, file).toBe(200);
      expectMatchesSpec('GET', '/ui/{file}', res);
    }
    expect((await get('/ui/app.js', false)).headers['content-type']).toMatch(/javascript/);
  });

  it('refuses other paths under /ui', async () => {
    for (const file of ['..%2Fpackage.json', 'index.html', 'nope.js', '.env']) {
      const res = await get(`/ui/${file}`, false);
      expect(res.statusCode, file).toBe(404);
      expect(res.headers['content-type']).toMatch(/problem\+json/);
    }
  });
});

describe('GET /v1/runs/{id}/charts/{chart}', () => {
  it('renders the three charts of a run as SVG with its data', async () => {
    const results = (await get(`/v1/runs/${runId}/results`)).json();
    for (const chart of ['accuracy.svg', 'ekld.svg', 'nv.svg']) {
      const res = await get(`/v1/runs/${runId}/charts/${chart}`);
      expect(res.statusCode, res.body).toBe(200);
      expectMatchesSpec('GET', '/v1/runs/{id}/charts/{chart}', res);
      expect(res.body).toMatch(/^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
      // Renders as an image (a parsable SVG).
      const meta = await sharp(Buffer.from(res.body)).metadata();
      expect(meta.width).toBeGreaterThan(300);
    }
    const acc = (await get(`/v1/runs/${runId}/charts/accuracy.svg`)).body;
    expect(acc).toContain('rotation angle (degrees, counter-clockwise)');
    expect(acc).toContain(`clean ${(results.clean.accuracy * 100).toFixed(1)}%`);
    // The text description lists every point's accuracy.
    for (const p of results.points)
      expect(acc).toContain(`rotate=${p.params.rotate} ${(p.accuracy * 100).toFixed(1)}%`);
    const nv = (await get(`/v1/runs/${runId}/charts/nv.svg`)).body;
    expect(nv).toContain('logits');
    expect(nv).toContain('NV (TV / SV, unitless)');
    const ekld = (await get(`/v1/runs/${runId}/charts/ekld.svg`)).body;
    expect(ekld).toContain('eKLD vs training class size');
    expect(ekld).toContain('Ankle boot');
  });

  it('answers 404, 409 and 401 as documented', async () => {
    const check = async (url: string, status: number, code?: string, auth = true) => {
      const res = await get(url, auth);
      expect(res.statusCode, url).toBe(status);
      if (code) expect(res.json().code).toBe(code);
      expectMatchesSpec('GET', '/v1/runs/{id}/charts/{chart}', res);
    };
    await check(`/v1/runs/${runId}/charts/pie.svg`, 404, 'NOT_FOUND');
    await check(`/v1/runs/${runId}/charts/accuracy.png`, 404, 'NOT_FOUND');
    await check('/v1/runs/00000000-0000-4000-8000-000000000000/charts/nv.svg', 404, 'NOT_FOUND');
    await check(`/v1/runs/${accuracyRunId}/charts/nv.svg`, 409, 'CHART_UNAVAILABLE');
    await check(`/v1/runs/${accuracyRunId}/charts/ekld.svg`, 409, 'CHART_UNAVAILABLE');
    await check(`/v1/runs/${runId}/charts/nv.svg`, 401, 'UNAUTHORIZED', false);
    const acc = await get(`/v1/runs/${accuracyRunId}/charts/accuracy.svg`);
    expect(acc.statusCode).toBe(200);
    expect(acc.body).toContain('brightness delta');
  });
});

describe('GET /v1/datasets/{id}/images/{index}', () => {
  const url = (index: number, q = '') => `/v1/datasets/${datasetId}/images/${index}${q}`;

  it('returns the stored image as PNG with its label', async () => {
    const res = await get(url(0));
    expect(res.statusCode).toBe(200);
    expectMatchesSpec('GET', '/v1/datasets/{id}/images/{index}', res);
    expect(res.headers['content-type']).toBe('image/png');
    expect(res.headers['x-sample-label']).toMatch(/^[0-9]$/);
    const img = await pixels(res.rawPayload);
    expect([img.width, img.height, img.channels]).toEqual([28, 28, 1]);
  });

  it('applies a transform point given as a key or as JSON (rotate 90 = an exact rot90)', async () => {
    const plain = await pixels((await get(url(3))).rawPayload);
    const byKey = await get(url(3, `?transform=${encodeURIComponent('rotate=90')}`));
    const byJson = await get(url(3, `?transform=${encodeURIComponent('{"rotate":90}')}`));
    expect(byKey.statusCode).toBe(200);
    expect(byJson.rawPayload.equals(byKey.rawPayload)).toBe(true);
    const rot = await pixels(byKey.rawPayload);
    // Counter-clockwise on screen: output (x, y) = input (W-1-y, x).
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) expect(rot.data[y * 28 + x]).toBe(plain.data[x * 28 + (27 - y)]);
    }
    const grid = await get(url(3, `?transform=${encodeURIComponent('rotate=15,scale=1.2,brightness=0.1')}`));
    expect(grid.statusCode).toBe(200);
    // Resolved in a run's sweep: the run has rotate=-90.
    const inRun = await get(url(3, `?run=${runId}&transform=rotate%3D-90`));
    expect(inRun.statusCode).toBe(200);
  });

  it('refuses bad transforms, indices, runs and missing keys', async () => {
    const check = async (u: string, status: number, code: string, auth = true) => {
      const res = await get(u, auth);
      expect(res.statusCode, u).toBe(status);
      expect(res.json().code, u).toBe(code);
      expectMatchesSpec('GET', '/v1/datasets/{id}/images/{index}', res);
    };
    await check(url(0, '?transform=spin%3D3'), 400, 'INVALID_TRANSFORM');
    await check(url(0, '?transform=%7Bnope'), 400, 'INVALID_TRANSFORM');
    await check(url(0, '?transform=gamma%3D0'), 400, 'INVALID_TRANSFORM');
    await check(url(0, `?run=${runId}&transform=rotate%3D45`), 400, 'INVALID_TRANSFORM');
    await check(url(0, '?bogus=1'), 400, 'VALIDATION_FAILED');
    await check(url(1000), 404, 'NOT_FOUND');
    await check(`/v1/datasets/00000000-0000-4000-8000-000000000000/images/0`, 404, 'NOT_FOUND');
    await check(url(0, '?run=00000000-0000-4000-8000-000000000000&transform=rotate%3D90'), 404, 'NOT_FOUND');
    await check(url(0), 401, 'UNAUTHORIZED', false);
  });
});

describe('GET /v1/runs/{id}/examples', () => {
  it('is 409 EXAMPLES_UNAVAILABLE when the results carry no examples', async () => {
    const stored = (await t.db.pool.query('SELECT results FROM runs WHERE id = $1', [accuracyRunId])).rows[0];
    if (stored.results.examples) return; // the engine records them: nothing to test here
    const res = await get(`/v1/runs/${accuracyRunId}/examples`);
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('EXAMPLES_UNAVAILABLE');
    expectMatchesSpec('GET', '/v1/runs/{id}/examples', res);
  });

  it('lists recorded examples with URLs of their original and transformed images', async () => {
    const stored = (await t.db.pool.query('SELECT results FROM runs WHERE id = $1', [runId])).rows[0].results;
    if (!stored.examples) {
      // Until the engine records them: store what it would (3 points, samples 0..39).
      const acc = new ExamplesAccumulator({ points: 3, classes: 10, limit: 4, pointsPerExample: 2 });
      for (let i = 0; i < 40; i++)
        acc.addPredictions(i, i % 10, i % 10, [(i + 1) % 10, i % 10, i % 3 === 0 ? 0 : i % 10]);
      stored.examples = acc.finalize({
        params: ANGLES.map((a) => ({ rotate: a })),
        classNames: FMNIST_CLASSES,
      });
      await t.db.pool.query('UPDATE runs SET results = $2 WHERE id = $1', [runId, JSON.stringify(stored)]);
    }
    expectMatchesSpec('GET', '/v1/runs/{id}/results', await get(`/v1/runs/${runId}/results`));
    const res = await get(`/v1/runs/${runId}/examples`);
    expect(res.statusCode, res.body).toBe(200);
    expectMatchesSpec('GET', '/v1/runs/{id}/examples', res);
    const body = res.json();
    expect(body.items.length).toBe(stored.examples.items.length);
    expect(body.items.map((e: { index: number }) => e.index)).toEqual(
      stored.examples.items.map((e: { index: number }) => e.index),
    );
    const first = body.items[0];
    expect(first.image).toBe(`/v1/datasets/${datasetId}/images/${first.index}`);
    for (const c of first.changed) {
      expect(c.image).toBe(
        `/v1/datasets/${datasetId}/images/${first.index}?run=${runId}&transform=${encodeURIComponent(c.key)}`,
      );
      const img = await get(c.image);
      expect(img.statusCode, c.image).toBe(200);
    }
    expect((await get(`/v1/runs/${runId}/examples?limit=1`)).json().items).toHaveLength(1);
  });

  it('answers 404, 409 RUN_NOT_FINISHED and 401', async () => {
    const missing = await get('/v1/runs/00000000-0000-4000-8000-000000000000/examples');
    expect(missing.statusCode).toBe(404);
    expectMatchesSpec('GET', '/v1/runs/{id}/examples', missing);
    expect((await get(`/v1/runs/${runId}/examples`, false)).statusCode).toBe(401);
    const queued = await t.db.pool.query(
      `INSERT INTO runs (id, model_id, dataset_id, tags, status, request, progress_total)
       SELECT gen_random_uuid(), model_id, dataset_id, '{}', 'queued', request, 1 FROM runs WHERE id = $1 RETURNING id`,
      [runId],
    );
    const res = await get(`/v1/runs/${queued.rows[0].id}/examples`);
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ code: 'RUN_NOT_FINISHED', runStatus: 'queued' });
    expectMatchesSpec('GET', '/v1/runs/{id}/examples', res);
  });
});
