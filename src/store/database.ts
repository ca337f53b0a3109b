// One pg pool and one Prisma client (over @prisma/adapter-pg) per process.
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';

export interface Database {
  pool: pg.Pool;
  prisma: PrismaClient;
  close(): Promise<void>;
}

export function openDatabase(url: string, opts: { max?: number } = {}): Database {
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10 });
  // An idle client that loses its connection (database restart) must not crash the process.
  pool.on('error', () => undefined);
  // Nor one that is checked out (pool.connect() for a transaction, here or in Prisma's adapter):
  // pg-pool listens for errors only while a client is idle, and pg emits 'error' on the client
  // besides rejecting its query, so without a listener of our own the process would exit. The
  // query's rejection reaches its caller; the broken client is dropped when it is released.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    pool,
    prisma,
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

const CONNECTION_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND']);
/**
 * Prisma's codes for the same: P1001 cannot reach the server, P1002 timed out reaching it, P1008
 * socket timeout (what the pg adapter makes of ETIMEDOUT), P1017 the server closed the connection.
 */
const PRISMA_CONNECTION_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1017']);

function isConnectionCode(code: unknown): boolean {
  if (typeof code !== 'string') return false;
  // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now, 08xxx connection exceptions
  return (
    /^(57P0[123]|08[0-9A-Z]{3})$/.test(code) ||
    CONNECTION_ERRNOS.has(code) ||
    PRISMA_CONNECTION_CODES.has(code)
  );
}

/**
 * Whether an error means the database could not be reached or dropped the connection (a restart,
 * a network failure) rather than a failed query: node-postgres / system error codes, PostgreSQL
 * SQLSTATEs 57P01-57P03 and class 08, and Prisma's connection codes. Wrapped errors count too:
 * `cause`, an AggregateError's `errors` (ECONNREFUSED on both ::1 and 127.0.0.1), and Prisma's
 * `meta.driverAdapterError`, whose `cause.originalCode` is the SQLSTATE (Prisma reports e.g. a
 * 57P01 as P2039 / P2010).
 */
export function isConnectionLoss(err: unknown, depth = 0): boolean {
  if (err === null || typeof err !== 'object' || depth > 4) return false;
  const e = err as {
    code?: unknown;
    originalCode?: unknown;
    cause?: unknown;
    errors?: unknown;
    meta?: { driverAdapterError?: unknown };
  };
  if (isConnectionCode(e.code) || isConnectionCode(e.originalCode)) return true;
  const inner = [e.cause, e.meta?.driverAdapterError, ...(Array.isArray(e.errors) ? e.errors : [])];
  return inner.some((x) => isConnectionLoss(x, depth + 1));
}

export type { PrismaClient };
