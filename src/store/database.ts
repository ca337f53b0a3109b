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

export type { PrismaClient };
