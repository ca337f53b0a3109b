// Webhooks. A trigger on `runs` records each subscribable transition in `webhook_events`
// (an outbox, written in the transaction that makes the transition). The dispatcher turns
// each event into one delivery per subscribed webhook, with its body fixed at that moment so
// every retry sends (and signs) the same bytes, and queues a pg-boss job per delivery; the
// queue retries failed deliveries with exponential backoff.
import { createHmac, randomUUID } from 'node:crypto';
import type pg from 'pg';
import type PgBoss from 'pg-boss';
import { inTransaction } from '../store/transaction.js';
import { onClient } from './queue.js';

export const WEBHOOK_EVENTS = ['run.succeeded', 'run.failed', 'run.canceled', 'verdict.failed'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];
export const DELIVERY_QUEUE = 'webhook-delivery';

export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

export interface WebhookOptions {
  retryLimit: number;
  retryDelaySeconds: number;
  timeoutMs: number;
  pollMs: number;
  /** Deliveries in flight at once (one pg-boss worker each), so a slow receiver holds up no other. */
  concurrency: number;
}

interface EventRow {
  id: string;
  type: string;
  run_id: string;
  created_at: Date;
}

/** The payload of an event: the run as the API shows it, minus the bulky results. */
async function eventBody(client: pg.PoolClient, event: EventRow, deliveryId: string): Promise<string> {
  const { rows } = await client.query(
    `SELECT r.id, r.status, r.name, r.tags, r.model_id, m.name AS model_name, m.version AS model_version,
            r.dataset_id, d.name AS dataset_name, r.summary, r.verdict, r.error, r.timings,
            r.created_at, r.started_at, r.finished_at
       FROM runs r JOIN models m ON m.id = r.model_id JOIN datasets d ON d.id = r.dataset_id
      WHERE r.id = $1`,
    [event.run_id],
  );
  const r = rows[0];
  return JSON.stringify({
    id: deliveryId,
    event: event.type,
    createdAt: event.created_at.toISOString(),
    run: r
      ? {
          id: r.id,
          status: r.status,
          name: r.name,
          tags: r.tags,
          model: { id: r.model_id, name: r.model_name, version: r.model_version },
          dataset: { id: r.dataset_id, name: r.dataset_name },
          summary: r.summary,
          verdict: r.verdict,
          error: r.error,
          timings: r.timings,
          createdAt: r.created_at?.toISOString() ?? null,
          startedAt: r.started_at?.toISOString() ?? null,
          finishedAt: r.finished_at?.toISOString() ?? null,
          links: { self: `/v1/runs/${r.id}`, results: `/v1/runs/${r.id}/results` },
        }
      : { id: event.run_id },
  });
}

/** Turns pending events into deliveries and queue jobs; returns how many events it handled. */
export async function dispatchWebhookEvents(
  pool: pg.Pool,
  boss: PgBoss,
  opts: WebhookOptions,
): Promise<number> {
  return inTransaction(pool, async (client) => {
    const { rows: events } = await client.query<EventRow>(
      `SELECT id, type, run_id, created_at FROM webhook_events
        WHERE dispatched_at IS NULL ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED`,
    );
    if (events.length === 0) return 0;
    const { rows: hooks } = await client.query<{ id: string; events: string[] }>(
      'SELECT id, events FROM webhooks WHERE deleted_at IS NULL',
    );
    const jobs: PgBoss.JobInsert[] = [];
    for (const event of events) {
      for (const hook of hooks.filter((h) => h.events.includes(event.type))) {
        const id = randomUUID();
        const body = await eventBody(client, event, id);
        await client.query(
          `INSERT INTO webhook_deliveries (id, webhook_id, event_id, event, body) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (webhook_id, event_id) DO NOTHING`,
          [id, hook.id, event.id, event.type, body],
        );
        jobs.push({
          name: DELIVERY_QUEUE,
          data: { deliveryId: id },
          retryLimit: opts.retryLimit,
          retryDelay: opts.retryDelaySeconds,
          retryBackoff: true,
        });
      }
    }
    if (jobs.length) await boss.insert(jobs, onClient(client));
    await client.query('UPDATE webhook_events SET dispatched_at = now() WHERE id = ANY($1::bigint[])', [
      events.map((e) => e.id),
    ]);
    return events.length;
  });
}

/** One delivery attempt; throws (so the queue retries) unless the receiver answered 2xx. */
export async function deliver(
  pool: pg.Pool,
  job: PgBoss.JobWithMetadata<{ deliveryId: string }>,
  opts: WebhookOptions,
): Promise<void> {
  const { rows } = await pool.query<{
    id: string;
    url: string;
    secret: string;
    body: string;
    event: string;
    status: string;
  }>(
    `SELECT d.id, w.url, w.secret, d.body, d.event, d.status
       FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
      WHERE d.id = $1 AND w.deleted_at IS NULL`,
    [job.data.deliveryId],
  );
  const d = rows[0];
  if (!d || d.status === 'succeeded') return;
  const started = Date.now();
  let statusCode: number | null = null;
  let error: string | null = null;
  try {
    const res = await fetch(d.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'invariance-webhooks/1',
        'x-invariance-event': d.event,
        'x-invariance-delivery': d.id,
        'x-invariance-signature': signature(d.secret, d.body),
      },
      body: d.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
    statusCode = res.status;
    await res.body?.cancel().catch(() => undefined);
    if (res.status < 200 || res.status >= 300) error = `receiver answered HTTP ${res.status}`;
  } catch (err) {
    error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  }
  const lastAttempt = job.retryCount >= job.retryLimit;
  await pool.query(
    `UPDATE webhook_deliveries
        SET attempts = attempts + 1, last_status_code = $2, last_error = $3, last_duration_ms = $4, updated_at = now(),
            status = CASE WHEN $3::text IS NULL THEN 'succeeded' WHEN $5 THEN 'failed' ELSE 'retrying' END,
            delivered_at = CASE WHEN $3::text IS NULL THEN now() ELSE delivered_at END
      WHERE id = $1`,
    [d.id, statusCode, error, Date.now() - started, lastAttempt],
  );
  if (error) throw new Error(error);
}

export interface WebhookRuntime {
  stop(): Promise<void>;
}

export async function startWebhooks(
  pool: pg.Pool,
  boss: PgBoss,
  opts: WebhookOptions,
): Promise<WebhookRuntime> {
  await boss.createQueue(DELIVERY_QUEUE, {
    name: DELIVERY_QUEUE,
    retryLimit: opts.retryLimit,
    retryDelay: opts.retryDelaySeconds,
    retryBackoff: true,
  });
  // pg-boss 10's work() has no teamSize: each call is one independent poller that fetches one
  // job, awaits it, then fetches the next. Several of them deliver in parallel, each job still
  // completed or failed (and so retried with backoff) on its own.
  for (let i = 0; i < Math.max(1, opts.concurrency); i++) {
    await boss.work<{ deliveryId: string }>(
      DELIVERY_QUEUE,
      { includeMetadata: true, batchSize: 1, pollingIntervalSeconds: 0.5 },
      async ([job]) => deliver(pool, job, opts),
    );
  }
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    dispatchWebhookEvents(pool, boss, opts)
      .catch(() => undefined) // a database hiccup: the next tick tries again
      .finally(() => {
        busy = false;
      });
  }, opts.pollMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await boss.offWork(DELIVERY_QUEUE).catch(() => undefined);
    },
  };
}
