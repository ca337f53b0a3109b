// `npm run loadtest`: the run-search API under load (issue 6, point 5).
//
// 1. A PostgreSQL: a fresh database on DATABASE_URL's server when set (dropped at the end),
//    otherwise an embedded one in a temp folder.
// 2. The service as a child process (`node --import tsx src/server.ts`, role all, so the client
//    below does not share its event loop), migrated by its own start-up.
// 3. 10,000 runs seeded with one INSERT ... SELECT generate_series: 4 models, 3 datasets, 1-3 tags
//    each (common ones and rare ones), statuses as a CI sees them (80% succeeded, 10% failed, ...),
//    request / summary / results / timings JSON of the real sizes, created over 90 days.
// 4. A real sweep (the Fashion-MNIST fixture model and 1,000 images, rotations) running all along:
//    a new one is submitted whenever the previous one ends.
// 5. autocannon, 50 connections: 35 on `GET /v1/runs` with filters (status, tag, modelId,
//    datasetId, createdAfter/Before, sort, limit, and cursor pages up to 40 deep) and 15 on
//    `GET /v1/runs/{id}`, in two phases of 30 s:
//    - saturation: every connection sends its next request as soon as the previous one is
//      answered; gives the throughput (and latency = connections / throughput);
//    - at a stated load (--rate, default 100 requests/s: 50 clients polling twice a second),
//      evenly spaced over the 50 connections by a paced generator (autocannon's own rate limit
//      sends each connection's quota at the start of every second: 50 requests at once), where
//      the targets apply: p99 < 50 ms and no error (exit status 1 otherwise).
//    Prints p50/p90/p99/max latency per kind and overall, and errors (connection errors,
//    timeouts, non-2xx answers).
//
// Options: --runs N (10000), --duration S (30, per phase), --connections C (50), --rate R (100;
// 0 skips that phase), --phase both|saturation|rate, --workers W (engine threads of the service,
// default 1: the other core serves the API and PostgreSQL), --no-sweep, --light-sweep (accuracy and
// eKLD only: no NV, whose partial statistics are tens of MB per shard), --explain (EXPLAIN ANALYZE
// of the list queries as the API sends them, after seeding), --json (the figures as JSON),
// --profile DIR (a V8 CPU profile of the service, written to DIR when it stops).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { loadEmbeddedPostgres } from '../src/store/loadEmbeddedPostgres.js';
import { decodeCursor } from '../src/store/pagination.js';
import { listRunsJson } from '../src/store/runQueries.js';
import type { RunFilters } from '../src/store/runRepository.js';
import { FMNIST_CLASSES as CLASS_NAMES, FIXTURES } from '../test/helpers/fixtures.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '10000' },
    duration: { type: 'string', default: '30' },
    connections: { type: 'string', default: '50' },
    rate: { type: 'string', default: '100' },
    phase: { type: 'string', default: 'both' },
    workers: { type: 'string', default: '1' },
    'no-sweep': { type: 'boolean', default: false },
    'light-sweep': { type: 'boolean', default: false },
    explain: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    profile: { type: 'string' },
  },
});
const RUNS = Number(args.runs);
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const RATE = Number(args.rate);
if (!['both', 'rate', 'saturation'].includes(args.phase ?? ''))
  throw new Error('--phase is both, rate or saturation');
const say = (msg: string) => {
  if (!args.json) process.stdout.write(`${msg}\n`);
};

// ---------------------------------------------------------------------------------------------
// Database and service

interface Database {
  url: string;
  /** The embedded server's data folder (null for DATABASE_URL's server). */
  dataDir: string | null;
  stop(): Promise<void>;
}

