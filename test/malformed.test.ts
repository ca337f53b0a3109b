// A dozen malformed requests: each gets a 4xx problem+json with a code, never a 500, and
// leaves no row and no file behind.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './helpers/app.js';
import { multipartBody } from './helpers/multipart.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  }
  return out;
}

const boundary = '----x';
const truncatedMultipart = Buffer.from(
  `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n\r\nabc`,
);

const cases: Array<{
  name: string;
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  headers?: Record<string, string>;
  payload?: string | Buffer;
  expect: number;
}> = [
  {
    name: 'invalid JSON body',
    method: 'POST',
    url: '/v1/runs',
    headers: { 'content-type': 'application/json' },
    payload: '{"modelId":',
    expect: 400,
  },
  {
    name: 'JSON array instead of object',
    method: 'POST',
    url: '/v1/runs',
    headers: { 'content-type': 'application/json' },
    payload: '[1,2]',
    expect: 400,
  },
  {
    name: 'empty JSON body',
    method: 'POST',
    url: '/v1/runs',
    headers: { 'content-type': 'application/json' },
    payload: '',
    expect: 400,
  },
  {
    name: 'text body to a JSON route',
    method: 'POST',
    url: '/v1/runs',
    headers: { 'content-type': 'text/plain' },
    payload: 'hello',
    expect: 415,
  },
  {
    name: 'JSON to the model upload',
    method: 'POST',
    url: '/v1/models',
    headers: { 'content-type': 'application/json' },
    payload: '{}',
    expect: 415,
  },
  {
    name: 'multipart without boundary',
    method: 'POST',
    url: '/v1/models',
    headers: { 'content-type': 'multipart/form-data' },
    payload: 'x',
    expect: 400,
  },
  {
    name: 'truncated multipart model',
    method: 'POST',
    url: '/v1/models',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    payload: truncatedMultipart,
    expect: 400,
  },
  {
    name: 'truncated multipart dataset',
    method: 'POST',
    url: '/v1/datasets',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    payload: truncatedMultipart,
    expect: 400,
  },
  { name: 'malformed model id', method: 'GET', url: '/v1/models/%00%ff', expect: 400 },
  { name: 'over-long id', method: 'GET', url: `/v1/datasets/${'a'.repeat(5000)}`, expect: 414 },
  { name: 'malformed id on delete', method: 'DELETE', url: '/v1/models/not-a-uuid', expect: 404 },
  { name: 'negative limit', method: 'GET', url: '/v1/models?limit=-1', expect: 400 },
  { name: 'non-numeric limit', method: 'GET', url: '/v1/runs?limit=abc', expect: 400 },
  { name: 'garbage cursor', method: 'GET', url: '/v1/models?cursor=%7B%7D', expect: 400 },
  { name: 'unknown query parameter', method: 'GET', url: '/v1/runs?bogus=1', expect: 400 },
  { name: 'bad date filter', method: 'GET', url: '/v1/runs?createdAfter=yesterday', expect: 400 },
  {
    name: 'oversized JSON body',
    method: 'POST',
    url: '/v1/runs',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ modelId: 'x'.repeat(2_000_000) }),
    expect: 413,
  },
];

describe('malformed requests', () => {
  it.each(cases)('$name -> $expect problem+json', async (c) => {
    const res = await t.app.inject({
      method: c.method,
      url: c.url,
      headers: { ...t.auth, ...c.headers },
      payload: c.payload,
    });
    expect(res.statusCode, res.body).toBe(c.expect);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = res.json();
    expect(body.status).toBe(c.expect);
    expect(typeof body.code).toBe('string');
    expect(body.code).not.toBe('INTERNAL');
  });

  it('a multipart part with a broken JSON field is a 400, not a 406 or 500', async () => {
    const body = multipartBody([
      { name: 'preprocessing', data: '{not json' },
      { name: 'file', filename: 'm.onnx', data: Buffer.from('junk') },
    ]);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/models',
      headers: { ...t.auth, ...body.headers },
      payload: body.payload,
    });
    expect(res.statusCode).toBe(400);
  });

  it('left nothing behind', async () => {
    expect(await t.db.prisma.model.count()).toBe(0);
    expect(await t.db.prisma.dataset.count()).toBe(0);
    expect(await t.db.prisma.run.count()).toBe(0);
    expect(await filesUnder(path.join(t.dataDir, 'blobs'))).toEqual([]);
    expect(await filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
  });
});
