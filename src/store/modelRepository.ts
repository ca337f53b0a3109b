// Models table: plain records in and out (no Prisma types leak past this file).
import { randomUUID } from 'node:crypto';
import type { LayerInfo, TensorInfo } from '../engine/onnxModel.js';
import type { Prisma, PrismaClient, Model as Row } from '../generated/prisma/client.js';
import { blobReferenced, withBlobLock } from './blobLock.js';
import { isUuid } from './ids.js';
import { afterCursor, decodeCursor, pageOrder, toPage } from './pagination.js';

export type Layout = 'NCHW' | 'NHWC';

/** How images become the model's input: x = (pixel - mean[c]) / std[c], pixels in [0,1]. */
export interface Preprocessing {
  mean: number[];
  std: number[];
  layout: Layout;
  /** The output already is a probability vector (no softmax needed). */
  outputIsProbability: boolean;
}

export interface ModelRecord {
  id: string;
  sha256: string;
  name: string;
  version: string | null;
  tags: string[];
  sizeBytes: number;
  opset: number | null;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  layers: LayerInfo[];
  preprocessing: Preprocessing;
  createdAt: Date;
}

export type NewModel = Omit<ModelRecord, 'id' | 'createdAt'>;

export interface ModelFilter {
  /** Exact name. */
  name?: string;
  /** Models carrying this tag. */
  tag?: string;
}

export interface PageRequest {
  limit: number;
  cursor?: string;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

type Client = Prisma.TransactionClient;

function toRecord(row: Row): ModelRecord {
  return {
    id: row.id,
    sha256: row.sha256,
    name: row.name,
    version: row.version,
    tags: row.tags,
    sizeBytes: Number(row.sizeBytes),
    opset: row.opset,
    inputs: row.inputs as unknown as TensorInfo[],
    outputs: row.outputs as unknown as TensorInfo[],
    layers: row.layers as unknown as LayerInfo[],
    preprocessing: row.preprocessing as unknown as Preprocessing,
    createdAt: row.createdAt,
  };
}

const json = (value: unknown) => value as Prisma.InputJsonValue;

function queries(db: Client) {
  return {
    async create(model: NewModel): Promise<ModelRecord> {
      const row = await db.model.create({
        data: {
          id: randomUUID(),
          sha256: model.sha256,
          name: model.name,
          version: model.version,
          tags: model.tags,
          sizeBytes: BigInt(model.sizeBytes),
          opset: model.opset,
          inputs: json(model.inputs),
          outputs: json(model.outputs),
          layers: json(model.layers),
          preprocessing: json(model.preprocessing),
        },
      });
      return toRecord(row);
    },

    /** null for unknown ids and for strings that are not UUIDs. */
    async findById(id: string): Promise<ModelRecord | null> {
      if (!isUuid(id)) return null;
      const row = await db.model.findUnique({ where: { id } });
      return row ? toRecord(row) : null;
    },

    async findBySha256(sha256: string): Promise<ModelRecord | null> {
      const row = await db.model.findUnique({ where: { sha256 } });
      return row ? toRecord(row) : null;
    },

    /** Newest first, keyset-paginated. Throws AppError 400 INVALID_CURSOR for a foreign cursor. */
    async list(page: PageRequest, filter: ModelFilter = {}): Promise<Page<ModelRecord>> {
      const where: Prisma.ModelWhereInput = {
        ...(filter.name !== undefined ? { name: filter.name } : {}),
        ...(filter.tag !== undefined ? { tags: { has: filter.tag } } : {}),
        ...afterCursor(decodeCursor(page.cursor)),
      };
      const rows = await db.model.findMany({ where, orderBy: pageOrder, take: page.limit + 1 });
      return toPage(rows, page.limit, toRecord);
    },

    /** false when no such row. */
    async delete(id: string): Promise<boolean> {
      if (!isUuid(id)) return false;
      const { count } = await db.model.deleteMany({ where: { id } });
      return count > 0;
    },

    /** Whether any run references the model. */
    async isInUse(id: string): Promise<boolean> {
      if (!isUuid(id)) return false;
      return (await db.run.count({ where: { modelId: id } })) > 0;
    },

    /** Whether any row (model or dataset) still refers to the blob with this hash. */
    async blobReferenced(sha256: string): Promise<boolean> {
      return blobReferenced(db, sha256);
    },
  };
}

export type ModelQueries = ReturnType<typeof queries>;

export interface ModelRepository extends ModelQueries {
  /**
   * Runs `fn` in a transaction holding a Postgres advisory lock on the blob hash, so that
   * registering and deleting the same bytes (in any process) cannot interleave between the
   * row and the blob file.
   */
  withBlobLock<T>(sha256: string, fn: (tx: ModelQueries) => Promise<T>): Promise<T>;
}

export function modelRepository(prisma: PrismaClient): ModelRepository {
  return {
    ...queries(prisma),
    withBlobLock: (sha256, fn) => withBlobLock(prisma, sha256, queries, fn),
  };
}
