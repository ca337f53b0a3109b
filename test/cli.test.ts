// The `invariance` CLI as CI uses it: the real binary (bin/invariance.js, a child process) against a
// real server (the app listening on a port, with workers, over a fresh PostgreSQL database).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Run, Verdict } from '../src/cli/api/types.js';
import { parseBaseline, parseDuration, parseGate, parseSweep } from '../src/cli/args.js';
import { renderJunit } from '../src/cli/report/junit.js';
import { renderMarkdown } from '../src/cli/report/markdown.js';
import { decideOutcome, type Report } from '../src/cli/report/outcome.js';
import { createTestApp } from './helpers/app.js';
import { closedPort, runCli, xmlElements } from './helpers/cli.js';
import { FIXTURES, FMNIST_CLASSES } from './helpers/runs.js';

const ROTAUG = path.join(FIXTURES, 'fmnist-cnn-rotaug.onnx');
const PLAIN = path.join(FIXTURES, 'fmnist-cnn-plain.onnx');
const IMAGES = path.join(FIXTURES, 'fmnist-test-1k-images-idx3-ubyte.gz');
const LABELS = path.join(FIXTURES, 'fmnist-test-1k-labels-idx1-ubyte.gz');
const PREPROCESSING = '{"mean":[0.2860],"std":[0.3530]}';

// Created at module level, not in beforeAll: describe.skipIf below needs the probe's answer while
// the tests are being collected, and the probe needs the server.
// One engine thread: the other core is left to the CLI processes the tests spawn.
const t = await createTestApp({ workers: 1 }, { workers: true });
const url = await t.app.listen({ port: 0, host: '127.0.0.1' });
const tmp = await mkdtemp(path.join(os.tmpdir(), 'invariance-cli-'));
afterAll(async () => {
  await t.close();
  await rm(tmp, { recursive: true, force: true });
});

/**
 * Gates, baselines and verdicts (issue 4, points 1 and 6) are built on the server side separately
 * from the CLI. Until they land, POST /v1/runs refuses `gates` as an unknown field (400
 * VALIDATION_FAILED naming it) and the verdict tests below cannot pass; a server that knows gates
 * gets past the schema and answers 422 MODEL_NOT_FOUND for this probe's made-up model. Nothing is
 * stored either way.
 */
async function probeGates(): Promise<boolean> {
  const res = await fetch(`${url}/v1/runs`, {
    method: 'POST',
    headers: { ...t.auth, 'content-type': 'application/json' },
    body: JSON.stringify({
      modelId: '00000000-0000-4000-8000-000000000000',
      datasetId: '00000000-0000-4000-8000-000000000000',
      transforms: [{ type: 'rotate', values: [90] }],
      gates: [{ metric: 'accuracy.clean', op: '>=', value: 0 }],
    }),
  });
  const body = (await res.json()) as { code?: string; detail?: string; errors?: unknown };
  return !(res.status === 400 && JSON.stringify([body.detail, body.errors]).includes('gates'));
}
const serverSupportsGates = await probeGates();

/** The CLI with the server and key from the environment (as CI would set them). */
const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
  runCli(args, { env: { INVARIANCE_URL: url, INVARIANCE_API_KEY: t.adminKey, CI: '1', ...env } });

const evalArgs = (model: string, ...rest: string[]) => [
  'eval',
  '--model',
  model,
  '--images',
  IMAGES,
  '--labels',
  LABELS,
  '--class-names',
  FMNIST_CLASSES.join(','),
  '--preprocessing',
  PREPROCESSING,
  '--limit',
  '200',
  '--rotate',
  '0,90',
  ...rest,
];

async function api<T>(method: 'GET' | 'POST', route: string): Promise<T> {
  const res = await t.app.inject({ method, url: route, headers: t.auth });
  expect(res.statusCode, res.body).toBeLessThan(300);
  return res.json() as T;
}

