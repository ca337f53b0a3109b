// The dashboard in a real browser (Debian's chromium driven by playwright-core) against the real
// server with a finished run of each fixture model: sign in, the runs table, a run's charts hold
// the run's numbers, the per-class toggle, examples, compare, models and datasets pages, live
// progress of a running run, no horizontal overflow at 390 px, no console errors (CSP included).
// Screenshots go to test-artifacts/dashboard/.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExamplesAccumulator } from '../src/domain/examples.js';
import { pointKey } from '../src/domain/sweep.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import {
  FMNIST_CLASSES,
  FMNIST_PREPROCESSING,
  getResults,
  submitRun,
  uploadFmnist,
  uploadModel,
  waitForRun,
} from './helpers/runs.js';

const CHROMIUM = '/usr/bin/chromium';
/** plain: FAIL (accuracy at 90 degrees) and WARN (consistency); rotaug: PASS. */
const GATES = [
  { metric: 'accuracy.clean', op: '>=', value: 0.7 },
  { name: 'upright at 90', metric: 'accuracy.at(rotate=90)', op: '>=', value: 0.5 },
  { metric: 'consistency.mean', op: '>=', value: 0.5, severity: 'warn' },
];
const ARTIFACTS = path.resolve(import.meta.dirname, '..', 'test-artifacts', 'dashboard');
const haveBrowser = existsSync(CHROMIUM);
if (!haveBrowser) console.warn(`${CHROMIUM} is missing (apt-get install -y chromium): browser test skipped`);

interface Point {
  params: Record<string, number>;
  accuracy: number | null;
  consistency: number | null;
  ekld: number | null;
  perClassAccuracy: Array<number | null>;
}
interface Results {
  samples: number;
  clean: { accuracy: number };
  points: Point[];
  ekld: { overall: number; perClass: Array<{ class: number; name: string; value: number | null }> };
  nv: Array<{ layer: string; aggregation: string; nv: number | null; tv: number | null; sv: number | null }>;
  examples?: unknown;
}

/** What the tests read from drawn marks (the browser's DOM types are not in this project's lib). */
type WithDataset = { dataset: Record<string, string | undefined> };

let t: TestApp;
let browser: Browser;
let base: string;
interface Verdict {
  status: string;
  gates: Array<{ name: string; status: string; message: string }>;
}
const runs: Array<{ id: string; name: string; results: Results; layers: string[]; verdict: Verdict }> = [];
let datasetId: string;
const errors: string[] = [];

async function shot(page: Page, name: string) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Markers of a chart: series, point key and value as drawn (data attributes). */
function markers(page: Page, chart: string) {
  return page.$$eval(`figure[data-chart="${chart}"] .pt`, (els) =>
    els.map((e) => {
      const d = (e as unknown as WithDataset).dataset;
      return { series: d.series ?? '', key: d.key ?? '', x: d.x ?? '', y: Number(d.y) };
    }),
  );
}

async function noHorizontalOverflow(page: Page) {
  // For the message: elements sticking out that no scrolling ancestor clips.
  const wide = await page.evaluate(`[...document.querySelectorAll('body *')]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
    .filter((e) => {
      for (let a = e.parentElement; a; a = a.parentElement) if (getComputedStyle(a).overflowX !== 'visible') return false;
      return true;
    })
    .slice(0, 5)
    .map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))`);
  const { scroll, width } = (await page.evaluate(
    '({ scroll: document.documentElement.scrollWidth, width: window.innerWidth })',
  )) as { scroll: number; width: number };
  expect(
    scroll,
    `page is ${scroll}px wide in a ${width}px viewport: ${JSON.stringify(wide)}`,
  ).toBeLessThanOrEqual(width);
}

