// The real server as a child process (`node --import tsx src/server.ts`), for tests that kill
// it. Every child started here is remembered, so a failing test cannot leak one: call
// killChildServers() in afterAll.
//
// A child's stdout and stderr are kept (the last 256 KiB, see output()); a test that needs them
// when it fails calls dumpChildOutputs() from onTestFailed. CHILD_SERVER_LOG_DIR=<dir> also
// writes every child's whole output to <dir>/child-<pid>.log, for runs repeated until they fail.
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { FIXTURES, FMNIST_CLASSES, FMNIST_PREPROCESSING } from './runs.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

export interface ChildServer {
  proc: ChildProcess;
  url: string;
  key: string;
  /** stdout and stderr so far (the last 256 KiB). */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
}

const children = new Set<ChildServer>();
/** Every child this test file started, dead or alive, for dumpChildOutputs(). */
const started: ChildServer[] = [];

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts the server and resolves once /readyz answers 200. */
export async function startChildServer(
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<ChildServer> {
  const port = await freePort();
  const key = env.INVARIANCE_ADMIN_KEY;
  if (!key) throw new Error('INVARIANCE_ADMIN_KEY is required');
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const logDir = process.env.CHILD_SERVER_LOG_DIR;
  if (logDir) mkdirSync(logDir, { recursive: true });
  const logFile = logDir ? createWriteStream(path.join(logDir, `child-${proc.pid}.log`)) : null;
  const append = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-262_144);
    logFile?.write(chunk);
  };
  proc.stdout?.on('data', append);
  proc.stderr?.on('data', append);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => {
      logFile?.end();
      resolve({ code, signal });
    }),
  );
  const child: ChildServer = {
    proc,
    url: `http://127.0.0.1:${port}`,
    key,
    output: () => output,
    exited,
    alive: () => proc.exitCode === null && proc.signalCode === null,
  };
  children.add(child);
  started.push(child);
  void exited.then(() => children.delete(child));

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!child.alive()) throw new Error(`server exited while starting:\n${output}`);
    const ready = await fetch(`${child.url}/readyz`)
      .then((r) => r.status === 200)
      .catch(() => false);
    if (ready) return child;
    if (Date.now() > deadline) throw new Error(`server not ready after ${timeoutMs} ms:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Writes the output of every child started so far to stderr (for onTestFailed). */
export function dumpChildOutputs(): void {
  for (const c of started) {
    const state = c.alive() ? 'alive' : `exited ${c.proc.exitCode ?? c.proc.signalCode}`;
    process.stderr.write(
      `\n----- child server ${c.proc.pid} (${state}) output -----\n${c.output()}\n----- end -----\n`,
    );
  }
}

/** SIGKILLs every child still alive and waits for it to be gone. */
export async function killChildServers(): Promise<void> {
  await Promise.all(
    [...children].map(async (c) => {
      if (c.alive()) c.proc.kill('SIGKILL');
      await c.exited;
    }),
  );
}

/**
 * fetch as a well-behaved client does it: a 503 (the server's overload protection, e.g. while a
 * busy test machine stalls a freshly started server) is retried after a pause, for up to 60 s.
 */
async function fetchPatiently(url: string, init: RequestInit): Promise<{ status: number; text: string }> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await fetch(url, init);
    const text = await res.text();
    if (res.status !== 503 || Date.now() > deadline) return { status: res.status, text };
    const after = Number(res.headers.get('retry-after') ?? '1');
    await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(100, after * 1000))));
  }
}

/** JSON request with the admin key; returns status and parsed body. */
export async function api<T = Record<string, unknown>>(
  s: ChildServer,
  method: string,
  url: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const { status, text } = await fetchPatiently(`${s.url}${url}`, {
    method,
    headers: {
      authorization: `Bearer ${s.key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status, body: (text ? JSON.parse(text) : null) as T };
}

async function upload(s: ChildServer, url: string, form: FormData): Promise<{ id: string }> {
  const { status, text } = await fetchPatiently(`${s.url}${url}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.key}` },
    body: form,
  });
  if (status >= 300) throw new Error(`${url}: ${status} ${text}`);
  return JSON.parse(text) as { id: string };
}

/** Uploads the fixture CNN and the Fashion-MNIST subset over HTTP (multipart). */
export async function uploadFixtures(s: ChildServer): Promise<{ modelId: string; datasetId: string }> {
  const model = new FormData();
  model.append('name', 'fmnist-cnn-plain');
  model.append('preprocessing', JSON.stringify(FMNIST_PREPROCESSING));
  model.append(
    'file',
    new Blob([await readFile(path.join(FIXTURES, 'fmnist-cnn-plain.onnx'))]),
    'model.onnx',
  );
  const dataset = new FormData();
  dataset.append('name', 'fmnist-test-1k');
  dataset.append('classNames', JSON.stringify(FMNIST_CLASSES));
  dataset.append(
    'images',
    new Blob([await readFile(path.join(FIXTURES, 'fmnist-test-1k-images-idx3-ubyte.gz'))]),
    'images.gz',
  );
  dataset.append(
    'labels',
    new Blob([await readFile(path.join(FIXTURES, 'fmnist-test-1k-labels-idx1-ubyte.gz'))]),
    'labels.gz',
  );
  const [m, d] = [await upload(s, '/v1/models', model), await upload(s, '/v1/datasets', dataset)];
  return { modelId: m.id, datasetId: d.id };
}