interface EvalJson {
  outcome: { status: string; exitCode: number; reason: string };
  run: { id: string; status: string; tags: string[]; name: string | null };
  model: { id: string; name: string; sha256: string; reused: boolean };
  dataset: { id: string; name: string; sha256: string; reused: boolean; count: number };
  results: {
    clean: { accuracy: number };
    points: Array<{ params: object; accuracy: number }>;
    nv?: unknown[];
  };
  verdict: {
    status: string;
    gates: Array<{ metric: string; actual: number | null; passed: boolean; message: string }>;
  } | null;
}

const countRows = async (route: string) =>
  (await api<{ items: unknown[] }>('GET', `${route}?limit=200`)).items.length;

// The flag languages and the verdict formats, in-process (no server needed, so the JUnit and
// Markdown of every gate status are checked today, before the server side of gates exists).
describe('flag languages and report formats', () => {
  it('sweeps: ranges end exclusive (like the API), lists, JSON', () => {
    expect(parseSweep('--rotate', 'rotate', '-180:180:15')).toEqual({
      type: 'rotate',
      range: { from: -180, to: 180, step: 15 },
    });
    expect(parseSweep('--scale', 'scale', '0.8:1.2:0.2:inclusive')).toEqual({
      type: 'scale',
      range: { from: 0.8, to: 1.2, step: 0.2, inclusive: true },
    });
    expect(parseSweep('--scale', 'scale', '0.8, 1.2')).toEqual({ type: 'scale', values: [0.8, 1.2] });
    expect(parseSweep('--translate', 'translate', '[[2,0],[0,-2]]')).toEqual({
      type: 'translate',
      values: [
        [2, 0],
        [0, -2],
      ],
    });
    expect(parseSweep('--noise', 'gaussian_noise', '{"values":[0.1],"seed":3}')).toEqual({
      type: 'gaussian_noise',
      values: [0.1],
      seed: 3,
    });
    for (const bad of ['0:90', '0:90:0', '1,x', ''])
      expect(() => parseSweep('--rotate', 'rotate', bad)).toThrow();
  });

  it('gates, baselines and durations', () => {
    expect(parseGate('ekld.overall<=0.1')).toEqual({ metric: 'ekld.overall', op: '<=', value: 0.1 });
    expect(parseGate('warn: rot90: accuracy.at(rotate=90) >= 0.8')).toEqual({
      name: 'rot90',
      metric: 'accuracy.at(rotate=90)',
      op: '>=',
      value: 0.8,
      severity: 'warn',
    });
    expect(parseGate('accuracy.mean maxDrop 2%')).toEqual({
      metric: 'accuracy.mean',
      op: 'maxDrop',
      value: '2%',
    });
    expect(parseGate('fail:ekld.class(T-shirt/top)>0')).toEqual({
      metric: 'ekld.class(T-shirt/top)',
      op: '>',
      value: 0,
      severity: 'fail',
    });
    expect(parseGate('nv.layer("/odd)<name",mean) < 1')).toMatchObject({
      metric: 'nv.layer("/odd)<name",mean)',
      op: '<',
    });
    expect(parseGate('{"metric":"tta.accuracy","op":">","value":0.5}')).toMatchObject({ op: '>' });
    for (const bad of ['accuracy.mean', 'accuracy.mean >= x', 'ekld.overall <= 2%', '>= 1']) {
      expect(() => parseGate(bad)).toThrow();
    }
    expect(parseBaseline('model:prod-model,tag:production')).toEqual({
      model: 'prod-model',
      tag: 'production',
    });
    expect(parseBaseline('run:abc')).toEqual({ runId: 'abc' });
    expect(() => parseBaseline('prod')).toThrow();
    expect(parseDuration('30m', 't')).toBe(1_800_000);
    expect(parseDuration('1h30m', 't')).toBe(5_400_000);
    expect(parseDuration('90', 't')).toBe(90_000);
    expect(() => parseDuration('5x', 't')).toThrow();
  });

  it('outcomes, JUnit and Markdown for every gate status', () => {
    const run = {
      id: 'r1',
      status: 'succeeded',
      name: 'ci & <nightly>',
      tags: [],
      modelId: 'm1',
      datasetId: 'd1',
      progress: { done: 3, total: 3 },
      createdAt: '2026-01-01T00:00:00.000Z',
      startedAt: null,
      finishedAt: null,
      error: null,
      request: {},
      summary: null,
      timings: { totalMs: 1500 },
    } as Run;
    const gate = (name: string, passed: boolean, status: Verdict['status']) => ({
      name,
      metric: 'accuracy.at(rotate=90)',
      op: '>=',
      value: 0.8,
      actual: status === 'ERROR' ? null : 0.61,
      passed,
      status,
      message: `accuracy.at(rotate=90) = 0.61 < 0.80 "${name}"`,
    });
    const verdict: Verdict = {
      status: 'FAIL',
      gates: [
        gate('ok', true, 'PASS'),
        gate('soft', false, 'WARN'),
        gate('hard', false, 'FAIL'),
        gate('err', false, 'ERROR'),
      ],
    };
    expect(decideOutcome(run, verdict).exitCode).toBe(1);
    expect(decideOutcome(run, { ...verdict, status: 'WARN' }).exitCode).toBe(0);
    expect(decideOutcome(run, { ...verdict, status: 'ERROR' }).exitCode).toBe(1);
    expect(decideOutcome(run, null).exitCode).toBe(0);
    expect(decideOutcome(run, null, { gatesRequested: true }).status).toBe('ERROR');
    expect(decideOutcome({ ...run, status: 'failed' }, null).exitCode).toBe(3);
    expect(decideOutcome({ ...run, status: 'running' }, null, { timedOutAfterMs: 60_000 }).status).toBe(
      'TIMEOUT',
    );

    const report: Report = {
      outcome: decideOutcome(run, verdict),
      run,
      model: null,
      dataset: null,
      results: null,
      verdict,
      gates: [],
    };
    const xml = renderJunit(report);
    const elements = xmlElements(xml);
    expect(elements.filter((e) => e === 'testcase')).toHaveLength(4);
    expect(elements.filter((e) => e === 'failure')).toHaveLength(1);
    expect(elements.filter((e) => e === 'error')).toHaveLength(1);
    expect(xml).toMatch(
      /<testcase name="hard"[^>]*>\s*<failure message="accuracy.at\(rotate=90\) = 0.61 &lt; 0.80 &quot;hard&quot;"/,
    );
    expect(xml).toMatch(/<testcase name="soft"[^>]*>\s*<system-out>WARN: /);
    expect(xml).toContain('name="invariance ci &amp; &lt;nightly&gt;"');
    const md = renderMarkdown(report);
    expect(md).toMatch(/^### ❌ Invariance: FAIL/);
    for (const row of ['| ✅ PASS | ok |', '| ⚠️ WARN | soft |', '| ❌ FAIL | hard |', '| ❌ ERROR | err |']) {
      expect(md).toContain(row);
    }
    // Table cells show what was typed: no HTML from gate names, code spans left as they are.
    const tagged = renderMarkdown({
      ...report,
      verdict: { status: 'FAIL', gates: [gate('<b>bold</b> & `a<b`', false, 'FAIL')] },
    });
    expect(tagged).toContain('| ❌ FAIL | &lt;b&gt;bold&lt;/b&gt; &amp; `a<b` |');
    // A run stopped by --timeout has no timings: its time comes from its timestamps.
    const stopped = renderJunit({
      ...report,
      run: {
        ...run,
        timings: null,
        startedAt: '2026-01-01T00:00:01.000Z',
        finishedAt: '2026-01-01T00:00:03.500Z',
      },
    });
    expect(stopped).toMatch(/<testsuites [^>]*time="2.500"/);

    // A run that failed before its gates could be judged: every gate is a JUnit <error>.
    const failed = { ...run, status: 'failed' as const, error: { code: 'SHARD_FAILED', message: 'boom' } };
    const notJudged = renderJunit({
      ...report,
      run: failed,
      verdict: null,
      outcome: decideOutcome(failed, null),
      gates: [parseGate('a: ekld.overall<=1'), parseGate('accuracy.mean>=0.5')],
    });
    expect(xmlElements(notJudged).filter((e) => e === 'error')).toHaveLength(2);
    expect(notJudged).toContain('not evaluated: run r1 failed: SHARD_FAILED: boom');
  });
});

describe('invariance CLI against a real server', () => {
  let firstRunId = '';

  it('prints help, and exits 2 on usage errors before contacting the service', async () => {
    const closed = `http://127.0.0.1:${await closedPort()}`;
    const [main, evalHelp, ...usage] = await Promise.all([
      cli(['--help']),
      cli(['eval', '--help']),
      cli(['frobnicate']),
      cli(['eval', '--images', IMAGES, '--labels', LABELS, '--rotate', '0,90']), // no model
      cli(['eval', '--model', ROTAUG, '--dataset-id', 'x', '--rotate', '0:90']), // range without step
      cli(['eval', '--model', ROTAUG, '--dataset-id', 'x', '--rotate', '0,90', '--gate', 'accuracy.mean']),
      cli(['models', 'list', '--bogus']),
      cli(['datasets', 'push', path.join(tmp, 'nope.zip')]),
      // No server, or no key, configured: usage errors even when a server is given.
      cli(['models', 'list'], { INVARIANCE_URL: undefined }),
      cli(['models', 'list', '--server', closed], { INVARIANCE_API_KEY: undefined }),
    ]);
    expect(main.code).toBe(0);
    expect(main.stdout).toMatch(/invariance eval/);
    expect(main.stdout).toMatch(/Exit codes/);
    expect(evalHelp.code).toBe(0);
    expect(evalHelp.stdout).toMatch(/END EXCLUSIVE/);
    for (const r of usage) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^invariance: /);
    }
    expect(usage[0].stderr).toMatch(/unknown command "frobnicate"/);
    expect(usage[1].stderr).toMatch(/--model/);
    expect(usage[2].stderr).toMatch(/from:to:step/);
    expect(usage[3].stderr).toMatch(/METRIC OP VALUE/);
    expect(usage[4].stderr).toMatch(/--bogus/);
    expect(usage[5].stderr).toMatch(/ENOENT/);
    expect(usage[6].stderr).toMatch(/INVARIANCE_URL/);
    expect(usage[7].stderr).toMatch(/INVARIANCE_API_KEY/);
  });

  it('eval uploads, sweeps, waits and reports: --json equals the results, --junit and --markdown are written', async () => {
    const junit = path.join(tmp, 'first.xml');
    const markdown = path.join(tmp, 'first.md');
    const r = await cli(
      evalArgs(
        ROTAUG,
        '--tag',
        'ci',
        '--name',
        'cli-first',
        '--json',
        '--junit',
        junit,
        '--markdown',
        markdown,
      ),
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as EvalJson; // stdout holds the JSON and nothing else
    expect(['SUCCEEDED', 'PASS']).toContain(out.outcome.status);
    expect(out.run.status).toBe('succeeded');
    expect(out.run.tags).toEqual(['ci']);
    expect(out.model).toMatchObject({ name: 'fmnist-cnn-rotaug', reused: false });
    expect(out.dataset).toMatchObject({ count: 1000, reused: false });
    firstRunId = out.run.id;

    const results = await api<EvalJson['results']>('GET', `/v1/runs/${out.run.id}/results`);
    expect(out.results).toEqual(results);
    expect(out.results.points.map((p) => p.params)).toEqual([{ rotate: 0 }, { rotate: 90 }]);
    expect(out.results.points.map((p) => p.accuracy)).toEqual(results.points.map((p) => p.accuracy));
    expect(out.results.nv?.length).toBeGreaterThan(0); // nv over all layers by default
    const run = await api<{ request: { limit: number; preprocessing: { mean: number[] } } }>(
      'GET',
      `/v1/runs/${out.run.id}`,
    );
    expect(run.request.limit).toBe(200);
    expect(run.request.preprocessing.mean).toEqual([0.286]);
    // Progress went to stderr as plain lines (not a TTY).
    expect(r.stderr).toMatch(/uploading model/);
    expect(r.stderr).toMatch(new RegExp(`run ${out.run.id} succeeded 100\\.0%`));
    expect(r.stderr).not.toMatch(/\r/);

    const xml = await readFile(junit, 'utf8');
    const elements = xmlElements(xml);
    expect(elements.filter((e) => e === 'testcase')).toHaveLength(1); // no gates: one testcase, the run
    expect(elements).not.toContain('failure');
    expect(elements).not.toContain('error');
    expect(xml).toContain(out.run.id);

    const md = await readFile(markdown, 'utf8');
    expect(md).toMatch(/^### ✅ Invariance/);
    expect(md).toContain(`\`${out.run.id}\``);
    expect(md).toContain('`fmnist-cnn-rotaug`');
    expect(md).toMatch(/\| \*\*Accuracy\*\* \| clean \d\.\d{4} · mean \d\.\d{4} · min \d\.\d{4}/);
    expect(md).toContain('| `/Relu_output_0` | mean |');
    expect(md).toContain('| rotate=90 |');
    // The server-rendered charts are saved beside the Markdown and linked from it.
    expect(md).toContain('![accuracy](first-accuracy.svg)');
    const svg = await readFile(path.join(tmp, 'first-accuracy.svg'), 'utf8');
    expect(svg).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
  });

  it('a second eval reuses the model and the dataset and prints the results table', async () => {
    const [models, datasets] = [await countRows('/v1/models'), await countRows('/v1/datasets')];
    const r = await cli(evalArgs(ROTAUG, '--nv-layers', '/Relu_output_0,logits', '--tag', 'ci'));
    expect(r.code, r.stderr).toBe(0);
    expect(await countRows('/v1/models')).toBe(models);
    expect(await countRows('/v1/datasets')).toBe(datasets);
    expect(r.stderr).toMatch(/model fmnist-cnn-rotaug \S+ \(reused\)/);
    expect(r.stderr).toMatch(/dataset \S+ \S+ \(1000 images\) \(reused\)/);
    expect(r.stdout).toMatch(/^point\s+accuracy\s+consistency\s+eKLD$/m);
    expect(r.stdout).toMatch(/^clean\s+0\.\d{4}/m);
    expect(r.stdout).toMatch(/^rotate=90\s+0\.\d{4}\s+0\.\d{4}\s+\d+\.\d{4}$/m);
    expect(r.stdout).toMatch(/^\/Relu_output_0\s+mean\s+\d\.\d{4}/m);
    expect(r.stdout).toMatch(/^logits\s+mean/m);
    expect(r.stdout).not.toMatch(/\/Relu_1_output_0/);
    expect(r.stdout).toMatch(/^SUCCEEDED: run \S+ succeeded$/m);
  });

  it('a request the service rejects exits 2 with the problem code and detail on stderr', async () => {
    const runs = await countRows('/v1/runs');
    const r = await cli(evalArgs(ROTAUG, '--nv-layers', 'no-such-layer', '--json'));
    expect(r.code).toBe(2);
    // --json: the failure as JSON on stdout as well.
    expect(JSON.parse(r.stdout)).toMatchObject({
      outcome: { status: 'REJECTED', exitCode: 2 },
      problem: { status: 422, code: 'UNKNOWN_LAYER' },
    });
    expect(r.stderr).toMatch(/POST \/v1\/runs was rejected: 422 UNKNOWN_LAYER: .*no-such-layer/);
    expect(await countRows('/v1/runs')).toBe(runs);

    const wrongKey = await cli(['models', 'list'], { INVARIANCE_API_KEY: 'inv_not-a-key' });
    expect(wrongKey.code).toBe(2);
    expect(wrongKey.stderr).toMatch(/401 UNAUTHORIZED/);
  });

  it('an unreachable service exits 3', async () => {
    const server = `http://127.0.0.1:${await closedPort()}`;
    const [list, evaluation] = await Promise.all([
      cli(['models', 'list', '--server', server]),
      cli([...evalArgs(ROTAUG), '--server', server]),
    ]);
    for (const r of [list, evaluation]) {
      expect(r.code, r.stderr).toBe(3);
      expect(r.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+ .*ECONNREFUSED/);
    }
  });

  it('--timeout on a bigger run exits 3 and cancels the run', async () => {
    const r = await cli([
      'eval',
      ...['--model', ROTAUG, '--images', IMAGES, '--labels', LABELS, '--preprocessing', PREPROCESSING],
      ...['--rotate', '-180:180:1', '--metrics', 'accuracy', '--tag', 'slow', '--timeout', '1s', '--json'],
    ]);
    expect(r.code, r.stderr).toBe(3);
    const out = JSON.parse(r.stdout) as EvalJson;
    expect(out.outcome.status).toBe('TIMEOUT');
    expect(out.outcome.reason).toMatch(/did not finish within 1s/);
    expect(r.stderr).toMatch(/--timeout 1s reached: canceling run/);
    expect((await api<{ status: string }>('GET', `/v1/runs/${out.run.id}`)).status).toBe('canceled');
  });

  it('models push|list, datasets push|list', async () => {
    const [pushed, ds, dsList] = await Promise.all([
      cli([
        ...['models', 'push', PLAIN, '--name', 'fmnist-cnn-plain', '--version', '2'],
        ...['--tags', 'plain, baseline', '--preprocessing', PREPROCESSING, '--json'],
      ]),
      cli(['datasets', 'push', '--images', IMAGES, '--labels', LABELS, '--json']),
      cli(['datasets', 'list']),
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const model = JSON.parse(pushed.stdout) as { id: string; reused: boolean };
    expect(model).toMatchObject({
      name: 'fmnist-cnn-plain',
      version: '2',
      tags: ['plain', 'baseline'],
      reused: false,
    });
    expect(ds.code, ds.stderr).toBe(0);
    expect(JSON.parse(ds.stdout)).toMatchObject({ count: 1000, format: 'idx', reused: true });
    expect(dsList.code).toBe(0);
    expect(dsList.stdout).toMatch(/^id\s+name\s+format/);
    expect(dsList.stdout).toMatch(/idx\s+1000\s+28x28x1\s+10/);
    // Known bytes with the stored class names are reused; with other names the service refuses.
    const pushWithNames = (names: string) =>
      cli(['datasets', 'push', '--images', IMAGES, '--labels', LABELS, '--class-names', names]);
    const [sameNames, otherNames] = await Promise.all([
      pushWithNames(FMNIST_CLASSES.join(',')),
      pushWithNames('a,b,c,d,e,f,g,h,i,j'),
    ]);
    expect(sameNames.code, sameNames.stderr).toBe(0);
    expect(sameNames.stdout).toContain('reused');
    expect(otherNames.code).not.toBe(0);
    expect(otherNames.stderr).toContain('DATASET_EXISTS');

    const [again, list, byTag, one] = await Promise.all([
      cli(['models', 'push', PLAIN]),
      cli(['models', 'list', '--json']),
      cli(['models', 'list', '--tag', 'baseline']),
      cli(['models', 'list', '--limit', '1', '--json']),
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`model ${model.id}  (already there: reused)`);
    const page = JSON.parse(list.stdout) as { items: Array<{ name: string }>; nextCursor: string | null };
    expect(page.items.map((m) => m.name).sort()).toEqual(['fmnist-cnn-plain', 'fmnist-cnn-rotaug']);
    expect(byTag.code).toBe(0);
    expect(byTag.stdout).toMatch(/^id\s+name\s+version\s+tags/);
    expect(byTag.stdout).toContain('fmnist-cnn-plain');
    expect(byTag.stdout).not.toContain('fmnist-cnn-rotaug');
    const first = JSON.parse(one.stdout) as { items: unknown[]; nextCursor: string | null };
    expect(first.items).toHaveLength(1);
    expect(first.nextCursor).not.toBeNull();
  });

  it('runs get|list|wait|cancel', async () => {
    const missingId = '00000000-0000-4000-8000-000000000000';
    const waitJunit = path.join(tmp, 'wait.xml');
    const [get, getJson, ciList, canceled, waited, missing] = await Promise.all([
      cli(['runs', 'get', firstRunId]),
      cli(['runs', 'get', firstRunId, '--json']),
      cli(['runs', 'list', '--tag', 'ci', '--json']),
      cli(['runs', 'list', '--status', 'canceled']),
      cli(['runs', 'wait', firstRunId, '--json', '--junit', waitJunit]),
      cli(['runs', 'wait', missingId]),
    ]);
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).toContain(`run ${firstRunId}  succeeded  "cli-first"`);
    expect(get.stdout).toMatch(/^rotate=90\s/m);
    const got = JSON.parse(getJson.stdout) as EvalJson;
    expect(got.results).toEqual(await api('GET', `/v1/runs/${firstRunId}/results`));
    expect(got.model?.name).toBe('fmnist-cnn-rotaug');
    const ci = JSON.parse(ciList.stdout) as { items: Array<{ id: string }> };
    expect(ci.items).toHaveLength(2);
    expect(ci.items.map((r) => r.id)).toContain(firstRunId);
    expect(canceled.stdout).toMatch(/^\S+\s+canceled\s/m);
    expect(canceled.stdout).not.toContain(firstRunId);
    expect(waited.code, waited.stderr).toBe(0);
    expect((JSON.parse(waited.stdout) as EvalJson).run.id).toBe(firstRunId);
    expect(xmlElements(await readFile(waitJunit, 'utf8'))).toContain('testcase');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/404 NOT_FOUND/);

    // A run that takes a while: wait --timeout gives up (exit 3) without canceling it; cancel does.
    const model = (await api<{ items: Array<{ id: string }> }>('GET', '/v1/models?name=fmnist-cnn-rotaug'))
      .items[0];
    const dataset = (await api<{ items: Array<{ id: string }> }>('GET', '/v1/datasets')).items[0];
    const slow = await t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: t.auth,
      payload: {
        modelId: model.id,
        datasetId: dataset.id,
        transforms: [{ type: 'rotate', range: { from: -180, to: 180, step: 1 } }],
        metrics: ['accuracy'],
      },
    });
    const slowId = (slow.json() as { id: string }).id;
    const gaveUp = await cli(['runs', 'wait', slowId, '--timeout', '1s']);
    expect(gaveUp.code).toBe(3);
    expect(gaveUp.stderr).toMatch(/did not finish within 1s \(--timeout; still (queued|running)/);
    expect(['queued', 'running']).toContain(
      (await api<{ status: string }>('GET', `/v1/runs/${slowId}`)).status,
    );
    const cancel = await cli(['runs', 'cancel', slowId]);
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(cancel.stdout).toBe(`run ${slowId} canceled\n`);
    const again = await cli(['runs', 'cancel', slowId]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/409 RUN_FINISHED/);
  });
});

// Gates, baselines and verdicts: these need the server side of issue 4 (see probeGates). They run
// by themselves once POST /v1/runs accepts `gates`; until then they are reported as skipped.
describe.skipIf(!serverSupportsGates)('invariance CLI gates and verdicts (server-side gates)', () => {
  const ROT90 = 'rot90: accuracy.at(rotate=90) >= 0.5';
  let rotaugRunId = '';

  it('the rotation-augmented model passes the gates: exit 0, PASS, one testcase per gate', async () => {
    const junit = path.join(tmp, 'pass.xml');
    const r = await cli(
      evalArgs(
        ROTAUG,
        '--gate',
        ROT90,
        '--gate',
        'ekld.overall<=1',
        '--tag',
        'production',
        '--json',
        '--junit',
        junit,
      ),
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as EvalJson;
    rotaugRunId = out.run.id;
    expect(out.outcome.status).toBe('PASS');
    expect(out.verdict?.status).toBe('PASS');
    expect(out.verdict?.gates).toHaveLength(2);
    expect(out.verdict?.gates[0].actual).toBe(out.results.points[1].accuracy);
    const elements = xmlElements(await readFile(junit, 'utf8'));
    expect(elements.filter((e) => e === 'testcase')).toHaveLength(2);
    expect(elements).not.toContain('failure');
  });

  it('the plain model fails the same gate: exit 1, a <failure>, ❌ in the Markdown', async () => {
    const junit = path.join(tmp, 'fail.xml');
    const markdown = path.join(tmp, 'fail.md');
    const r = await cli(
      evalArgs(
        PLAIN,
        '--gate',
        ROT90,
        '--gate',
        'ekld.overall<=100',
        '--junit',
        junit,
        '--markdown',
        markdown,
      ),
    );
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^verdict FAIL$/m);
    expect(r.stdout).toMatch(/FAIL\s+rot90\s+accuracy\.at\(rotate=90\)/);
    const xml = await readFile(junit, 'utf8');
    const elements = xmlElements(xml);
    expect(elements.filter((e) => e === 'testcase')).toHaveLength(2);
    expect(elements.filter((e) => e === 'failure')).toHaveLength(1);
    expect(xml).toMatch(/<testcase name="rot90"[^>]*>\s*<failure /);
    const md = await readFile(markdown, 'utf8');
    expect(md).toMatch(/^### ❌ Invariance: FAIL/);
    expect(md).toMatch(/\| ❌ FAIL \| rot90 \|/);
    expect(md).toMatch(/\| ✅ PASS \| [^|]*ekld\.overall[^|]*\|/);
  });

  it('a failing warn: gate gives WARN and exit 0', async () => {
    const junit = path.join(tmp, 'warn.xml');
    const r = await cli(evalArgs(PLAIN, '--gate', `warn: ${ROT90}`, '--json', '--junit', junit));
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as EvalJson).verdict?.status).toBe('WARN');
    const xml = await readFile(junit, 'utf8');
    expect(xmlElements(xml)).not.toContain('failure');
    expect(xml).toMatch(/<system-out>WARN: /);
  });

  it('baselines: a missing baseline is ERROR (exit 1, <error>); against a run, maxDrop judges', async () => {
    const junit = path.join(tmp, 'error.xml');
    const baselineGate = (model: string, gate: string, baseline: string, ...rest: string[]) =>
      cli(evalArgs(model, '--gate', gate, '--baseline', baseline, ...rest));
    const [missing, same, worse] = await Promise.all([
      baselineGate(
        ROTAUG,
        'accuracy.mean maxDrop 2%',
        'model:no-such-model,tag:production',
        '--junit',
        junit,
      ),
      baselineGate(ROTAUG, 'accuracy.mean maxDrop 0.01', `run:${rotaugRunId}`),
      baselineGate(PLAIN, 'accuracy.at(rotate=90) maxDrop 2%', 'model:fmnist-cnn-rotaug,tag:production'),
    ]);
    expect(missing.code, missing.stderr).toBe(1);
    expect(missing.stdout).toMatch(/^verdict ERROR$/m);
    expect(xmlElements(await readFile(junit, 'utf8'))).toContain('error');
    expect(same.code, same.stderr).toBe(0);
    expect(worse.code, worse.stderr).toBe(1);
    expect(worse.stdout).toMatch(/baseline/);
  });

  it('runs verdict judges a finished run again without re-running it', async () => {
    if (!rotaugRunId) {
      // The first test of this block did not get that far: a run of its own, without gates.
      const own = await cli(evalArgs(ROTAUG, '--json'));
      rotaugRunId = (JSON.parse(own.stdout) as EvalJson).run.id;
    }
    const runs = await countRows('/v1/runs');
    const [pass, fail, unknown] = await Promise.all([
      cli(['runs', 'verdict', rotaugRunId, '--gate', ROT90, '--json']),
      cli(['runs', 'verdict', rotaugRunId, '--gate', 'accuracy.at(rotate=90) >= 0.99']),
      cli(['runs', 'verdict', rotaugRunId, '--gate', 'no.such.metric >= 1']),
    ]);
    expect(pass.code, pass.stderr).toBe(0);
    expect((JSON.parse(pass.stdout) as EvalJson).verdict?.status).toBe('PASS');
    expect(fail.code, fail.stderr).toBe(1);
    expect(fail.stdout).toMatch(/^verdict FAIL$/m);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/422 INVALID_GATE/);
    expect(await countRows('/v1/runs')).toBe(runs);
  });
});
