// Webhooks against a real local HTTP receiver: signed JSON POSTs, retried with backoff from the
// Postgres queue, every attempt logged.
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';
import { FMNIST_PREPROCESSING, submitRun, uploadFmnist, uploadModel, waitForRun } from './helpers/runs.js';

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

let t: TestApp;
let receiver: http.Server;
let base: string;
const received: Received[] = [];
/** path -> how many requests to fail before answering 204 (Infinity: always fail). */
const failFirst = new Map<string, number>();
/** How long the receiver takes to answer on /slow. */
const SLOW_MS = 3000;

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const path = req.url ?? '/';
      received.push({ path, headers: req.headers, body, at: Date.now() });
      const left = failFirst.get(path) ?? 0;
      if (path === '/slow') setTimeout(() => res.writeHead(204).end(), SLOW_MS);
      else if (left > 0) {
        failFirst.set(path, left - 1);
        res.writeHead(500).end('not now');
      } else res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  t = await createTestApp(
    {},
    {
      workers: true,
      webhooks: true,
      env: { WEBHOOK_RETRY_DELAY_SECONDS: '1', WEBHOOK_RETRIES: '3', WEBHOOK_POLL_MS: '100' },
    },
  );
}, 60_000);
afterAll(async () => {
  await t?.close();
  await new Promise((r) => receiver?.close(r));
});

async function createHook(path: string, events: string[], secret = 's3cret-value') {
  const res = await t.app.inject({
    method: 'POST',
    url: '/v1/webhooks',
    headers: t.auth,
    payload: { url: `${base}${path}`, secret, events },
  });
  expect(res.statusCode, res.body).toBe(201);
  expectMatchesSpec('POST', '/v1/webhooks', res);
  expect(res.body).not.toContain(secret);
  return res.json() as { id: string };
}