async function openDatabase(): Promise<Database> {
  const given = process.env.DATABASE_URL;
  if (given) {
    const name = `inv_load_${randomBytes(4).toString('hex')}`;
    const admin = new URL(given);
    admin.pathname = '/postgres';
    const client = new pg.Client({ connectionString: admin.toString() });
    await client.connect();
    await client.query(`CREATE DATABASE "${name}"`);
    await client.end();
    const url = new URL(given);
    url.pathname = `/${name}`;
    return {
      url: url.toString(),
      dataDir: null,
      async stop() {
        const c = new pg.Client({ connectionString: admin.toString() });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        await c.end();
      },
    };
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'invariance-load-pg-'));
  const { startEmbeddedPostgres } = await loadEmbeddedPostgres();
  const server = await startEmbeddedPostgres({ dir: path.join(dir, 'data') });
  return {
    url: server.url,
    dataDir: path.join(dir, 'data'),
    async stop() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

interface Service {
  url: string;
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

async function startService(databaseUrl: string, adminKey: string): Promise<Service> {
  const port = await freePort();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'invariance-load-data-'));
  const profile = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(args.profile)}`] : [];
  const proc = spawn(process.execPath, [...profile, '--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      INVARIANCE_ADMIN_KEY: adminKey,
      // One client key drives thousands of requests a second here: the limiter runs, but does
      // not refuse. Request logs off: at this rate they would be most of the work.
      RATE_LIMIT_PER_MINUTE: '1000000000',
      LOG_LEVEL: 'warn',
      WORKERS: args.workers,
      ORT_THREADS: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const append = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  proc.stdout?.on('data', append);
  proc.stderr?.on('data', append);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`the service exited while starting:\n${output}`);
    const ready = await fetch(`${url}/readyz`)
      .then((r) => r.status === 200)
      .catch(() => false);
    if (ready) break;
    if (Date.now() > deadline) throw new Error(`the service was not ready in 120 s:\n${output}`);
    await sleep(200);
  }
  return {
    url,
    proc,
    output: () => output,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        const killer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(killer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU seconds used so far by the embedded PostgreSQL: its postmaster and every backend. */
async function postgresCpuSeconds(dataDir: string | null): Promise<number | null> {
  if (!dataDir) return null;
  try {
    const procs = new Map<number, { ppid: number; cpu: number; reaped: number; cmd: string }>();
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = await readFile(`/proc/${name}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const cmd = (await readFile(`/proc/${name}/cmdline`, 'utf8')).replaceAll('\0', ' ');
        // utime + stime, and for the postmaster cutime + cstime: backends that have exited.
        const own = Number(f[11]) + Number(f[12]);
        const children = Number(f[13]) + Number(f[14]);
        procs.set(Number(name), { ppid: Number(f[1]), cpu: own / 100, reaped: children / 100, cmd });
      } catch {
        // gone meanwhile
      }
    }
    const master = [...procs].find(([, p]) => p.cmd.includes(`-D ${dataDir} `))?.[0];
    if (master === undefined) return null;
    let total = 0;
    for (const [pid, p] of procs) {
      if (pid === master) total += p.cpu + p.reaped;
      else if (p.ppid === master) total += p.cpu;
    }
    return total;
  } catch {
    return null;
  }
}

/** CPU seconds used so far by a thread of a process (Linux /proc; null elsewhere). */
async function cpuSeconds(pid: number, tid = pid): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Seeding

/** A succeeded run's results as the engine writes them (13 points, 10 classes): about 6 KB. */
function realisticResults(): string {
  const perClass = (k: number) =>
    Array.from({ length: 10 }, (_, c) => Number((0.5 + ((c * k) % 7) / 20).toFixed(4)));
  const points = Array.from({ length: 13 }, (_, i) => ({
    params: { rotate: -180 + 30 * i },
    accuracy: Number((0.2 + (i % 5) / 10).toFixed(4)),
    consistency: Number((0.3 + (i % 3) / 10).toFixed(4)),
    ekld: Number((1 + i / 7).toFixed(4)),
    perClassAccuracy: perClass(i),
  }));
  return JSON.stringify({
    samples: 1000,
    nonFiniteSamples: 0,
    clean: { accuracy: 0.896, perClassAccuracy: perClass(1) },
    points,
    accuracy: { mean: 0.2275, min: 0.056, max: 0.896, worstCase: 0 },
    consistency: { mean: 0.31, min: 0.05 },
    tta: { accuracy: 0.228 },
    ekld: {
      overall: 3.8475,
      infinitePairs: 0,
      perClass: CLASS_NAMES.map((name, c) => ({
        class: c,
        name,
        count: 100,
        value: 2.5 + c / 10,
        classSize: null,
      })),
    },
    nv: ['/Relu_output_0', '/Relu_1_output_0', '/Relu_2_output_0', 'logits'].map((layer, i) => ({
      layer,
      aggregation: 'mean',
      dispersion: 'std',
      tv: 0.2 + i / 10,
      sv: 0.23 + i / 10,
      nv: 0.86 - i / 10,
      finite: 16,
      total: 16,
      infinite: 0,
    })),
  });
}

