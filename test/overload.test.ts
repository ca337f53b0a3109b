// Overload (issue 6, point 4): per-key rate limits (429 RATE_LIMITED), the cap on concurrent
// uploads (503 TOO_MANY_UPLOADS) and event-loop pressure (503 OVERLOADED), each a problem+json
// with Retry-After; health routes and /metrics stay reachable through all of them.
import { readFile } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { AuthFailureCounter } from '../src/http/auth.js';
import { apiKeyRepository } from '../src/store/apiKeys.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';
import { multipartBody } from './helpers/multipart.js';
import { tinyClassifier } from './helpers/onnxModels.js';

function expectProblem(res: LightMyRequestResponse, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.json()).toMatchObject({ status, code });
  const retry = Number(res.headers['retry-after']);
  expect(Number.isInteger(retry) && retry > 0, `Retry-After: ${res.headers['retry-after']}`).toBe(true);
}

describe('rate limits: RATE_LIMIT_PER_MINUTE per API key, per IP without one', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({}, { env: { RATE_LIMIT_PER_MINUTE: '5' } });
  });
  afterAll(async () => t?.close());

  it('the 6th request of a key in a minute is 429 RATE_LIMITED with Retry-After; other keys are unaffected', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await t.app.inject({ method: 'GET', url: '/v1/models', headers: t.auth });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers['x-ratelimit-limit']).toBe('5');
      expect(res.headers['x-ratelimit-remaining']).toBe(String(4 - i));
    }
    const limited = await t.app.inject({ method: 'GET', url: '/v1/runs', headers: t.auth });
    expectProblem(limited, 429, 'RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(limited.json().detail).toMatch(/with this API key/);

    const { key } = await apiKeyRepository(t.db.prisma).create('other', ['read']);
    const other = await t.app.inject({
      method: 'GET',
      url: '/v1/models',
      headers: { authorization: `Bearer ${key}` },
    });
    expect(other.statusCode).toBe(200);
    expect(other.headers['x-ratelimit-remaining']).toBe('4');
  });

  it('routes without a key are limited per client address', async () => {
    const opts = { method: 'GET' as const, url: '/openapi.json', remoteAddress: '203.0.113.7' };
    for (let i = 0; i < 5; i++) expect((await t.app.inject(opts)).statusCode).toBe(200);
    const limited = await t.app.inject(opts);
    expectProblem(limited, 429, 'RATE_LIMITED');
    expect(limited.json().detail).toMatch(/from this address/);
    const elsewhere = await t.app.inject({ ...opts, remoteAddress: '203.0.113.8' });
    expect(elsewhere.statusCode).toBe(200);
  });

  it('health routes and /metrics are never limited', async () => {
    for (let i = 0; i < 12; i++) {
      expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      expect((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
      expect((await t.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
    }
  });
});

describe('key guessing: AUTH_FAILURES_PER_MINUTE invalid keys per client address', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({}, { env: { AUTH_FAILURES_PER_MINUTE: '3', RATE_LIMIT_PER_MINUTE: '0' } });
  });
  afterAll(async () => t?.close());

  const from = (remoteAddress: string, key: string) =>
    t.app.inject({
      method: 'GET',
      url: '/v1/models',
      remoteAddress,
      headers: { authorization: `Bearer ${key}` },
    });

  it('after 3 wrong keys every key from that address is 429, the right one too; others unaffected', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await from('198.51.100.1', `inv_wrong_guess_${i}`);
      expect(res.statusCode, res.body).toBe(401);
      expect(res.json().code).toBe('UNAUTHORIZED');
    }
    for (const key of ['inv_wrong_guess_again', t.adminKey]) {
      const limited = await from('198.51.100.1', key);
      expectProblem(limited, 429, 'TOO_MANY_AUTH_FAILURES');
      expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    }
    // Another address: a wrong key is still only a 401, the right key works.
    expect((await from('198.51.100.2', 'inv_wrong_guess_x')).statusCode).toBe(401);
    expect((await from('198.51.100.2', t.adminKey)).statusCode).toBe(200);
    // Routes without a key are not affected.
    expect(
      (await t.app.inject({ method: 'GET', url: '/healthz', remoteAddress: '198.51.100.1' })).statusCode,
    ).toBe(200);
  });

  it('the count is per window, and the addresses tracked are bounded', () => {
    const counter = new AuthFailureCounter(2, 1000, 3);
    counter.record('a', 0);
    expect(counter.blockedFor('a', 10)).toBe(0);
    counter.record('a', 10);
    expect(counter.blockedFor('a', 10)).toBe(990);
    expect(counter.blockedFor('a', 1000)).toBe(0); // the window is over
    counter.record('a', 1000); // a new window: 1 of 2
    expect(counter.blockedFor('a', 1001)).toBe(0);
    for (const address of ['b', 'c', 'd', 'e']) counter.record(address, 1002);
    expect(counter.size).toBe(3); // the oldest windows went first
  });
});

