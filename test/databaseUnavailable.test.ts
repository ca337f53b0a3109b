// A database that cannot be reached is a 503 DATABASE_UNAVAILABLE with Retry-After, not a 500,
// and neither it nor /readyz tells the client the database's address. Uses a tiny Fastify app
// with the service's error handler, fake errors, and a real pool/Prisma client pointed at a
// closed port (no database is needed).
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_RETRY_AFTER, errorHandlerPlugin } from '../src/http/errorHandler.js';
import { AppError } from '../src/http/problem.js';
import { healthRoutes } from '../src/http/routes/health.js';
import { type Database, isConnectionLoss, openDatabase } from '../src/store/database.js';
import { freePort } from '../src/store/embeddedPostgres.js';

function coded(code: string, message = `failed (${code})`): Error {
  return Object.assign(new Error(message), { code });
}

const connectionErrors: Record<string, () => unknown> = {
  ECONNREFUSED: () => coded('ECONNREFUSED', 'connect ECONNREFUSED 10.1.2.3:5432'),
  ECONNRESET: () => coded('ECONNRESET'),
  ETIMEDOUT: () => coded('ETIMEDOUT'),
  EPIPE: () => coded('EPIPE'),
  ENOTFOUND: () => coded('ENOTFOUND', 'getaddrinfo ENOTFOUND db.internal'),
  '57P01 (admin shutdown)': () => coded('57P01'),
  '57P02': () => coded('57P02'),
  '57P03': () => coded('57P03'),
  '08006 (connection failure)': () => coded('08006'),
  '08P01': () => coded('08P01'),
  P1001: () => coded('P1001', "Can't reach database server at 10.1.2.3:5432"),
  P1002: () => coded('P1002'),
  P1017: () => coded('P1017'),
  'a pg error in cause': () => Object.assign(new Error('wrapped'), { cause: { code: '57P01' } }),
  'a Prisma error with the SQLSTATE in meta': () =>
    Object.assign(new Error('Database error. Code: `57P01`'), {
      code: 'P2039',
      meta: { driverAdapterError: { cause: { kind: 'postgres', originalCode: '57P01' } } },
    }),
  'an AggregateError of refusals': () =>
    new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')], 'connect failed'),
};

const otherErrors: Record<string, () => unknown> = {
  'a unique violation': () => coded('23505'),
  'a Prisma not-found': () => coded('P2025'),
  'a plain error': () => new Error('boom'),
  'a string': () => 'ECONNREFUSED',
  null: () => null,
};

let app: FastifyInstance;
let unreachable: Database;
let thrown: unknown;

beforeAll(async () => {
  // A port nothing listens on: connections are refused at once.
  unreachable = openDatabase(`postgresql://postgres@127.0.0.1:${await freePort()}/nothing`);
  app = Fastify({ logger: false });
  await app.register(errorHandlerPlugin);
  app.get('/throw', async () => {
    throw thrown;
  });
  app.get('/pg', async () => unreachable.pool.query('SELECT 1'));
  app.get('/prisma', async () => unreachable.prisma.apiKey.findFirst());
  await app.register(healthRoutes, { db: unreachable });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  await unreachable?.close().catch(() => undefined);
});

function expectDatabaseUnavailable(res: Awaited<ReturnType<FastifyInstance['inject']>>) {
  expect(res.statusCode, res.body).toBe(503);
  expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
  expect(res.headers['retry-after']).toBe(String(DATABASE_RETRY_AFTER));
  expect(res.json()).toMatchObject({ status: 503, code: 'DATABASE_UNAVAILABLE' });
  expect(res.body).not.toMatch(/10\.1\.2\.3|127\.0\.0\.1|db\.internal|ECONN|5432/);
}

describe('isConnectionLoss', () => {
  it.each(Object.entries(connectionErrors))('is true for %s', (_name, make) => {
    expect(isConnectionLoss(make())).toBe(true);
  });
  it.each(Object.entries(otherErrors))('is false for %s', (_name, make) => {
    expect(isConnectionLoss(make())).toBe(false);
  });
});

describe('an unreachable database', () => {
  it.each(Object.entries(connectionErrors))(
    '%s -> 503 DATABASE_UNAVAILABLE with Retry-After',
    async (_n, make) => {
      thrown = make();
      expectDatabaseUnavailable(await app.inject({ method: 'GET', url: '/throw' }));
    },
  );

  it('other errors stay 500 INTERNAL, AppErrors keep their status', async () => {
    thrown = coded('23505');
    const res = await app.inject({ method: 'GET', url: '/throw' });
    expect(res.statusCode).toBe(500);
    expect(res.json().code).toBe('INTERNAL');
    expect(res.headers['retry-after']).toBeUndefined();
    thrown = new AppError(503, 'OVERLOADED', 'busy', { retryAfter: 2 });
    const busy = await app.inject({ method: 'GET', url: '/throw' });
    expect(busy.json().code).toBe('OVERLOADED');
    expect(busy.headers['retry-after']).toBe('2');
  });

  it('a real refused connection, through pg and through Prisma', async () => {
    for (const url of ['/pg', '/prisma']) {
      const res = await app.inject({ method: 'GET', url });
      expect(res.statusCode, `${url}: ${res.body}`).toBe(503);
      expect(res.json().code).toBe('DATABASE_UNAVAILABLE');
      expect(res.headers['retry-after']).toBe(String(DATABASE_RETRY_AFTER));
      expect(res.body).not.toContain('127.0.0.1');
    }
  });

  it('/readyz says the database is down without its address', async () => {
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toEqual({
      status: 'unavailable',
      database: 'down',
      detail: 'the database is unreachable',
    });
  });
});
