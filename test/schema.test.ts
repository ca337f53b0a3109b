// schema.prisma and the SQL migrations must agree: migrate an empty database with our
// migrator, then create, read, update and delete a row of every model through Prisma.
import { createHash, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase } from '../src/store/database.js';
import { defaultMigrationsDir, isMigrated, migrate, readMigrations } from '../src/store/migrator.js';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';

let test: TestDatabase;
let db: Database;
beforeAll(async () => {
  test = await createTestDatabase();
  db = openDatabase(test.url);
});
afterAll(async () => {
  await db?.close();
  await test?.drop();
});

describe('migrator', () => {
  it('applies every migration once and records it as prisma migrate deploy does', async () => {
    expect(await isMigrated(db.pool).catch(() => false)).toBe(false);
    const migrations = await readMigrations();
    const applied = await migrate(db.pool);
    expect(applied).toEqual(migrations.map((m) => m.name));
    expect(await migrate(db.pool)).toEqual([]);
    expect(await isMigrated(db.pool)).toBe(true);

    const { rows } = await db.pool.query(
      'SELECT migration_name, checksum, finished_at, applied_steps_count, rolled_back_at FROM "_prisma_migrations" ORDER BY migration_name',
    );
    expect(rows).toHaveLength(migrations.length);
    for (const [i, row] of rows.entries()) {
      const file = await readFile(path.join(defaultMigrationsDir(), row.migration_name, 'migration.sql'));
      expect(row.migration_name).toBe(migrations[i].name);
      expect(row.checksum).toBe(createHash('sha256').update(file).digest('hex'));
      expect(row.finished_at).toBeInstanceOf(Date);
      expect(row.applied_steps_count).toBe(1);
      expect(row.rolled_back_at).toBeNull();
    }
  });

  it('is safe when several instances start at once', async () => {
    const other = await createTestDatabase();
    const dbs = [openDatabase(other.url), openDatabase(other.url), openDatabase(other.url)];
    try {
      const results = await Promise.all(dbs.map((d) => migrate(d.pool)));
      expect(results.flat()).toHaveLength((await readMigrations()).length);
      const { rows } = await dbs[0].pool.query('SELECT count(*)::int AS n FROM "_prisma_migrations"');
      expect(rows[0].n).toBe((await readMigrations()).length);
    } finally {
      await Promise.all(dbs.map((d) => d.close()));
      await other.drop();
    }
  });
});

/** model name -> { table, columns } from schema.prisma (scalar fields only). */
async function schemaTables(): Promise<Map<string, { table: string; columns: string[] }>> {
  const text = await readFile(path.join(defaultMigrationsDir(), '..', 'schema.prisma'), 'utf8');
  const out = new Map<string, { table: string; columns: string[] }>();
  for (const m of text.matchAll(/^model (\w+) \{([\s\S]*?)^\}/gm)) {
    const body = m[2];
    const table = /@@map\("([^"]+)"\)/.exec(body)?.[1] ?? m[1];
    const models = new Set([...text.matchAll(/^model (\w+)/gm)].map((x) => x[1]));
    const columns: string[] = [];
    for (const line of body.split('\n')) {
      const f = /^\s+(\w+)\s+(\w+)(\[\])?\??(.*)$/.exec(line);
      if (!f || models.has(f[2])) continue; // relation fields have no column
      columns.push(/@map\("([^"]+)"\)/.exec(f[4])?.[1] ?? f[1]);
    }
    out.set(m[1], { table, columns: columns.sort() });
  }
  return out;
}

