// The CLI's client against a scripted HTTP server: answers that mean "come back later" (429 and
// 503 with Retry-After: rate limits, too many uploads, overload) are sent again after the wait,
// for JSON requests and for multipart uploads alike; other refusals are not.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, parseRetryAfter } from '../src/cli/api/client.js';
import { postMultipart } from '../src/cli/api/upload.js';
import { ProblemError } from '../src/cli/errors.js';

interface Scripted {
  status: number;
  body: unknown;
  retryAfter?: string;
}

let server: http.Server;
let script: Scripted[] = [];
let seen: Array<{ method: string; url: string; bytes: number; at: number }> = [];
let client: ApiClient;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'invariance-cli-retries-'));
  server = http.createServer((req, res) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', bytes, at: Date.now() });
      const next = script.shift() ?? {
        status: 500,
        body: { code: 'SCRIPT_EMPTY', detail: 'no answer left' },
      };
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (next.retryAfter !== undefined) headers['retry-after'] = next.retryAfter;
      res.writeHead(next.status, headers).end(JSON.stringify(next.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  client = new ApiClient({ server: `http://127.0.0.1:${port}`, apiKey: 'k', userAgent: 'test' });
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const later = (status: number, code: string, retryAfter?: string): Scripted => ({
  status,
  body: { status, code, detail: code.toLowerCase() },
  retryAfter,
});

describe('CLI client retries', () => {
  it('parses Retry-After as seconds or a date, capped at 60 s', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter('0')).toBe(0);
    expect(parseRetryAfter('3600')).toBe(60_000);
    expect(parseRetryAfter(new Date(Date.UTC(2030, 0, 1, 0, 0, 5)).toUTCString(), Date.UTC(2030, 0, 1))).toBe(
      5000,
    );
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
  });

  it('a 429 while polling waits for Retry-After and goes on', async () => {
    script = [later(429, 'RATE_LIMITED', '1'), { status: 200, body: { id: 'r', status: 'running' } }];
    seen = [];
    const body = await client.get<{ status: string }>('/v1/runs/r', { retry: true });
    expect(body.status).toBe('running');
    expect(seen).toHaveLength(2);
    expect(seen[1].at - seen[0].at).toBeGreaterThanOrEqual(900);
  });

  it('a POST refused with 503 OVERLOADED is sent again; a 422 is not', async () => {
    script = [later(503, 'OVERLOADED', '0'), { status: 202, body: { id: 'r' } }];
    seen = [];
    expect((await client.post<{ id: string }>('/v1/runs', { a: 1 })).status).toBe(202);
    expect(seen.map((s) => s.method)).toEqual(['POST', 'POST']);

    script = [{ status: 422, body: { status: 422, code: 'INVALID_SWEEP', detail: 'no' } }];
    seen = [];
    await expect(client.post('/v1/runs', { a: 1 })).rejects.toBeInstanceOf(ProblemError);
    expect(seen).toHaveLength(1);
  });

  it('an upload refused with 503 TOO_MANY_UPLOADS is streamed again from the file', async () => {
    const file = path.join(dir, 'model.onnx');
    await writeFile(file, Buffer.alloc(100_000, 7));
    script = [
      later(503, 'TOO_MANY_UPLOADS', '0'),
      later(503, 'TOO_MANY_UPLOADS', '0'),
      { status: 201, body: { id: 'm' } },
    ];
    seen = [];
    const res = await postMultipart<{ id: string }>(client, '/v1/models', [
      { name: 'file', file, filename: 'model.onnx', size: 100_000 },
    ]);
    expect(res).toEqual({ status: 201, body: { id: 'm' } });
    expect(seen).toHaveLength(3);
    expect(seen.every((s) => s.bytes > 100_000)).toBe(true);
  });

  it('gives up after 8 "come back later" answers', async () => {
    script = Array.from({ length: 9 }, () => later(429, 'RATE_LIMITED', '0'));
    seen = [];
    const err = await client.get('/v1/runs').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProblemError);
    expect((err as ProblemError).problem.code).toBe('RATE_LIMITED');
    expect(seen).toHaveLength(9);
  });
});
