// Several instances on one Postgres and one DATA_DIR: one API process and two worker processes
// (`--role api` / `--role worker`) share the shards of one run, with the same results as when a
// single worker does all of them.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  api,
  type ChildServer,
  killChildServers,
  startChildServer,
  uploadFixtures,
} from './helpers/childServer.js';
import { countNumbers, resultDiffs } from './helpers/compare.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const KEY = `inv_test_${randomBytes(12).toString('hex')}`;
let database: TestDatabase;
let pool: pg.Pool;
let dataDir: string;
let apiServer: ChildServer;
const workers: ChildProcess[] = [];

function env(): Record<string, string> {
  return {
    DATABASE_URL: database.url,
    DATA_DIR: dataDir,
    INVARIANCE_ADMIN_KEY: KEY,
    WORKERS: '1',
    // Many small shards (1,000 samples x 5 images in 20 of 250), so that both workers get some even
    // when one of them starts polling a while after the other.
    SHARD_INFERENCES: '250',
    LOG_LEVEL: 'warn',
  };
}

/** A worker-role process (no HTTP): resolves once it says it is taking jobs. */
function startWorker(): Promise<ChildProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts', '--role', 'worker'], {
    cwd: ROOT,
    env: { ...process.env, ...env() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  workers.push(proc);
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker did not start:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (/worker w-\w+: \d+ engine thread/.test(output)) {
        clearTimeout(timer);
        resolve(proc);
      }
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`worker exited (${code}):\n${output}`)));
  });
}

async function runToEnd(ids: { modelId: string; datasetId: string }) {
  const submitted = await api<{ id: string }>(apiServer, 'POST', '/v1/runs', {
    ...ids,
    transforms: [{ type: 'rotate', values: [0, 45, 90, 180] }],
    metrics: ['accuracy', 'ekld', 'nv'],
    nv: { layers: ['/Relu_1_output_0', 'logits'], aggregation: ['none', 'mean'] },
    limit: 1000,
  });
  expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
  const id = submitted.body.id;
  const deadline = Date.now() + 120_000;
  for (;;) {
    const { body } = await api<{ status: string; error: unknown }>(apiServer, 'GET', `/v1/runs/${id}`);
    if (!['queued', 'running'].includes(body.status)) {
      expect(body.status, JSON.stringify(body.error)).toBe('succeeded');
      break;
    }
    if (Date.now() > deadline) throw new Error(`run ${id} still ${body.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const { rows } = await pool.query<{ worker_id: string }>(
    'SELECT DISTINCT worker_id FROM run_shards WHERE run_id = $1',
    [id],
  );
  const results = (await api(apiServer, 'GET', `/v1/runs/${id}/results`)).body;
  return { workers: rows.map((r) => r.worker_id), results };
}

beforeAll(async () => {
  database = await createTestDatabase();
  pool = new pg.Pool({ connectionString: database.url, max: 2 });
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'invariance-roles-'));
  apiServer = await startChildServer({ ...env(), ROLE: 'api' });
}, 120_000);

afterAll(async () => {
  for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
  await killChildServers();
  await pool?.end();
  await database?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
}, 60_000);

it('one api and two worker processes share the shards of a run; one worker alone gives the same numbers', async () => {
  const ids = await uploadFixtures(apiServer);
  const [w1] = await Promise.all([startWorker(), startWorker()]);
  const shared = await runToEnd(ids);
  // The api process runs no shard; both workers did.
  expect(shared.workers.filter((w) => w !== null)).toHaveLength(2);

  w1.kill('SIGTERM');
  await new Promise((r) => w1.once('exit', r));
  const alone = await runToEnd(ids);
  expect(alone.workers).toHaveLength(1);
  expect(countNumbers(alone.results)).toBeGreaterThan(100);
  expect(resultDiffs(shared.results, alone.results)).toEqual([]);
}, 240_000);