describe('schema.prisma agrees with the migrated database', () => {
  it('has exactly the tables and columns that schema.prisma declares', async () => {
    const tables = await schemaTables();
    expect([...tables.keys()].sort()).toEqual([
      'ApiKey',
      'Dataset',
      'Model',
      'Run',
      'RunShard',
      'Webhook',
      'WebhookDelivery',
      'WebhookEvent',
    ]);
    for (const { table, columns } of tables.values()) {
      const { rows } = await db.pool.query<{ column_name: string }>(
        `SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1`,
        [table],
      );
      expect(rows.map((r) => r.column_name).sort(), table).toEqual(columns);
    }
  });

  it('creates, reads, updates and deletes a row of every model', async () => {
    const p = db.prisma;
    const model = await p.model.create({
      data: {
        id: randomUUID(),
        sha256: 'a'.repeat(64),
        name: 'm',
        version: '1',
        tags: ['x', 'y'],
        sizeBytes: 5_000_000_000n,
        opset: 13,
        inputs: [{ name: 'input' }],
        outputs: [],
        layers: [],
        preprocessing: { mean: [0], std: [1] },
      },
    });
    const dataset = await p.dataset.create({
      data: {
        id: randomUUID(),
        sha256: 'b'.repeat(64),
        name: 'd',
        format: 'idx',
        count: 3,
        width: 28,
        height: 28,
        channels: 1,
        dtype: 'uint8',
        classes: [{ index: 0, name: '0', count: 3 }],
        blobSha256: 'c'.repeat(64),
        sizeBytes: 123n,
      },
    });
    const run = await p.run.create({
      data: { id: randomUUID(), modelId: model.id, datasetId: dataset.id, tags: ['ci'], request: { a: 1 } },
    });
    const shard = await p.runShard.create({
      data: { runId: run.id, index: 0, start: 0, count: 3, partial: Buffer.from([1, 2, 3]) },
    });
    expect(shard.status).toBe('pending');
    const key = await p.apiKey.create({
      data: { id: randomUUID(), name: 'k', prefix: 'inv_abcd', hash: 'd'.repeat(64), scopes: ['read'] },
    });

    expect((await p.model.findUniqueOrThrow({ where: { id: model.id } })).sizeBytes).toBe(5_000_000_000n);
    expect((await p.dataset.findUniqueOrThrow({ where: { sha256: 'b'.repeat(64) } })).classes).toEqual([
      { index: 0, name: '0', count: 3 },
    ]);
    const readRun = await p.run.findUniqueOrThrow({
      where: { id: run.id },
      include: { model: true, dataset: true },
    });
    expect(readRun.status).toBe('queued');
    expect(readRun.progressDone).toBe(0);
    expect(readRun.model.name).toBe('m');
    expect((await p.apiKey.findUniqueOrThrow({ where: { hash: 'd'.repeat(64) } })).scopes).toEqual(['read']);

    await p.model.update({ where: { id: model.id }, data: { name: 'm2', tags: { push: 'z' } } });
    await p.dataset.update({ where: { id: dataset.id }, data: { name: 'd2' } });
    const now = new Date();
    await p.run.update({
      where: { id: run.id },
      data: {
        status: 'succeeded',
        progressDone: 3,
        progressTotal: 3,
        startedAt: now,
        finishedAt: now,
        summary: { ok: true },
        results: { samples: 3 },
        verdict: { status: 'PASS' },
        verdictStatus: 'PASS',
        error: { message: 'none' },
      },
    });
    await p.apiKey.update({ where: { id: key.id }, data: { revokedAt: now, lastUsedAt: now } });
    await p.runShard.update({
      where: { runId_index: { runId: run.id, index: 0 } },
      data: {
        status: 'done',
        attempts: 1,
        progress: 3,
        workerId: 'w1',
        heartbeatAt: now,
        startedAt: now,
        finishedAt: now,
        durationMs: 5,
        timings: { threadId: 1, inferenceMs: 4 },
        error: null,
      },
    });
    const readShard = await p.runShard.findUniqueOrThrow({
      where: { runId_index: { runId: run.id, index: 0 } },
    });
    expect(Buffer.from(readShard.partial ?? []).equals(Buffer.from([1, 2, 3]))).toBe(true);
    expect(readShard.status).toBe('done');
    expect(readShard.timings).toEqual({ threadId: 1, inferenceMs: 4 });
    await p.run.update({ where: { id: run.id }, data: { timings: { totalMs: 1 } } });
    expect((await p.model.findUniqueOrThrow({ where: { id: model.id } })).tags).toEqual(['x', 'y', 'z']);
    const updated = await p.run.findUniqueOrThrow({ where: { id: run.id } });
    expect(updated).toMatchObject({ status: 'succeeded', progressDone: 3, verdictStatus: 'PASS' });
    expect(updated.finishedAt?.getTime()).toBe(now.getTime());

    // A model or dataset referenced by a run cannot be deleted (ON DELETE RESTRICT).
    await expect(p.model.delete({ where: { id: model.id } })).rejects.toThrow();
    // Webhooks: the outbox trigger recorded the run's transition to succeeded.
    const events = await p.webhookEvent.findMany({ where: { runId: run.id } });
    expect(events.map((e) => e.type)).toEqual(['run.succeeded']);
    await p.webhookEvent.update({ where: { id: events[0].id }, data: { dispatchedAt: now } });
    const hook = await p.webhook.create({
      data: { id: randomUUID(), url: 'http://127.0.0.1/x', secret: 'secret-1', events: ['run.succeeded'] },
    });
    const delivery = await p.webhookDelivery.create({
      data: {
        id: randomUUID(),
        webhookId: hook.id,
        eventId: events[0].id,
        event: 'run.succeeded',
        body: '{}',
      },
    });
    await p.webhookDelivery.update({
      where: { id: delivery.id },
      data: {
        status: 'succeeded',
        attempts: 1,
        lastStatusCode: 204,
        lastError: null,
        lastDurationMs: 3,
        updatedAt: now,
        deliveredAt: now,
      },
    });
    await p.webhook.update({ where: { id: hook.id }, data: { deletedAt: now } });
    expect((await p.webhookDelivery.findUniqueOrThrow({ where: { id: delivery.id } })).status).toBe(
      'succeeded',
    );
    await p.webhook.delete({ where: { id: hook.id } }); // cascades to its deliveries
    expect(await p.webhookDelivery.count()).toBe(0);
    await p.webhookEvent.deleteMany({ where: { runId: run.id } });
    expect(await p.webhookEvent.count()).toBe(0);

    await p.run.delete({ where: { id: run.id } }); // cascades to its shards
    expect(await p.runShard.count()).toBe(0);
    await p.model.delete({ where: { id: model.id } });
    await p.dataset.delete({ where: { id: dataset.id } });
    await p.apiKey.delete({ where: { id: key.id } });
    expect(await p.model.count()).toBe(0);
    expect(await p.dataset.count()).toBe(0);
    expect(await p.run.count()).toBe(0);
    expect(await p.apiKey.count()).toBe(0);
  });
});
