// GET /metrics in the Prometheus text format (prom-client), one registry per app.
//
// Per process (this API instance): HTTP latency by route and status, upload bytes received,
// uploads in progress, and Node's default process metrics.
// Cluster-wide, read from PostgreSQL at scrape time (so they count the work of every worker
// process, including `--role worker` ones, which serve no HTTP): runs by status, queue depth,
// shard durations and inferences done. Every API instance reports the same cluster figures:
// scrape one of them for those (or aggregate with max()).
//
// Public by default (scrapers rarely send credentials); METRICS_PUBLIC=false makes it need a key
// with the read scope.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type pg from 'pg';
import type PgBoss from 'pg-boss';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { FINALIZE_QUEUE, SHARD_QUEUE } from '../jobs/queue.js';
import type { BlobStore } from '../store/blobStore.js';
import { RUN_STATUSES } from '../store/runRepository.js';

export interface MetricsOptions {
  pool: pg.Pool;
  queue: PgBoss;
  blobs: BlobStore;
  public: boolean;
}

/** A shard finished this long before a scrape may still commit after it: look back this far. */
const SHARD_LOOKBACK_MS = 120_000;

export const metricsPlugin = fp(async (app: FastifyInstance, opts: MetricsOptions) => {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const httpDuration = new Histogram({
    name: 'invariance_http_request_duration_seconds',
    help: 'HTTP request latency, by method, route (the pattern, e.g. /v1/runs/:id) and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
    registers,
  });
  const uploadBytes = new Counter({
    name: 'invariance_upload_bytes_total',
    help: 'Bytes of uploaded files (models and datasets) received by this process',
    registers,
  });
  const uploadsActive = new Gauge({
    name: 'invariance_uploads_in_progress',
    help: 'Uploads being received or processed by this process (at most MAX_CONCURRENT_UPLOADS)',
    registers,
  });
  const runs = new Gauge({
    name: 'invariance_runs',
    help: 'Runs in the database, by status',
    labelNames: ['status'] as const,
    registers,
  });
  const queueDepth = new Gauge({
    name: 'invariance_queue_depth',
    help: 'Jobs waiting in a pg-boss queue (queued or waiting for a retry; not yet active)',
    labelNames: ['queue'] as const,
    registers,
  });
  const shardsRunning = new Gauge({
    name: 'invariance_shards_running',
    help: 'Run shards being executed by a worker now',
    registers,
  });
  const shardSeconds = new Histogram({
    name: 'invariance_shard_duration_seconds',
    help: 'Wall time of run shards, observed when they complete (every worker), since this process started',
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers,
  });
  const inferences = new Counter({
    name: 'invariance_inferences_total',
    help: 'Images evaluated by all runs (sum of run progress); rate() of it is images per second',
    registers,
  });
  const inferenceRate = new Gauge({
    name: 'invariance_inferences_per_second',
    help: 'Images evaluated per second by all workers, over the interval since the previous scrape',
    registers,
  });

  app.addHook('onResponse', async (req, reply) => {
    httpDuration.observe(
      {
        method: req.method,
        route: req.routeOptions.url ?? '<unmatched>',
        status_code: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });

  const startedAt = Date.now();
  let uploadBytesSeen = 0;
  let shardWatermark = startedAt;
  const shardsSeen = new Map<string, number>();
  let inferencesSeen: number | null = null;
  let lastRate: { at: number; total: number } | null = null;

  async function refreshFromDatabase(): Promise<void> {
    const { pool } = opts;
    const [byStatus, totals, finished] = await Promise.all([
      pool.query<{ status: string; n: number }>(
        'SELECT status, count(*)::int AS n FROM runs GROUP BY status',
      ),
      pool.query<{ done: string; running: number }>(
        `SELECT (SELECT COALESCE(sum(progress_done), 0) FROM runs)::text AS done,
                (SELECT count(*)::int FROM run_shards WHERE status = 'running') AS running`,
      ),
      pool.query<{ run_id: string; index: number; duration_ms: number; at: number }>(
        `SELECT run_id, index, duration_ms, (extract(epoch FROM finished_at) * 1000)::float8 AS at
           FROM run_shards
          WHERE status = 'done' AND duration_ms IS NOT NULL AND finished_at > $1`,
        [new Date(Math.max(startedAt, shardWatermark - SHARD_LOOKBACK_MS))],
      ),
    ]);
    const counts = new Map(byStatus.rows.map((r) => [r.status, r.n]));
    for (const status of RUN_STATUSES) runs.set({ status }, counts.get(status) ?? 0);
    shardsRunning.set(totals.rows[0]?.running ?? 0);

    for (const s of finished.rows) {
      const key = `${s.run_id}/${s.index}`;
      if (shardsSeen.has(key)) continue;
      shardsSeen.set(key, s.at);
      shardSeconds.observe(s.duration_ms / 1000);
      shardWatermark = Math.max(shardWatermark, s.at);
    }
    for (const [key, at] of shardsSeen)
      if (at < shardWatermark - 2 * SHARD_LOOKBACK_MS) shardsSeen.delete(key);

    // The sum of progress grows with every inference and drops when a run is deleted or a failed
    // shard's progress is discarded: the counter takes the increases since the previous reading
    // (not since the highest one, or it would stall after a deletion until the sum caught up).
    const total = Number(totals.rows[0]?.done ?? 0);
    if (inferencesSeen === null) inferences.inc(total);
    else if (total > inferencesSeen) inferences.inc(total - inferencesSeen);
    inferencesSeen = total;
    const now = Date.now();
    if (lastRate && now > lastRate.at) {
      inferenceRate.set(Math.max(0, total - lastRate.total) / ((now - lastRate.at) / 1000));
    }
    lastRate = { at: now, total };

    const sizes = await Promise.all(
      [SHARD_QUEUE, FINALIZE_QUEUE].map(async (queue) => ({
        queue,
        size: await opts.queue.getQueueSize(queue),
      })),
    );
    for (const { queue, size } of sizes) queueDepth.set({ queue }, size ?? 0);
  }

  app.get('/metrics', { config: { scope: opts.public ? 'public' : 'read' } }, async (req, reply) => {
    if (opts.blobs.receivedBytes > uploadBytesSeen) {
      uploadBytes.inc(opts.blobs.receivedBytes - uploadBytesSeen);
      uploadBytesSeen = opts.blobs.receivedBytes;
    }
    uploadsActive.set(app.hasDecorator('uploadGate') ? app.uploadGate.active : 0);
    try {
      await refreshFromDatabase();
    } catch (err) {
      // The process metrics are still worth serving; the cluster ones keep their last values.
      req.log.warn({ err }, 'metrics: the database could not be read');
    }
    return reply.type(registry.contentType).send(await registry.metrics());
  });
});