/** Inserts 4 models, 3 datasets and `n` runs; returns the ids a client would filter by. */
async function seed(pool: pg.Pool, n: number) {
  const started = Date.now();
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT setseed(0.42)');
    await client.query(
      `INSERT INTO models (id, sha256, name, version, tags, size_bytes, opset, inputs, outputs, layers, preprocessing, created_at)
       SELECT gen_random_uuid(), encode(sha256(('load-model-' || i)::bytea), 'hex'), 'load-model-' || i, '1.' || i,
              ARRAY['load'], 420000, 13,
              '[{"name":"input","type":"float32","shape":["N",1,28,28]}]',
              '[{"name":"logits","type":"float32","shape":["N",10]}]',
              '[{"name":"/Relu_output_0","opType":"Relu","shape":["N",16,28,28]},{"name":"logits","opType":"Gemm","shape":["N",10]}]',
              '{"mean":[0.286],"std":[0.353],"layout":"NCHW","outputIsProbability":false}',
              now() - interval '120 days'
         FROM generate_series(1, 4) i`,
    );
    await client.query(
      `INSERT INTO datasets (id, sha256, name, format, count, width, height, channels, dtype, classes, blob_sha256, size_bytes, created_at)
       SELECT gen_random_uuid(), encode(sha256(('load-dataset-' || i)::bytea), 'hex'), 'load-dataset-' || i, 'idx',
              10000, 28, 28, 1, 'uint8', $1::json, encode(sha256(('load-blob-' || i)::bytea), 'hex'), 7840000,
              now() - interval '120 days'
         FROM generate_series(1, 3) i`,
      [JSON.stringify(CLASS_NAMES.map((name, index) => ({ index, name, count: 1000 })))],
    );
    const request = JSON.stringify({
      name: null,
      transforms: [{ type: 'rotate', range: { from: -180, to: 180, step: 30 } }],
      combine: 'concat',
      metrics: ['accuracy', 'ekld', 'nv'],
      nv: {
        layers: ['/Relu_output_0', '/Relu_1_output_0', '/Relu_2_output_0', 'logits'],
        aggregation: ['mean'],
        dispersion: 'std',
        perClass: false,
      },
      preprocessing: { mean: [0.286], std: [0.353], layout: 'NCHW', outputIsProbability: false },
      limit: 1000,
      classSizes: null,
      resize: false,
      input: { name: 'input', height: 28, width: 28, channels: 1, batch: null },
      output: 'logits',
      points: 12,
      gatesVersion: 1,
      gates: [],
      baseline: null,
    });
    await client.query(
      `INSERT INTO runs (id, model_id, dataset_id, name, tags, status, request, progress_done, progress_total,
                         error, summary, results, created_at, started_at, finished_at, timings)
       SELECT id, model_id, dataset_id, name, tags, status,
              ($2::jsonb || jsonb_build_object('modelId', model_id, 'datasetId', dataset_id, 'name', name, 'tags', tags))::json,
              CASE status WHEN 'succeeded' THEN 13000 WHEN 'queued' THEN 0 ELSE (r2 * 13000)::int END, 13000,
              CASE status WHEN 'failed' THEN json_build_object('message',
                'shard 3 failed after 3 attempts: ONNX Runtime: Non-zero status code returned while running Conv node', 'shard', 3) END,
              CASE status WHEN 'succeeded' THEN json_build_object(
                'samples', 1000, 'points', 12,
                'accuracy', json_build_object('clean', round((0.8 + r2 / 10)::numeric, 4), 'mean', round((0.2 + r2 / 5)::numeric, 4),
                                              'min', round((r2 / 10)::numeric, 4), 'worstCase', 0),
                'consistency', round((0.3 + r2 / 5)::numeric, 4), 'tta', round((0.2 + r2 / 5)::numeric, 4),
                'ekld', round((3 + r2)::numeric, 4),
                'nv', json_build_object('/Relu_output_0|mean', round((0.8 + r2 / 10)::numeric, 4),
                                        '/Relu_1_output_0|mean', round((0.7 + r2 / 10)::numeric, 4),
                                        '/Relu_2_output_0|mean', round((0.6 + r2 / 10)::numeric, 4),
                                        'logits|mean', round((0.5 + r2 / 10)::numeric, 4))) END,
              CASE status WHEN 'succeeded' THEN $3::json END,
              created_at,
              CASE WHEN status <> 'queued' THEN created_at + interval '2 seconds' END,
              CASE WHEN status IN ('succeeded', 'failed', 'canceled') THEN created_at + interval '40 seconds' END,
              CASE status WHEN 'succeeded' THEN json_build_object('queuedMs', 2000, 'wallMs', 38000, 'shards', 4,
                'shardMs', json_build_array(9100, 9400, 9800, 9050), 'imagesPerSecond', 342) END
         FROM (
           SELECT gen_random_uuid() AS id,
                  (SELECT array_agg(id ORDER BY name) FROM models)[1 + floor(random() * 4)::int] AS model_id,
                  (SELECT array_agg(id ORDER BY name) FROM datasets)[1 + floor(random() * 3)::int] AS dataset_id,
                  'nightly-' || i AS name,
                  array_remove(ARRAY[
                    (ARRAY['nightly', 'pr', 'release', 'ci'])[1 + floor(random() * 4)::int],
                    'branch-' || floor(random() * 50)::int,
                    CASE WHEN random() < 0.3 THEN 'exp-' || floor(random() * 500)::int END
                  ], NULL) AS tags,
                  CASE WHEN r < 0.80 THEN 'succeeded' WHEN r < 0.90 THEN 'failed' WHEN r < 0.96 THEN 'canceled'
                       WHEN r < 0.98 THEN 'queued' ELSE 'running' END AS status,
                  now() - random() * interval '90 days' AS created_at,
                  random() AS r2
             FROM (SELECT i, random() AS r FROM generate_series(1, $1::int) i) g
         ) s`,
      [n, request, realisticResults()],
    );
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
  await pool.query('ANALYZE models; ANALYZE datasets; ANALYZE runs');
  const models = await pool.query<{ id: string }>(
    `SELECT id FROM models WHERE name LIKE 'load-model-%' ORDER BY name`,
  );
  const datasets = await pool.query<{ id: string }>(
    `SELECT id FROM datasets WHERE name LIKE 'load-dataset-%' ORDER BY name`,
  );
  const runs = await pool.query<{ id: string }>('SELECT id FROM runs ORDER BY random() LIMIT 2000');
  const size = await pool.query<{ size: string }>(
    `SELECT pg_size_pretty(pg_total_relation_size('runs')) AS size`,
  );
  say(`seeded ${n} runs in ${Date.now() - started} ms (runs table: ${size.rows[0].size})`);
  return {
    modelIds: models.rows.map((r) => r.id),
    datasetIds: datasets.rows.map((r) => r.id),
    runIds: runs.rows.map((r) => r.id),
  };
}

