// The real app over a real, fresh database and a temp DATA_DIR, for app.inject tests.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type PgBoss from 'pg-boss';
import { buildApp } from '../../src/app.js';
import { type Config, loadConfig } from '../../src/config.js';
import { startQueue } from '../../src/jobs/queue.js';
import { startWebhooks } from '../../src/jobs/webhooks.js';
import { startWorkers, type Workers } from '../../src/jobs/workers.js';
import { apiKeyRepository } from '../../src/store/apiKeys.js';
import { BlobStore } from '../../src/store/blobStore.js';
import type { Database } from '../../src/store/database.js';
import { createMigratedDatabase, type TestDatabase } from './database.js';

export interface TestApp {
  app: FastifyInstance;
  db: Database;
  database: TestDatabase;
  blobs: BlobStore;
  config: Config;
  dataDir: string;
  adminKey: string;
  queue: PgBoss;
  /** Present when created with { workers: true }. */
  workers: Workers | null;
  /** Authorization header for the admin key. */
  auth: { authorization: string };
  close(): Promise<void>;
}

export async function createTestApp(
  overrides: Partial<Config> = {},
  opts: { workers?: boolean; webhooks?: boolean; env?: Record<string, string> } = {},
): Promise<TestApp> {
  const { test, db } = await createMigratedDatabase();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'invariance-test-data-'));
  const config = loadConfig(
    {
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
      // Tests poll fast with one key, and two test files share two cores: a heavy moment must
      // not turn into a 429 or a 503 elsewhere. test/overload.test.ts turns both on.
      RATE_LIMIT_PER_MINUTE: '1000000',
      MAX_EVENT_LOOP_DELAY_MS: '0',
      ...opts.env,
    },
    overrides,
  );
  const blobs = new BlobStore(dataDir);
  await blobs.init();
  const { key } = await apiKeyRepository(db.prisma).create('test-admin', ['admin']);
  const queue = await startQueue(test.url, { retryLimit: config.shardRetries, retryDelaySeconds: 1 });
  const workers = opts.workers
    ? await startWorkers(config, { db, blobs, queue, log: () => undefined })
    : null;
  const webhooks = opts.webhooks ? await startWebhooks(db.pool, queue, config.webhooks) : null;
  const app = await buildApp({ config, db, blobs, queue }, { logger: false });
  await app.ready();
  return {
    app,
    db,
    database: test,
    blobs,
    config,
    dataDir,
    adminKey: key,
    queue,
    workers,
    auth: { authorization: `Bearer ${key}` },
    async close() {
      await app.close();
      await webhooks?.stop();
      await workers?.stop();
      await queue.stop({ graceful: false, wait: true, close: true });
      await db.close();
      await test.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
