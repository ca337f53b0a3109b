// Uploading the fixtures and driving runs to completion through the real API.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import type { TestApp } from './app.js';
import { idxImages, idxLabels } from './datasetFiles.js';
import { FIXTURES, FMNIST_CLASSES } from './fixtures.js';
import { type MultipartPart, multipartBody } from './multipart.js';

export { FIXTURES, FMNIST_CLASSES, FMNIST_PREPROCESSING } from './fixtures.js';

/** POST `url` with these multipart parts and the admin key; expects a 2xx. */
async function postMultipart<T>(t: TestApp, url: string, parts: MultipartPart[]): Promise<T> {
  const body = multipartBody(parts);
  const res = await t.app.inject({
    method: 'POST',
    url,
    headers: { ...t.auth, ...body.headers },
    payload: body.payload,
  });
  expect(res.statusCode, res.body).toBeLessThan(300);
  return res.json() as T;
}

export async function uploadModel(t: TestApp, file: string, fields: Record<string, string> = {}) {
  return postMultipart<{ id: string; layers: Array<{ name: string }> }>(t, '/v1/models', [
    ...Object.entries(fields).map(([name, data]) => ({ name, data })),
    {
      name: 'file',
      filename: path.basename(file),
      data: await readFile(path.isAbsolute(file) ? file : path.join(FIXTURES, file)),
    },
  ]);
}

/** POST /v1/datasets with these multipart parts; expects 201 (or 200 for known bytes). */
export function uploadDataset(t: TestApp, parts: MultipartPart[]): Promise<{ id: string }> {
  return postMultipart(t, '/v1/datasets', parts);
}

/** An IDX pair of n grey images of size x size (pixels n * size * size, row-major). */
export async function uploadIdxDataset(
  t: TestApp,
  d: { pixels: Uint8Array; labels: number[]; size: number; name?: string; classNames?: string[] },
): Promise<string> {
  const n = d.labels.length;
  const parts: MultipartPart[] = [
    { name: 'images', filename: 'images', data: idxImages(n, d.size, d.size, Buffer.from(d.pixels)) },
    { name: 'labels', filename: 'labels', data: idxLabels(d.labels) },
  ];
  if (d.name) parts.unshift({ name: 'name', data: d.name });
  if (d.classNames) parts.unshift({ name: 'classNames', data: JSON.stringify(d.classNames) });
  return (await uploadDataset(t, parts)).id;
}

export async function uploadFmnist(t: TestApp) {
  return uploadDataset(t, [
    { name: 'name', data: 'fmnist-test-1k' },
    { name: 'classNames', data: JSON.stringify(FMNIST_CLASSES) },
    {
      name: 'images',
      filename: 'images.gz',
      data: await readFile(path.join(FIXTURES, 'fmnist-test-1k-images-idx3-ubyte.gz')),
    },
    {
      name: 'labels',
      filename: 'labels.gz',
      data: await readFile(path.join(FIXTURES, 'fmnist-test-1k-labels-idx1-ubyte.gz')),
    },
  ]);
}

export async function submitRun(t: TestApp, request: Record<string, unknown>) {
  const res = await t.app.inject({ method: 'POST', url: '/v1/runs', headers: t.auth, payload: request });
  expect(res.statusCode, res.body).toBe(202);
  return res.json() as { id: string; status: string };
}

export interface RunState {
  id: string;
  status: string;
  progress: { done: number; total: number };
  error: { message: string } | null;
}

export async function waitForRun(t: TestApp, id: string, timeoutMs = 120_000): Promise<RunState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}`, headers: t.auth });
    const run = res.json() as RunState;
    if (['succeeded', 'failed', 'canceled'].includes(run.status)) return run;
    if (Date.now() > deadline) throw new Error(`run ${id} still ${run.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function getResults<T = Record<string, unknown>>(t: TestApp, id: string): Promise<T> {
  const res = await t.app.inject({ method: 'GET', url: `/v1/runs/${id}/results`, headers: t.auth });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as T;
}