describe('TRUST_PROXY: client addresses from X-Forwarded-For', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp(
      {},
      { env: { AUTH_FAILURES_PER_MINUTE: '2', RATE_LIMIT_PER_MINUTE: '0', TRUST_PROXY: '127.0.0.1' } },
    );
  });
  afterAll(async () => t?.close());

  const via = (remoteAddress: string, forwardedFor: string, key: string) =>
    t.app.inject({
      method: 'GET',
      url: '/v1/models',
      remoteAddress,
      headers: { authorization: `Bearer ${key}`, 'x-forwarded-for': forwardedFor },
    });

  it('behind the trusted proxy, key guessing is counted per real client, not per proxy', async () => {
    for (let i = 0; i < 2; i++)
      expect((await via('127.0.0.1', '203.0.113.7', `inv_guess_${i}`)).statusCode).toBe(401);
    expectProblem(await via('127.0.0.1', '203.0.113.7', t.adminKey), 429, 'TOO_MANY_AUTH_FAILURES');
    // Another client through the same proxy is not locked out.
    expect((await via('127.0.0.1', '203.0.113.8', t.adminKey)).statusCode).toBe(200);
    // An untrusted peer cannot pick its address with the header.
    for (let i = 0; i < 2; i++)
      expect((await via('198.51.100.9', `10.0.0.${i}`, `inv_guess_x${i}`)).statusCode).toBe(401);
    expectProblem(await via('198.51.100.9', '10.0.0.99', t.adminKey), 429, 'TOO_MANY_AUTH_FAILURES');
  });

  it('TRUST_PROXY is validated', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }).trustProxy).toEqual([
      '10.0.0.0/8',
      '127.0.0.1',
    ]);
    expect(() => loadConfig({ TRUST_PROXY: 'my proxy' })).toThrow(ConfigError);
  });
});

describe('upload concurrency: MAX_CONCURRENT_UPLOADS per process', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({}, { env: { MAX_CONCURRENT_UPLOADS: '2' } });
  });
  afterAll(async () => t?.close());

  /** An upload whose body arrives in two halves: the second when `finish()` is called. */
  function slowUpload(url: string, bytes: Buffer) {
    const { payload, headers } = multipartBody([{ name: 'file', filename: 'm.onnx', data: bytes }]);
    const body = new PassThrough();
    const half = Math.floor(payload.length / 2);
    body.write(payload.subarray(0, half));
    const response = t.app.inject({
      method: 'POST',
      url,
      headers: { ...t.auth, ...headers, 'content-length': String(payload.length) },
      payload: body,
    });
    return { response, finish: () => body.end(payload.subarray(half)) };
  }

  async function until(cond: () => boolean, ms = 10_000) {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error('condition not reached');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('a third upload while two are in progress is 503 TOO_MANY_UPLOADS; afterwards uploads go through', async () => {
    const a = slowUpload('/v1/models', tinyClassifier({ size: 5 }));
    const b = slowUpload('/v1/datasets', Buffer.from('not a dataset at all'));
    await until(() => t.app.uploadGate.active === 2);

    const third = multipartBody([{ name: 'file', filename: 'm.onnx', data: tinyClassifier({ size: 6 }) }]);
    const refused = await t.app.inject({
      method: 'POST',
      url: '/v1/models',
      headers: { ...t.auth, ...third.headers },
      payload: third.payload,
    });
    expectProblem(refused, 503, 'TOO_MANY_UPLOADS');
    expectMatchesSpec('POST', '/v1/models', refused);
    expect(refused.headers.connection).toBe('close');
    // Reads are not uploads.
    expect((await t.app.inject({ method: 'GET', url: '/v1/models', headers: t.auth })).statusCode).toBe(200);
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/^invariance_uploads_in_progress 2$/m);

    a.finish();
    b.finish();
    expect((await a.response).statusCode).toBe(201);
    expect((await b.response).statusCode).toBe(422);
    expect(t.app.uploadGate.active).toBe(0);

    const again = await t.app.inject({
      method: 'POST',
      url: '/v1/models',
      headers: { ...t.auth, ...third.headers },
      payload: third.payload,
    });
    expect(again.statusCode, again.body).toBe(201);
  });

  it('an upload the client abandons frees its slot', async () => {
    const { payload, headers } = multipartBody([
      { name: 'file', filename: 'm.onnx', data: tinyClassifier({ size: 7 }) },
    ]);
    const body = new PassThrough();
    body.write(payload.subarray(0, 100));
    const response = t.app.inject({
      method: 'POST',
      url: '/v1/models',
      headers: { ...t.auth, ...headers },
      payload: body,
    });
    await until(() => t.app.uploadGate.active === 1);
    body.destroy(new Error('client went away'));
    const res = await response.catch((err: Error) => err);
    if (!(res instanceof Error)) expect(res.statusCode).toBeGreaterThanOrEqual(400);
    await until(() => t.app.uploadGate.active === 0);
  });
});