// ---------------------------------------------------------------------------------------------
// The sweep that runs meanwhile

async function api<T>(
  service: Service,
  key: string,
  method: string,
  url: string,
  body?: unknown,
): Promise<T> {
  const res = await fetch(`${service.url}${url}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body && !(body instanceof FormData) ? { 'content-type': 'application/json' } : {}),
    },
    body: body instanceof FormData ? body : body ? JSON.stringify(body) : undefined,
  });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function startSweeps(service: Service, key: string) {
  const file = async (name: string) => new Blob([await readFile(path.join(FIXTURES, name))]);
  const modelForm = new FormData();
  modelForm.append('name', 'fmnist-cnn-plain');
  modelForm.append('preprocessing', JSON.stringify({ mean: [0.286], std: [0.353] }));
  modelForm.append('file', await file('fmnist-cnn-plain.onnx'), 'fmnist-cnn-plain.onnx');
  const model = await api<{ id: string }>(service, key, 'POST', '/v1/models', modelForm);
  const dataForm = new FormData();
  dataForm.append('name', 'fmnist-test-1k');
  dataForm.append('classNames', JSON.stringify(CLASS_NAMES));
  dataForm.append('images', await file('fmnist-test-1k-images-idx3-ubyte.gz'), 'images.gz');
  dataForm.append('labels', await file('fmnist-test-1k-labels-idx1-ubyte.gz'), 'labels.gz');
  const dataset = await api<{ id: string }>(service, key, 'POST', '/v1/datasets', dataForm);

  let stopping = false;
  let inferences = 0;
  let completed = 0;
  const ids: string[] = [];
  let failure: string | null = null;
  const loop = (async () => {
    while (!stopping) {
      const run = await api<{ id: string; progress: { total: number } }>(service, key, 'POST', '/v1/runs', {
        modelId: model.id,
        datasetId: dataset.id,
        tags: ['loadtest-sweep'],
        transforms: [{ type: 'rotate', range: { from: -180, to: 180, step: 10 } }],
        ...(args['light-sweep']
          ? { metrics: ['accuracy', 'ekld'] }
          : { metrics: ['accuracy', 'ekld', 'nv'], nv: { layers: 'all', aggregation: ['mean'] } }),
      });
      ids.push(run.id);
      let last = 0;
      for (;;) {
        const state = await api<{ status: string; progress: { done: number }; error: unknown }>(
          service,
          key,
          'GET',
          `/v1/runs/${run.id}`,
        );
        inferences += state.progress.done - last;
        last = state.progress.done;
        if (state.status === 'succeeded') {
          completed++;
          break;
        }
        if (state.status !== 'queued' && state.status !== 'running') {
          throw new Error(`sweep ${run.id} ended ${state.status}: ${JSON.stringify(state.error)}`);
        }
        if (stopping) {
          await api(service, key, 'POST', `/v1/runs/${run.id}/cancel`).catch(() => undefined);
          return;
        }
        await sleep(500);
      }
    }
  })().catch((err: unknown) => {
    // Reported with the figures; the load goes on without a sweep.
    failure = err instanceof Error ? err.message : String(err);
  });
  // Let the first shards start before the load does.
  const deadline = Date.now() + 30_000;
  while (inferences === 0 && failure === null && Date.now() < deadline) await sleep(200);
  return {
    modelId: model.id,
    stats: () => ({ inferences, completed, runs: ids.length, failure }),
    async stop() {
      stopping = true;
      await loop;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Requests

/** List URLs as clients send them: filters, sorts, page sizes, and cursor pages found by paging. */
async function listUrls(service: Service, key: string, ids: { modelIds: string[]; datasetIds: string[] }) {
  const day = 86_400_000;
  const iso = (msAgo: number) => new Date(Date.now() - msAgo).toISOString();
  const filters: Array<Record<string, string>> = [
    {},
    { limit: '20' },
    { limit: '200' },
    { status: 'succeeded' },
    { status: 'failed' },
    { status: 'running' },
    { status: 'queued', sort: 'createdAt' },
    { tag: 'nightly' },
    { tag: 'branch-7' },
    { tag: 'exp-42' },
    { tag: 'release', status: 'succeeded' },
    { tag: 'no-such-tag' },
    { modelId: ids.modelIds[0] },
    { modelId: ids.modelIds[1], status: 'succeeded' },
    { modelId: ids.modelIds[2], tag: 'pr' },
    { datasetId: ids.datasetIds[0] },
    { datasetId: ids.datasetIds[1], status: 'failed' },
    { createdAfter: iso(7 * day) },
    { createdAfter: iso(30 * day), createdBefore: iso(20 * day) },
    { createdAfter: iso(60 * day), status: 'succeeded', sort: 'createdAt' },
    { sort: 'createdAt' },
    { sort: 'createdAt', modelId: ids.modelIds[3] },
  ];
  const urls: string[] = [];
  for (const f of filters) {
    let query = new URLSearchParams(f).toString();
    const pages = f.limit === '200' ? 5 : 40;
    for (let page = 0; page < pages; page++) {
      const url = `/v1/runs${query ? `?${query}` : ''}`;
      urls.push(url);
      const body = await api<{ nextCursor: string | null }>(service, key, 'GET', url);
      if (!body.nextCursor) break;
      query = new URLSearchParams({ ...f, cursor: body.nextCursor }).toString();
    }
  }
  return urls;
}

interface Figures {
  requests: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

function figures(latencies: number[]): Figures {
  const sorted = Float64Array.from(latencies).sort();
  const at = (q: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
  return {
    requests: sorted.length,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: sorted[sorted.length - 1] ?? 0,
  };
}

const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)];

interface PhaseResult {
  list: Figures & { errors: number; timeouts: number; non2xx: number; bytesPerRequest: number };
  get: Figures & { errors: number; timeouts: number; non2xx: number };
  all: Figures;
  requestsPerSecond: number;
  errors: number;
}

/** Saturation with autocannon: 70% of the connections list runs, 30% get one run, no pauses. */
async function saturate(
  service: Service,
  key: string,
  lists: string[],
  runIds: string[],
): Promise<PhaseResult> {
  const listConnections = Math.round(CONNECTIONS * 0.7);
  const lat = { list: [] as number[], get: [] as number[] };
  const common = {
    url: service.url,
    duration: DURATION,
    headers: { authorization: `Bearer ${key}` },
    timeout: 10,
  };
  const cannon = (opts: autocannon.Options, into: number[]) =>
    new Promise<autocannon.Result>((resolve, reject) => {
      const instance = autocannon(opts, (err, result) => (err ? reject(err) : resolve(result)));
      // The tracker emits (client, statusCode, bytes, responseTime ms); @types/autocannon omits
      // the client.
      (instance as unknown as EventEmitter).on('response', (...a: unknown[]) => into.push(Number(a[3])));
    });
  const list = cannon(
    {
      ...common,
      connections: listConnections,
      requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: pick(lists) }) }],
    },
    lat.list,
  );
  const get = cannon(
    {
      ...common,
      connections: CONNECTIONS - listConnections,
      requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: `/v1/runs/${pick(runIds)}` }) }],
    },
    lat.get,
  );
  const [l, g] = await Promise.all([list, get]);
  const failures = (r: autocannon.Result) => ({ errors: r.errors, timeouts: r.timeouts, non2xx: r.non2xx });
  return {
    list: {
      ...figures(lat.list),
      ...failures(l),
      bytesPerRequest: Math.round(l.throughput.total / l.requests.total),
    },
    get: { ...figures(lat.get), ...failures(g) },
    all: figures([...lat.list, ...lat.get]),
    requestsPerSecond: Math.round((l.requests.total + g.requests.total) / DURATION),
    errors: l.errors + g.errors + l.non2xx + g.non2xx,
  };
}

/**
 * A steady load: `rate` requests a second, evenly spaced, over at most CONNECTIONS keep-alive
 * connections (70% list, 30% get). Unlike autocannon's rate limit, which lets every connection send
 * its quota at the start of each second (a burst of 50 at once), this is what 50 clients polling
 * at their own pace look like. Latency runs from the scheduled send time, so a request that waits
 * for a free connection counts its wait (no coordinated omission).
 */
async function paced(
  service: Service,
  key: string,
  lists: string[],
  runIds: string[],
  rate: number,
): Promise<PhaseResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const target = new URL(service.url);
  const lat = { list: [] as number[], get: [] as number[] };
  const failures = {
    list: { errors: 0, timeouts: 0, non2xx: 0, bytes: 0 },
    get: { errors: 0, timeouts: 0, non2xx: 0, bytes: 0 },
  };
  const send = (path: string, due: number, kind: 'list' | 'get') =>
    new Promise<void>((resolve) => {
      const req = http.get(
        {
          host: target.hostname,
          port: target.port,
          path,
          agent,
          headers: { authorization: `Bearer ${key}` },
        },
        (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => {
            bytes += c.length;
          });
          res.on('end', () => {
            lat[kind].push(performance.now() - due);
            failures[kind].bytes += bytes;
            if ((res.statusCode ?? 0) >= 300) failures[kind].non2xx++;
            resolve();
          });
        },
      );
      req.setTimeout(10_000, () => {
        failures[kind].timeouts++;
        req.destroy(new Error('timeout'));
      });
      req.on('error', () => {
        failures[kind].errors++;
        resolve();
      });
    });
  const interval = 1000 / rate;
  const start = performance.now();
  const inflight: Array<Promise<void>> = [];
  for (let i = 0; ; i++) {
    const due = start + i * interval;
    if (due - start >= DURATION * 1000) break;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const kind = Math.random() < 0.7 ? 'list' : 'get';
    inflight.push(send(kind === 'list' ? pick(lists) : `/v1/runs/${pick(runIds)}`, due, kind));
  }
  await Promise.all(inflight);
  agent.destroy();
  const f = (k: 'list' | 'get') => ({
    errors: failures[k].errors,
    timeouts: failures[k].timeouts,
    non2xx: failures[k].non2xx,
  });
  return {
    list: {
      ...figures(lat.list),
      ...f('list'),
      bytesPerRequest: Math.round(failures.list.bytes / Math.max(1, lat.list.length)),
    },
    get: { ...figures(lat.get), ...f('get') },
    all: figures([...lat.list, ...lat.get]),
    requestsPerSecond: Math.round((lat.list.length + lat.get.length) / DURATION),
    errors: failures.list.errors + failures.get.errors + failures.list.non2xx + failures.get.non2xx,
  };
}

// ---------------------------------------------------------------------------------------------
// EXPLAIN

async function explain(url: string, ids: { modelIds: string[] }) {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  // The SQL of src/store/runQueries.ts as it runs, for the second page of each filter.
  let last: { text: string; values: unknown[] } | null = null;
  const spy = {
    query: (text: string, values: unknown[]) => {
      last = { text, values };
      return pool.query(text, values);
    },
  } as unknown as pg.Pool;
  const cases: Array<[string, RunFilters, 'asc' | 'desc']> = [
    ['no filter', {}, 'desc'],
    ['status', { status: 'failed' }, 'desc'],
    ['tag (common)', { tag: 'nightly' }, 'desc'],
    ['tag (rare)', { tag: 'exp-42' }, 'desc'],
    ['modelId', { modelId: ids.modelIds[0] }, 'desc'],
    ['createdAfter, oldest first', { createdAfter: new Date(Date.now() - 7 * 86_400_000) }, 'asc'],
  ];
  for (const [name, filter, direction] of cases) {
    const first = JSON.parse(await listRunsJson(spy, { limit: 50, cursor: null, direction }, filter)) as {
      nextCursor: string | null;
    };
    await listRunsJson(
      spy,
      { limit: 50, cursor: decodeCursor(first.nextCursor ?? undefined), direction },
      filter,
    );
    const q = last as { text: string; values: unknown[] } | null;
    if (!q) continue;
    const plan = await pool.query(`EXPLAIN (ANALYZE, COSTS OFF) ${q.text}`, q.values);
    process.stdout.write(`\n-- ${name}, second page\n`);
    for (const row of plan.rows as Array<Record<string, string>>)
      process.stdout.write(`${row['QUERY PLAN']}\n`);
  }
  await pool.end();
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const db = await openDatabase();
  let service: Service | null = null;
  let sweeps: Awaited<ReturnType<typeof startSweeps>> | null = null;
  const cleanup = async () => {
    await sweeps?.stop().catch(() => undefined);
    await service?.stop();
    await db.stop();
  };
  process.once('SIGINT', () => {
    void cleanup().finally(() => process.exit(130));
  });
  process.once('unhandledRejection', (err) => {
    process.stderr.write(`loadtest failed: ${String(err)}\n`);
    void cleanup().finally(() => process.exit(2));
  });
  try {
    const key = `inv_load_${randomBytes(24).toString('base64url')}`;
    service = await startService(db.url, key);
    say(
      `service at ${service.url} (WORKERS=${args.workers}), database ${db.url.replace(/:[^:@/]+@/, ':***@')}`,
    );
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    const ids = await seed(pool, RUNS);
    if (args.explain) await explain(db.url, ids);
    if (!args['no-sweep']) {
      sweeps = await startSweeps(service, key);
      say(
        `a sweep is running (fmnist CNN, 1,000 images x 37 rotations, accuracy + eKLD${args['light-sweep'] ? '' : ' + NV of every layer'})`,
      );
    }
    const lists = await listUrls(service, key, ids);
    say(
      `${lists.length} list URLs, ${ids.runIds.length} run ids, ${CONNECTIONS} connections, ${DURATION} s per phase`,
    );
    const phases: Array<{ name: string; rate: number }> = [];
    if (args.phase !== 'rate') phases.push({ name: 'saturation (no pause between requests)', rate: 0 });
    if (args.phase !== 'saturation' && RATE > 0) phases.push({ name: `at ${RATE} requests/s`, rate: RATE });
    const results: Array<Record<string, unknown>> = [];
    let ok = true;
    const row = (name: string, f: Figures) =>
      `  ${name.padEnd(18)} ${String(f.requests).padStart(7)} requests  p50 ${f.p50.toFixed(1).padStart(6)} ms  ` +
      `p90 ${f.p90.toFixed(1).padStart(6)} ms  p99 ${f.p99.toFixed(1).padStart(6)} ms  max ${f.max.toFixed(1).padStart(7)} ms`;
    for (const phase of phases) {
      say(`\n${phase.name} ...`);
      const before = sweeps?.stats().inferences ?? 0;
      const pid = service.proc.pid ?? 0;
      const cpuBefore = await cpuSeconds(pid);
      const pgBefore = await postgresCpuSeconds(db.dataDir);
      const clientBefore = process.cpuUsage();
      const r =
        phase.rate === 0
          ? await saturate(service, key, lists, ids.runIds)
          : await paced(service, key, lists, ids.runIds, phase.rate);
      const images = (sweeps?.stats().inferences ?? 0) - before;
      const cpuAfter = await cpuSeconds(pid);
      const pgAfter = await postgresCpuSeconds(db.dataDir);
      const client = process.cpuUsage(clientBefore);
      const requests = r.list.requests + r.get.requests;
      // The service's main thread (HTTP, SQL, JSON), apart from its engine threads.
      const cpuMsPerRequest =
        cpuBefore !== null && cpuAfter !== null && requests
          ? (1000 * (cpuAfter - cpuBefore)) / requests
          : null;
      const pgMsPerRequest =
        pgBefore !== null && pgAfter !== null && requests ? (1000 * (pgAfter - pgBefore)) / requests : null;
      const clientMsPerRequest = requests ? (client.user + client.system) / 1000 / requests : null;
      // The targets hold at a stated load; at saturation, latency is connections / throughput.
      const met = r.errors === 0 && (phase.rate === 0 || r.all.p99 < 50);
      ok &&= met;
      results.push({
        phase: phase.name,
        rate: phase.rate || null,
        requestsPerSecond: r.requestsPerSecond,
        list: r.list,
        get: r.get,
        all: r.all,
        errors: r.errors,
        cpuMsPerRequest: {
          serviceMainThread: cpuMsPerRequest === null ? null : Number(cpuMsPerRequest.toFixed(2)),
          postgres: pgMsPerRequest === null ? null : Number(pgMsPerRequest.toFixed(2)),
          loadGenerator: clientMsPerRequest === null ? null : Number(clientMsPerRequest.toFixed(2)),
        },
        sweepImagesPerSecond: sweeps ? Math.round(images / DURATION) : null,
        targetsMet: met,
      });
      say(row('GET /v1/runs', r.list));
      say(row('GET /v1/runs/{id}', r.get));
      say(row('all', r.all));
      say(
        `  ${r.requestsPerSecond} requests/s; errors ${r.errors} (connection errors ${r.list.errors + r.get.errors}, ` +
          `timeouts ${r.list.timeouts + r.get.timeouts}, non-2xx ${r.list.non2xx + r.get.non2xx}); ` +
          `${r.list.bytesPerRequest} bytes per list page` +
          (sweeps ? `; the sweep meanwhile: ${Math.round(images / DURATION)} images/s` : ''),
      );
      if (cpuMsPerRequest !== null) {
        say(
          `  CPU per request: service main thread ${cpuMsPerRequest.toFixed(2)} ms` +
            (pgMsPerRequest === null ? '' : `, PostgreSQL ${pgMsPerRequest.toFixed(2)} ms`) +
            (clientMsPerRequest === null ? '' : `, load generator ${clientMsPerRequest.toFixed(2)} ms`),
        );
      }
      say(
        phase.rate === 0
          ? `  (no latency target at saturation: 50 connections / ${r.requestsPerSecond} requests/s = ${Math.round((1000 * CONNECTIONS) / Math.max(1, r.requestsPerSecond))} ms per request)`
          : `  targets (p99 < 50 ms, no errors): ${met ? 'met' : 'MISSED'}`,
      );
    }
    const sweepFailure = sweeps?.stats().failure ?? null;
    if (sweepFailure) {
      ok = false;
      say(`\nTHE SWEEP FAILED (the figures above were not all taken while one ran): ${sweepFailure}`);
    }
    await sweeps?.stop();
    sweeps = null;
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM runs');
    await pool.end();
    if (args.json) {
      process.stdout.write(
        `${JSON.stringify({ runs: rows[0].n, connections: CONNECTIONS, durationSeconds: DURATION, workers: Number(args.workers), phases: results, sweepFailure }, null, 2)}\n`,
      );
    }
    await cleanup();
    service = null;
    process.exit(ok ? 0 : 1);
  } catch (err) {
    process.stderr.write(
      `loadtest failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    if (service) process.stderr.write(`service output:\n${service.output()}\n`);
    await cleanup().catch(() => undefined);
    process.exit(2);
  }
}

void main();