async function until<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false>,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('webhooks', () => {
  it('signs, retries with backoff until the receiver accepts, and logs every attempt', async () => {
    const hook = await createHook('/ok', ['run.succeeded', 'run.failed']);
    failFirst.set('/ok', 2);
    const model = await uploadModel(t, 'fmnist-cnn-plain.onnx', {
      preprocessing: JSON.stringify(FMNIST_PREPROCESSING),
    });
    const dataset = await uploadFmnist(t);
    const run = await submitRun(t, {
      modelId: model.id,
      datasetId: dataset.id,
      limit: 20,
      metrics: ['accuracy'],
      transforms: [{ type: 'rotate', values: [0, 90] }],
    });
    expect((await waitForRun(t, run.id)).status).toBe('succeeded');

    const deliveries = await until('a delivered webhook', async () => {
      const res = await t.app.inject({
        method: 'GET',
        url: `/v1/webhooks/${hook.id}/deliveries`,
        headers: t.auth,
      });
      const items = res.json().items as Array<{ status: string }>;
      return items[0]?.status === 'succeeded' ? res : null;
    });
    expectMatchesSpec('GET', '/v1/webhooks/{id}/deliveries', deliveries);
    const [d] = deliveries.json().items;
    expect(d).toMatchObject({
      event: 'run.succeeded',
      attempts: 3,
      lastStatusCode: 204,
      status: 'succeeded',
    });

    const posts = received.filter((r) => r.path === '/ok');
    expect(posts).toHaveLength(3);
    // Every retry sends the same bytes with the same signature.
    expect(new Set(posts.map((p) => p.body)).size).toBe(1);
    const { body, headers } = posts[2];
    const expected = `sha256=${createHmac('sha256', 's3cret-value').update(body).digest('hex')}`;
    expect(headers['x-invariance-signature']).toBe(expected);
    expect(headers['x-invariance-event']).toBe('run.succeeded');
    expect(headers['content-type']).toBe('application/json');
    const payload = JSON.parse(body);
    expect(payload).toMatchObject({
      event: 'run.succeeded',
      id: d.id,
      run: { id: run.id, status: 'succeeded' },
    });
    expect(payload.run.summary.samples).toBe(20);
  });

  it('gives up after the retry limit and records the failure', async () => {
    const hook = await createHook('/down', ['run.canceled']);
    failFirst.set('/down', Number.POSITIVE_INFINITY);
    const [model] = (await t.app.inject({ method: 'GET', url: '/v1/models', headers: t.auth })).json().items;
    const [dataset] = (await t.app.inject({ method: 'GET', url: '/v1/datasets', headers: t.auth })).json()
      .items;
    const run = await submitRun(t, {
      modelId: model.id,
      datasetId: dataset.id,
      metrics: ['accuracy'],
      transforms: [{ type: 'rotate', range: { from: 0, to: 360, step: 5 } }],
    });
    const cancel = await t.app.inject({ method: 'POST', url: `/v1/runs/${run.id}/cancel`, headers: t.auth });
    expect(cancel.json().status).toBe('canceled');
    const d = await until(
      'a failed delivery',
      async () => {
        const res = await t.app.inject({
          method: 'GET',
          url: `/v1/webhooks/${hook.id}/deliveries`,
          headers: t.auth,
        });
        const item = res.json().items[0];
        return item?.status === 'failed' ? item : null;
      },
      40_000,
    );
    expect(d).toMatchObject({ event: 'run.canceled', attempts: 4, lastStatusCode: 500 });
    expect(d.lastError).toMatch(/500/);
  }, 60_000);

  it('records verdict.failed when a run gets a failing verdict', async () => {
    const run = await t.db.prisma.run.findFirstOrThrow({ where: { status: 'succeeded' } });
    await t.db.pool.query(`UPDATE runs SET verdict_status = 'FAIL' WHERE id = $1`, [run.id]);
    const { rows } = await t.db.pool.query(`SELECT type FROM webhook_events WHERE run_id = $1 ORDER BY id`, [
      run.id,
    ]);
    expect(rows.map((r) => r.type)).toEqual(['run.succeeded', 'verdict.failed']);
  });

  it('delivers concurrently: a slow receiver holds up no other subscriber', async () => {
    const undispatched = async () =>
      (await t.db.pool.query('SELECT count(*)::int AS n FROM webhook_events WHERE dispatched_at IS NULL'))
        .rows[0].n === 0;
    await until('earlier events dispatched', undispatched);
    const slow = await createHook('/slow', ['verdict.failed']);
    const fast = await createHook('/fast', ['verdict.failed']);
    const run = await t.db.prisma.run.findFirstOrThrow({ where: { status: 'succeeded' } });
    // Two events, the second dispatched after the first: one delivery at a time would send the
    // second event to /fast only once /slow had answered the first.
    const emit = () =>
      t.db.pool.query(`INSERT INTO webhook_events (type, run_id) VALUES ('verdict.failed', $1)`, [run.id]);
    await emit();
    await until('the first event dispatched', undispatched);
    await emit();
    await until(
      'two deliveries to /fast',
      async () => received.filter((r) => r.path === '/fast').length >= 2,
    );
    const firstSlow = await until('a delivery to /slow', async () =>
      received.find((r) => r.path === '/slow'),
    );
    const lastFast = received.filter((r) => r.path === '/fast')[1];
    expect(lastFast.at).toBeLessThan(firstSlow.at + SLOW_MS - 1000);

    for (const hook of [slow, fast]) {
      const items = await until(`both deliveries of ${hook.id} succeeded`, async () => {
        const res = await t.app.inject({
          method: 'GET',
          url: `/v1/webhooks/${hook.id}/deliveries`,
          headers: t.auth,
        });
        const list = res.json().items as Array<{ status: string; attempts: number }>;
        return list.length === 2 && list.every((d) => d.status === 'succeeded') ? list : null;
      });
      expect(items.map((d) => d.attempts)).toEqual([1, 1]);
    }
  }, 30_000);

  it('validates, lists and deletes webhooks (admin only)', async () => {
    for (const payload of [
      { url: 'ftp://example.com/x', secret: 'long-enough', events: ['run.failed'] },
      { url: 'http://user:pw@example.com/', secret: 'long-enough', events: ['run.failed'] },
    ]) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: t.auth, payload });
      expect(res.statusCode).toBe(422);
      expect(res.json().code).toBe('INVALID_WEBHOOK_URL');
    }
    const bad = await t.app.inject({
      method: 'POST',
      url: '/v1/webhooks',
      headers: t.auth,
      payload: { url: `${base}/x`, secret: 'long-enough', events: ['run.exploded'] },
    });
    expect(bad.statusCode).toBe(400);
    const hook = await createHook('/gone', ['run.failed']);
    const list = await t.app.inject({ method: 'GET', url: '/v1/webhooks', headers: t.auth });
    expectMatchesSpec('GET', '/v1/webhooks', list);
    expect(list.json().items.map((h: { id: string }) => h.id)).toContain(hook.id);
    const del = await t.app.inject({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, headers: t.auth });
    expect(del.statusCode).toBe(204);
    const gone = await t.app.inject({ method: 'GET', url: `/v1/webhooks/${hook.id}`, headers: t.auth });
    expect(gone.statusCode).toBe(404);
  });
});
