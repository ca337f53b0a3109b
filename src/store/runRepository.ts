// Runs as plain objects for the API. The Run document itself is written in one place, the SQL of
// src/store/runQueries.ts (the fast path of GET /v1/runs and GET /v1/runs/{id}); findById parses
// that same text, so every route that answers with a run (submit, cancel) or reads one (charts,
// examples) sees exactly what GET /v1/runs/{id} sends.
import type { Database } from './database.js';
import { findRunJson } from './runQueries.js';
import { inTransaction } from './transaction.js';

export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** The API's Run (openapi.yaml), as findRunJson writes it. */
export interface RunView {
  id: string;
  status: RunStatus;
  name: string | null;
  tags: string[];
  modelId: string;
  datasetId: string;
  progress: { done: number; total: number };
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: Record<string, unknown> | null;
  request: Record<string, unknown>;
  summary: Record<string, unknown> | null;
  timings: Record<string, unknown> | null;
  verdict: Record<string, unknown> | null;
}

export interface RunFilters {
  modelId?: string;
  datasetId?: string;
  status?: RunStatus;
  tag?: string;
  /** A verdict status, or NONE for runs without a verdict. */
  verdict?: string;
  createdAfter?: Date;
  createdBefore?: Date;
}

export function runRepository(db: Pick<Database, 'pool' | 'prisma'>) {
  const { pool, prisma } = db;
  return {
    /** The run (id: a UUID), or null when there is none. */
    async findById(id: string): Promise<RunView | null> {
      const json = await findRunJson(pool, id);
      return json === null ? null : (JSON.parse(json) as RunView);
    },

    async results(id: string): Promise<{ status: RunStatus; results: unknown } | null> {
      const row = await prisma.run.findUnique({ where: { id }, select: { status: true, results: true } });
      return row ? { status: row.status as RunStatus, results: row.results } : null;
    },

    /** queued/running -> canceled; returns false when the run had already finished. */
    async cancel(id: string): Promise<boolean> {
      const res = await prisma.run.updateMany({
        where: { id, status: { in: ['queued', 'running'] } },
        data: { status: 'canceled', finishedAt: new Date() },
      });
      return res.count > 0;
    },

    /**
     * Deletes a finished run and every row that belongs to it, in one transaction: its shards
     * (by cascade), its webhook events (the outbox has no foreign key to runs) and the deliveries made from
     * them. The run row is locked first, as shard completions do, so the status seen is the one
     * deleted. Returns the status found: null when there is no such run; a queued or running run
     * is left as it was. Other runs are untouched, including those whose stored verdict names
     * this one as their baseline (only by id, in JSON).
     */
    async deleteFinished(id: string): Promise<{ deleted: boolean; status: RunStatus | null }> {
      return inTransaction(pool, async (client) => {
        const { rows } = await client.query<{ status: RunStatus }>(
          'SELECT status FROM runs WHERE id = $1 FOR UPDATE',
          [id],
        );
        const status = rows[0]?.status ?? null;
        if (status === null || status === 'queued' || status === 'running') return { deleted: false, status };
        // Events first: a dispatcher that holds one (FOR UPDATE) is waited for, and the
        // deliveries it made are then visible to the next statement.
        const events = await client.query<{ id: string }>(
          'DELETE FROM webhook_events WHERE run_id = $1 RETURNING id',
          [id],
        );
        if (events.rows.length) {
          await client.query('DELETE FROM webhook_deliveries WHERE event_id = ANY($1::bigint[])', [
            events.rows.map((e) => e.id),
          ]);
        }
        // Its run_shards go with it (ON DELETE CASCADE).
        await client.query('DELETE FROM runs WHERE id = $1', [id]);
        return { deleted: true, status };
      });
    },
  };
}

export type RunRepository = ReturnType<typeof runRepository>;
