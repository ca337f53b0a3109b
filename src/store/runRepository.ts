// Runs as plain objects for the API: the row, its progress, and (on demand) its results.
import type { PrismaClient } from '../generated/prisma/client.js';
import { afterCursor, type CursorKey, type Direction, pageOrderFor, toPage } from './pagination.js';

export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

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

interface RunRow {
  id: string;
  status: string;
  name: string | null;
  tags: string[];
  modelId: string;
  datasetId: string;
  progressDone: number;
  progressTotal: number;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  error: unknown;
  request: unknown;
  summary: unknown;
  timings: unknown;
  verdict: unknown;
}

const asObject = (v: unknown) => (v && typeof v === 'object' ? (v as Record<string, unknown>) : null);

export function toRunView(row: RunRow): RunView {
  return {
    id: row.id,
    status: row.status as RunStatus,
    name: row.name,
    tags: row.tags,
    modelId: row.modelId,
    datasetId: row.datasetId,
    progress: { done: row.progressDone, total: row.progressTotal },
    createdAt: row.createdAt.toISOString(),
    startedAt: row.startedAt?.toISOString() ?? null,
    finishedAt: row.finishedAt?.toISOString() ?? null,
    error: asObject(row.error),
    request: asObject(row.request) ?? {},
    summary: asObject(row.summary),
    timings: asObject(row.timings),
    verdict: asObject(row.verdict),
  };
}

const VIEW_SELECT = {
  id: true,
  status: true,
  name: true,
  tags: true,
  modelId: true,
  datasetId: true,
  progressDone: true,
  progressTotal: true,
  createdAt: true,
  startedAt: true,
  finishedAt: true,
  error: true,
  request: true,
  summary: true,
  timings: true,
  verdict: true,
} as const;

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

export function runRepository(prisma: PrismaClient) {
  return {
    async findById(id: string): Promise<RunView | null> {
      const row = await prisma.run.findUnique({ where: { id }, select: VIEW_SELECT });
      return row ? toRunView(row) : null;
    },

    async results(id: string): Promise<{ status: RunStatus; results: unknown } | null> {
      const row = await prisma.run.findUnique({ where: { id }, select: { status: true, results: true } });
      return row ? { status: row.status as RunStatus, results: row.results } : null;
    },

    async list(page: { limit: number; cursor: CursorKey | null; direction: Direction }, f: RunFilters) {
      const rows = await prisma.run.findMany({
        where: {
          AND: [
            afterCursor(page.cursor, page.direction),
            f.modelId ? { modelId: f.modelId } : {},
            f.datasetId ? { datasetId: f.datasetId } : {},
            f.status ? { status: f.status } : {},
            f.tag ? { tags: { has: f.tag } } : {},
            f.verdict ? { verdictStatus: f.verdict === 'NONE' ? null : f.verdict } : {},
            f.createdAfter ? { createdAt: { gte: f.createdAfter } } : {},
            f.createdBefore ? { createdAt: { lt: f.createdBefore } } : {},
          ],
        },
        orderBy: pageOrderFor(page.direction),
        take: page.limit + 1,
        select: VIEW_SELECT,
      });
      return toPage(rows, page.limit, toRunView);
    },

    /** queued/running -> canceled; returns false when the run had already finished. */
    async cancel(id: string): Promise<boolean> {
      const res = await prisma.run.updateMany({
        where: { id, status: { in: ['queued', 'running'] } },
        data: { status: 'canceled', finishedAt: new Date() },
      });
      return res.count > 0;
    },
  };
}

export type RunRepository = ReturnType<typeof runRepository>;