describe('event-loop pressure: 503 OVERLOADED above MAX_EVENT_LOOP_DELAY_MS', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp(
      {},
      { env: { MAX_EVENT_LOOP_DELAY_MS: '50', PRESSURE_SAMPLE_MS: '100', RATE_LIMIT_PER_MINUTE: '0' } },
    );
  });
  afterAll(async () => t?.close());

  /** Blocks the event loop for `ms` inside an I/O callback, then lets one timer phase pass. */
  async function blockEventLoop(ms: number) {
    await new Promise<void>((resolve) =>
      readFile(path.join(import.meta.dirname, 'overload.test.ts'), () => {
        const until = Date.now() + ms;
        while (Date.now() < until) {
          // busy: nothing else runs in this process meanwhile
        }
        resolve();
      }),
    );
    await new Promise((r) => setTimeout(r, 0));
  }

  async function servedWithin(ms: number): Promise<LightMyRequestResponse> {
    const deadline = Date.now() + ms;
    for (;;) {
      const res = await t.app.inject({ method: 'GET', url: '/v1/models', headers: t.auth });
      if (res.statusCode !== 503 || Date.now() > deadline) return res;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('answers 503 with Retry-After while the loop lags, except health and metrics; recovers after', async () => {
    // Starting the app kept the loop busy too: wait until it is quiet.
    expect((await servedWithin(5000)).statusCode).toBe(200);
    // The lag shows in the sample after the block (every PRESSURE_SAMPLE_MS): probe until then.
    // The refused route is asked last in each batch, so the exempt ones saw the same pressure.
    let batch: LightMyRequestResponse[] = [];
    for (let attempt = 0; attempt < 5 && batch[3]?.statusCode !== 503; attempt++) {
      await blockEventLoop(400);
      const deadline = Date.now() + 500;
      do {
        batch = await Promise.all([
          t.app.inject({ method: 'GET', url: '/healthz' }),
          t.app.inject({ method: 'GET', url: '/readyz' }),
          t.app.inject({ method: 'GET', url: '/metrics' }),
          t.app.inject({ method: 'GET', url: '/v1/models', headers: t.auth }),
        ]);
        if (batch[3].statusCode === 503) break;
        await new Promise((r) => setTimeout(r, 10));
      } while (Date.now() < deadline);
    }
    const [healthz, readyz, metrics, busy] = batch;
    expectProblem(busy, 503, 'OVERLOADED');
    expect(busy.json().detail).toMatch(/eventLoopDelay/);
    expect(healthz.statusCode).toBe(200);
    expect(readyz.statusCode).toBe(200);
    expect(metrics.statusCode).toBe(200);

    // A few quiet samples later, requests are served again.
    expect((await servedWithin(5000)).statusCode).toBe(200);
  });
});