/** Stores examples in a run's results the way the engine records them (until it does). */
async function ensureExamples(runId: string, results: Results, labels: number[]) {
  if (results.examples) return;
  const m = results.points.length;
  const acc = new ExamplesAccumulator({ points: m, classes: 10, limit: 4, pointsPerExample: 4 });
  labels.forEach((label, i) => {
    acc.addPredictions(
      i,
      label,
      label,
      Array.from({ length: m }, (_, j) =>
        Math.abs(j - (m - 1) / 2) > 1 && (i + j) % 3 !== 0 ? (label + 1) % 10 : label,
      ),
    );
  });
  const examples = acc.finalize({ params: results.points.map((p) => p.params), classNames: FMNIST_CLASSES });
  await t.db.pool.query('UPDATE runs SET results = $2 WHERE id = $1', [
    runId,
    JSON.stringify({ ...results, examples }),
  ]);
}

beforeAll(async () => {
  if (!haveBrowser) return;
  await mkdir(ARTIFACTS, { recursive: true });
  t = await createTestApp({}, { workers: true });
  datasetId = (await uploadFmnist(t)).id;
  const submitted: Array<{ id: string; name: string; layers: string[] }> = [];
  for (const file of ['fmnist-cnn-plain.onnx', 'fmnist-cnn-rotaug.onnx']) {
    const name = file.replace(/^fmnist-cnn-|\.onnx$/g, '');
    const model = await uploadModel(t, file, {
      name: `fmnist-cnn-${name}`,
      version: '1',
      tags: name,
      preprocessing: JSON.stringify({ mean: [0.286], std: [0.353] }),
    });
    const layers = [model.layers[0].name, model.layers[2].name, 'logits'];
    const run = await submitRun(t, {
      modelId: model.id,
      datasetId,
      name: `${name}-rotations`,
      tags: ['browser-test', name],
      transforms: [{ type: 'rotate', range: { from: -90, to: 90, step: 30, inclusive: true } }],
      metrics: ['accuracy', 'ekld', 'nv'],
      nv: { layers },
      preprocessing: FMNIST_PREPROCESSING,
      classSizes: FMNIST_CLASSES.map((_, i) => 6000 - 450 * i),
      limit: 200,
      gates: GATES,
    });
    submitted.push({ id: run.id, name: `${name}-rotations`, layers: model.layers.map((l) => l.name) });
  }
  for (const r of submitted) {
    expect((await waitForRun(t, r.id)).status).toBe('succeeded');
    const results = await getResults<Results>(t, r.id);
    const run = await t.app.inject({ method: 'GET', url: `/v1/runs/${r.id}`, headers: t.auth });
    runs.push({ ...r, results, verdict: run.json().verdict });
  }
  for (const r of runs) {
    const firstLabels: number[] = [];
    for (let i = 0; i < 24; i++) {
      const res = await t.app.inject({
        method: 'GET',
        url: `/v1/datasets/${datasetId}/images/${i}`,
        headers: t.auth,
      });
      firstLabels.push(Number(res.headers['x-sample-label']));
    }
    await ensureExamples(r.id, r.results, firstLabels);
  }
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = t.app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  base = `http://127.0.0.1:${addr.port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu'],
  });
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
});

async function newPage(width: number, height: number): Promise<Page> {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  return page;
}

async function signIn(page: Page) {
  await page.goto(`${base}/`);
  await page.waitForURL(/#\/signin/);
  await page.getByLabel('API key').fill(t.adminKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForSelector('tr[data-run-id]');
}

describe.skipIf(!haveBrowser)('dashboard in a browser', () => {
  let page: Page;

  it('signs in with an API key and lists the runs', async () => {
    page = await newPage(1280, 900);
    await page.goto(`${base}/`);
    await page.waitForURL(/#\/signin/);
    // A wrong key is refused with a message.
    await page.getByLabel('API key').fill('inv_not-a-key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.locator('[role=alert]').textContent()).toContain('not accepted');
    errors.length = 0; // the browser logs that deliberate 401
    await signIn(page);
    const rows = await page.$$eval('tr[data-run-id]', (trs) =>
      trs.map((tr) => ({ id: tr.getAttribute('data-run-id'), status: tr.getAttribute('data-status') })),
    );
    expect(rows.map((r) => r.id).sort()).toEqual(runs.map((r) => r.id).sort());
    expect(rows.every((r) => r.status === 'succeeded')).toBe(true);
    // Verdict badges, and the verdict filter.
    for (const r of runs) {
      const badge = page.locator(`tr[data-run-id="${r.id}"] [data-verdict]`);
      expect(await badge.getAttribute('data-verdict')).toBe(r.verdict.status);
    }
    expect(runs.map((r) => r.verdict.status).sort()).toEqual(['FAIL', 'PASS']);
    await page.getByLabel('Verdict').selectOption('FAIL');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => page.locator('tr[data-run-id]').count()).toBe(1);
    expect(await page.locator('tr[data-run-id]').getAttribute('data-run-id')).toBe(
      runs.find((r) => r.verdict.status === 'FAIL')?.id,
    );
    await page.getByRole('link', { name: 'Reset' }).click();
    await expect.poll(() => page.locator('tr[data-run-id]').count()).toBe(2);
    // The key lives in sessionStorage only.
    expect(await page.evaluate("sessionStorage.getItem('invariance.apiKey')")).toBe(t.adminKey);
    expect(await page.evaluate('localStorage.length')).toBe(0);
    // Filters: by tag, then by status (no match).
    await page.getByLabel('Tag').fill('plain');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => page.locator('tr[data-run-id]').count()).toBe(1);
    await page.getByLabel('Status').selectOption('failed');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByText('No runs match these filters.').waitFor();
    await page.getByRole('link', { name: 'Reset' }).click();
    await expect.poll(() => page.locator('tr[data-run-id]').count()).toBe(2);
    await shot(page, 'runs-1280');
  });

  it('shows a run: the charts hold the run’s data points', async () => {
    const run = runs[0];
    const res = run.results;
    await page.getByRole('link', { name: run.name }).click();
    await page.waitForSelector('figure[data-chart="accuracy"] .pt');
    expect(await page.locator('h1').textContent()).toBe(run.name);
    // Accuracy vs angle: one marker per point, at exactly the API's accuracy.
    const acc = await markers(page, 'accuracy');
    expect(acc).toHaveLength(res.points.length);
    for (const p of res.points) {
      const m = acc.find((a) => a.key === pointKey(p.params));
      expect(m, pointKey(p.params)).toBeDefined();
      expect(m?.y).toBe(p.accuracy);
      expect(Number(m?.x)).toBe(p.params.rotate);
    }
    const accChart = page.locator('figure[data-chart="accuracy"]');
    expect(await accChart.textContent()).toContain(
      `clean accuracy ${(res.clean.accuracy * 100).toFixed(1)}%`,
    );
    // The same numbers in the chart's data table.
    await accChart.locator('summary').click();
    const tableText = await accChart.locator('table').textContent();
    for (const p of res.points) expect(tableText).toContain(`${Math.round((p.accuracy ?? 0) * 100)}%`);
    // Consistency and eKLD per point.
    const cons = await markers(page, 'consistency');
    expect(cons.map((c) => c.y)).toEqual(res.points.map((p) => p.consistency));
    const ekld = await markers(page, 'ekld');
    expect(ekld.map((c) => c.y)).toEqual(res.points.map((p) => p.ekld));
    // eKLD per class: one bar per class at the API's value; scatter against class size.
    const bars = await page.$$eval('figure[data-chart="ekld-class"] rect.bar', (els) =>
      els.map((e) => Number((e as unknown as WithDataset).dataset.value)),
    );
    expect(bars).toEqual(res.ekld.perClass.map((c) => c.value));
    expect(await page.locator('figure[data-chart="ekld-size"] .pt').count()).toBe(10);
    // NV per layer, in the model's graph order.
    const nv = await markers(page, 'nv');
    const expectedOrder = run.layers.filter((l) => res.nv.some((r) => r.layer === l));
    expect(nv.map((m) => m.x)).toEqual(expectedOrder);
    for (const m of nv) expect(m.y).toBe(res.nv.find((r) => r.layer === m.x)?.nv);
    const tvsv = await markers(page, 'tvsv');
    expect(tvsv.filter((m) => m.series === 'TV').map((m) => m.y)).toEqual(
      expectedOrder.map((l) => res.nv.find((r) => r.layer === l)?.tv),
    );
    // The gate table: one row per gate with its result and message.
    const gateRows = await page.$$eval('#gates tbody tr', (trs) =>
      trs.map((tr) => ({
        status: tr.querySelector('[data-verdict]')?.getAttribute('data-verdict'),
        text: tr.textContent ?? '',
      })),
    );
    expect(gateRows.map((g) => g.status)).toEqual(run.verdict.gates.map((g) => g.status));
    run.verdict.gates.forEach((g, i) => {
      expect(gateRows[i].text).toContain(g.message);
    });
    expect(await page.locator('.run-status [data-verdict]').getAttribute('data-verdict')).toBe(
      run.verdict.status,
    );
    // Per-class lines on demand.
    await page.getByLabel('Show one line per class').check();
    const withClasses = await markers(page, 'accuracy');
    const dress = withClasses.filter((m) => m.series === 'class 3: Dress');
    expect(dress.map((m) => m.y)).toEqual(
      res.points.map((p) => p.perClassAccuracy[3]).filter((v) => v !== null),
    );
    await page.getByLabel('Show one line per class').uncheck();
    // Examples: original and transformed images, loaded with the key.
    await page.waitForSelector('.example img[src^="blob:"]');
    const exampleCount = await page.locator('.example').count();
    expect(exampleCount).toBeGreaterThan(0);
    await expect
      .poll(() => page.locator('.example img[src^="blob:"]').count(), { timeout: 15_000 })
      .toBe(await page.locator('.example img').count());
    const loaded = await page.$$eval('.example img', (imgs) =>
      imgs.every((i) => (i as unknown as { naturalWidth: number }).naturalWidth === 28),
    );
    expect(loaded).toBe(true);
    // Plain HTML hygiene: unique ids, every image described, every form control labelled.
    const ids = (await page.evaluate("[...document.querySelectorAll('[id]')].map((e) => e.id)")) as string[];
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
    expect(await page.locator('img:not([alt])').count()).toBe(0);
    const unlabelled = await page.evaluate(
      "[...document.querySelectorAll('input, select')].filter((e) => !e.labels?.length && !e.getAttribute('aria-label')).length",
    );
    expect(unlabelled).toBe(0);
    await shot(page, 'run-1280');
  });

  it('compares two runs on the same charts, with deltas', async () => {
    await page.getByRole('link', { name: 'Runs', exact: true }).first().click();
    await page.waitForSelector('tr[data-run-id]');
    for (const r of runs) await page.getByLabel(`Select run ${r.name} to compare`).check();
    await page.getByRole('button', { name: 'Compare the 2 selected runs' }).click();
    await page.waitForSelector('figure[data-chart="accuracy"] .pt');
    expect(await page.locator('h1').textContent()).toBe('Compare runs');
    const acc = await markers(page, 'accuracy');
    const [a, b] = await page.$$eval('.compare-legend a', (as) =>
      as.map((x) => x.getAttribute('href')?.split('/').pop()),
    );
    const runA = runs.find((r) => r.id === a)!;
    const runB = runs.find((r) => r.id === b)!;
    const seriesA = acc.filter((m) => m.series.startsWith('A '));
    const seriesB = acc.filter((m) => m.series.startsWith('B '));
    expect(seriesA.map((m) => m.y)).toEqual(runA.results.points.map((p) => p.accuracy));
    expect(seriesB.map((m) => m.y)).toEqual(runB.results.points.map((p) => p.accuracy));
    // The summary table carries the clean accuracies and their difference in percentage points.
    const summary = await page.locator('#summary table').textContent();
    const delta = (runB.results.clean.accuracy - runA.results.clean.accuracy) * 100;
    expect(summary).toContain(`${Math.abs(delta).toFixed(1)} pp`);
    expect(await page.locator('#per-class rect.bar').count()).toBe(20);
    await shot(page, 'compare-1280');
  });

  it('shows models and datasets with layers, class counts and thumbnails', async () => {
    await page.getByRole('link', { name: 'Models' }).click();
    await page.getByRole('link', { name: 'fmnist-cnn-plain' }).click();
    await page.waitForSelector('#layers table');
    const layerNames = await page.$$eval('#layers tbody tr td:nth-child(2)', (tds) =>
      tds.map((td) => td.textContent),
    );
    expect(layerNames).toEqual(runs.find((r) => r.name === 'plain-rotations')?.layers);
    await shot(page, 'model-1280');
    await page.getByRole('link', { name: 'Datasets' }).click();
    await page.getByRole('link', { name: 'fmnist-test-1k' }).click();
    await expect.poll(() => page.locator('.thumbs img[src^="blob:"]').count(), { timeout: 15_000 }).toBe(12);
    const counts = await page.$$eval('figure[data-chart="class-counts"] rect.bar', (els) =>
      els.map((e) => Number((e as unknown as WithDataset).dataset.value)),
    );
    expect(counts.reduce((s, c) => s + c, 0)).toBe(1000);
    await shot(page, 'dataset-1280');
  });

  it('draws mixed sweeps: a grid, a flip and a photometric family, accuracy only', async () => {
    const { id } = await submitRun(t, {
      modelId: (await t.db.pool.query('SELECT model_id FROM runs WHERE id = $1', [runs[1].id])).rows[0]
        .model_id,
      datasetId,
      name: 'mixed-sweep',
      transforms: [
        {
          type: 'grid',
          of: [
            { type: 'rotate', values: [-30, 0, 30] },
            { type: 'scale', values: [0.9, 1.1] },
          ],
        },
        { type: 'hflip' },
        { type: 'brightness', values: [-0.2, 0.2] },
      ],
      metrics: ['accuracy'],
      preprocessing: FMNIST_PREPROCESSING,
      limit: 50,
    });
    expect((await waitForRun(t, id)).status).toBe('succeeded');
    const res = await getResults<Results>(t, id);
    await page.goto(`${base}/#/runs/${id}`);
    await page.waitForSelector('figure[data-chart="accuracy"] .pt');
    // One chart per x parameter (rotate with one line per scale, brightness, and the flip).
    const titles = await page.$$eval('figure[data-chart="accuracy"] figcaption', (f) =>
      f.map((x) => x.textContent),
    );
    expect(titles).toEqual(['Accuracy vs rotate', 'Accuracy vs transform point', 'Accuracy vs brightness']);
    const acc = await markers(page, 'accuracy');
    expect(acc).toHaveLength(res.points.length);
    for (const p of res.points) expect(acc.find((m) => m.key === pointKey(p.params))?.y).toBe(p.accuracy);
    expect(new Set(acc.filter((m) => m.key.startsWith('rotate')).map((m) => m.series))).toEqual(
      new Set(['scale=0.9', 'scale=1.1']),
    );
    // No eKLD or NV sections for an accuracy-only run.
    expect(await page.locator('#per-class').count()).toBe(0);
    expect(await page.locator('#layers').count()).toBe(0);
    await shot(page, 'run-mixed-1280');
    // Its examples (the engine records them for every run) load their images with the key: let
    // them all arrive before the run is deleted under them, or they answer 404.
    await page.waitForSelector('.example img[src^="blob:"]');
    await expect
      .poll(() =>
        page.$$eval('.example img', (imgs) => imgs.every((i) => i.getAttribute('src')?.startsWith('blob:'))),
      )
      .toBe(true);
    await t.db.pool.query('DELETE FROM runs WHERE id = $1', [id]);
  });

  it('follows a running run live', async () => {
    const { rows } = await t.db.pool.query(
      `INSERT INTO runs (id, model_id, dataset_id, name, tags, status, request, progress_total, progress_done, started_at)
       SELECT gen_random_uuid(), model_id, dataset_id, 'live-run', '{}', 'running', request, 1000, 250, now()
       FROM runs WHERE id = $1 RETURNING id`,
      [runs[0].id],
    );
    const id = rows[0].id as string;
    await page.goto(`${base}/#/runs/${id}`);
    const bar = page.locator('.run-status progress');
    await expect.poll(() => bar.getAttribute('value')).toBe('250');
    await shot(page, 'run-live-1280');
    await t.db.pool.query('UPDATE runs SET progress_done = 700 WHERE id = $1', [id]);
    await expect.poll(() => bar.getAttribute('value'), { timeout: 5000 }).toBe('700');
    await t.db.pool.query(
      `UPDATE runs SET status = 'failed', finished_at = now(), error = '{"code":"SHARD_FAILED","message":"test failure"}' WHERE id = $1`,
      [id],
    );
    await expect
      .poll(() => page.locator('.run-status').textContent(), { timeout: 5000 })
      .toContain('test failure');
    expect(await bar.count()).toBe(0);
    // The runs table polls too: the failed run shows as failed.
    await page.goto(`${base}/#/runs`);
    await expect
      .poll(() => page.locator(`tr[data-run-id="${id}"]`).getAttribute('data-status'))
      .toBe('failed');
    await t.db.pool.query('DELETE FROM runs WHERE id = $1', [id]);
  });

  it('works at 390 px without horizontal overflow', async () => {
    const phone = await newPage(390, 844);
    await signIn(phone);
    await noHorizontalOverflow(phone);
    await shot(phone, 'runs-390');
    await phone.goto(`${base}/#/runs/${runs[1].id}`);
    await phone.waitForSelector('figure[data-chart="nv"] .pt');
    await phone.waitForSelector('.example img[src^="blob:"]');
    await noHorizontalOverflow(phone);
    // The charts fit the narrow screen.
    const widths = await phone.$$eval('svg.chart-svg', (svgs) =>
      svgs.map((s) => s.getBoundingClientRect().right),
    );
    for (const w of widths) expect(w).toBeLessThanOrEqual(390);
    await shot(phone, 'run-390');
    await phone.goto(`${base}/#/compare/${runs[0].id}/${runs[1].id}`);
    await phone.waitForSelector('figure[data-chart="accuracy"] .pt');
    await noHorizontalOverflow(phone);
    await shot(phone, 'compare-390');
    await phone.goto(`${base}/#/datasets/${datasetId}`);
    await phone.waitForSelector('.thumbs img');
    await noHorizontalOverflow(phone);
    await phone.context().close();
  });

  it('is keyboard navigable', async () => {
    await page.goto(`${base}/#/runs`);
    await page.reload();
    await page.waitForSelector('tr[data-run-id]');
    // Tab reaches the skip button first, then the navigation links.
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('Skip to content');
    await page.keyboard.press('Enter');
    expect(await page.evaluate('document.activeElement?.tagName')).toBe('H1');
    // Every run is reachable by Tab as a real link, and Enter opens it.
    let found = false;
    for (let i = 0; i < 60 && !found; i++) {
      await page.keyboard.press('Tab');
      found = (await page.evaluate(
        "document.activeElement?.classList.contains('run-link') ?? false",
      )) as boolean;
    }
    expect(found).toBe(true);
    await page.keyboard.press('Enter');
    await page.waitForSelector('figure[data-chart="accuracy"]');
    // Focus styles are visible (an outline on the focused element).
    await page.keyboard.press('Tab');
    const outline = await page.evaluate(
      "document.activeElement ? getComputedStyle(document.activeElement).outlineStyle : 'none'",
    );
    expect(outline).not.toBe('none');
  });

  it('logged no errors in the browser console (CSP violations included)', () => {
    expect(errors).toEqual([]);
  });
});
