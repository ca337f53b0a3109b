// pg-boss (Postgres-backed queue; v10 is the last major that runs on Node 20) carries one job
// per run shard. It gives us durable delivery, retries with backoff and multi-instance
// locking (SKIP LOCKED); what it lacks, liveness of a job's worker, the janitor adds.

import type pg from 'pg';
import PgBoss from 'pg-boss';

export const QUEUE_SCHEMA = 'pgboss';
export const SHARD_QUEUE = 'run-shard';
export const FINALIZE_QUEUE = 'run-finalize';

export interface ShardJobData {
  runId: string;
  index: number;
}

export interface QueueOptions {
  retryLimit: number;
  retryDelaySeconds: number;
}

export async function startQueue(databaseUrl: string, opts: QueueOptions): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: databaseUrl,
    max: 4,
    schema: QUEUE_SCHEMA,
    // Jobs of a SIGKILLed worker are recovered by our heartbeat janitor within seconds; pg-boss
    // expiry is the last resort for a job that somehow escaped it.
    expireInSeconds: 60 * 60,
    maintenanceIntervalSeconds: 30,
    monitorStateIntervalSeconds: 10,
  });
  // Connection errors (a database restart) are retried by pg-boss; they must not crash us.
  boss.on('error', () => undefined);
  await boss.start();
  for (const name of [SHARD_QUEUE, FINALIZE_QUEUE]) {
    const options = {
      name,
      retryLimit: opts.retryLimit,
      retryDelay: opts.retryDelaySeconds,
      retryBackoff: true,
    };
    // createQueue keeps an existing queue's settings; a restart with another SHARD_RETRIES must
    // take effect (jobs copy them from their queue when inserted).
    await boss.createQueue(name, options);
    await boss.updateQueue(name, options);
  }
  return boss;
}

/** Runs a pg-boss call on our own transaction's client, so jobs and rows commit together. */
export function onClient(client: pg.PoolClient | pg.Pool): { db: PgBoss.Db } {
  return {
    db: {
      executeSql: (text: string, values: unknown[]) => client.query(text, values),
    },
  };
}

export function shardJob(runId: string, index: number, attempt: number): PgBoss.JobInsert<ShardJobData> {
  return {
    name: SHARD_QUEUE,
    data: { runId, index },
    // For tracing in pgboss.job; correctness comes from the idempotent claim in runLifecycle.
    singletonKey: `${runId}:${index}:${attempt}`,
  };
}
