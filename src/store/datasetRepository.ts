// Datasets table: plain records in and out (no Prisma types leak past this file).
import { randomUUID } from 'node:crypto';
import type { Prisma, PrismaClient, Dataset as Row } from '../generated/prisma/client.js';
import { blobReferenced, withBlobLock } from './blobLock.js';
import { isUuid } from './ids.js';
import { afterCursor, decodeCursor, pageOrder, toPage } from './pagination.js';

export type DatasetFormat = 'idx' | 'zip' | 'tar' | 'npz';
export type DatasetDtype = 'uint8' | 'float32';

export interface DatasetClass {
  index: number;
  name: string;
  count: number;
}

export interface DatasetRecord {
  id: string;
  /** Identity of the upload: sha256 of the uploaded file, or of "<imagesSha256>:<labelsSha256>" for IDX. */
  sha256: string;
  name: string;
  format: DatasetFormat;
  count: number;
  width: number;
  height: number;
  channels: number;
  dtype: DatasetDtype;
  classes: DatasetClass[];
  /** sha256 of the canonical file in the blob store. */
  blobSha256: string;
  /** Size of the canonical file in bytes. */
  sizeBytes: number;
  createdAt: Date;
}

export type NewDataset = Omit<DatasetRecord, 'id' | 'createdAt'>;

export interface DatasetFilter {
  /** Exact name. */
  name?: string;
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

function toRecord(row: Row): DatasetRecord {
  return {
    id: row.id,
    sha256: row.sha256.trim(),
    name: row.name,
    format: row.format as DatasetFormat,
    count: row.count,
    width: row.width,
    height: row.height,
    channels: row.channels,
    dtype: row.dtype as DatasetDtype,
    classes: row.classes as unknown as DatasetClass[],
    blobSha256: row.blobSha256.trim(),
    sizeBytes: Number(row.sizeBytes),
    createdAt: row.createdAt,
  };
}

function queries(db: Client) {
  return {
    async create(dataset: NewDataset): Promise<DatasetRecord> {
      const row = await db.dataset.create({
        data: {
          id: randomUUID(),
          sha256: dataset.sha256,
          name: dataset.name,
          format: dataset.format,
          count: dataset.count,
          width: dataset.width,
          height: dataset.height,
          channels: dataset.channels,
          dtype: dataset.dtype,
          classes: dataset.classes as unknown as Prisma.InputJsonValue,
          blobSha256: dataset.blobSha256,
          sizeBytes: BigInt(dataset.sizeBytes),
        },
      });
      return toRecord(row);
    },

    /** null for unknown ids and for strings that are not UUIDs. */
    async findById(id: string): Promise<DatasetRecord | null> {
      if (!isUuid(id)) return null;
      const row = await db.dataset.findUnique({ where: { id } });
      return row ? toRecord(row) : null;
    },

    async findBySha256(sha256: string): Promise<DatasetRecord | null> {
      const row = await db.dataset.findUnique({ where: { sha256 } });
      return row ? toRecord(row) : null;
    },

    /** Newest first, keyset-paginated. Throws AppError 400 INVALID_CURSOR for a foreign cursor. */
    async list(page: PageRequest, filter: DatasetFilter = {}): Promise<Page<DatasetRecord>> {
      const where: Prisma.DatasetWhereInput = {
        ...(filter.name !== undefined ? { name: filter.name } : {}),
        ...afterCursor(decodeCursor(page.cursor)),
      };
      const rows = await db.dataset.findMany({ where, orderBy: pageOrder, take: page.limit + 1 });
      return toPage(rows, page.limit, toRecord);
    },

    /** false when no such row. */
    async delete(id: string): Promise<boolean> {
      if (!isUuid(id)) return false;
      const { count } = await db.dataset.deleteMany({ where: { id } });
      return count > 0;
    },

    /** Whether any run references the dataset. */
    async isInUse(id: string): Promise<boolean> {
      if (!isUuid(id)) return false;
      return (await db.run.count({ where: { datasetId: id } })) > 0;
    },

    /** Whether any row (dataset or model) still refers to the blob with this hash. */
    async blobReferenced(sha256: string): Promise<boolean> {
      return blobReferenced(db, sha256);
    },
  };
}

export type DatasetQueries = ReturnType<typeof queries>;

export interface DatasetRepository extends DatasetQueries {
  /**
   * Runs `fn` in a transaction holding a Postgres advisory lock on the blob hash (the same lock
   * the models repository takes), so registering and deleting datasets that share a canonical
   * blob cannot interleave between the row and the blob file.
   */
  withBlobLock<T>(sha256: string, fn: (tx: DatasetQueries) => Promise<T>): Promise<T>;
}

export function datasetRepository(prisma: PrismaClient): DatasetRepository {
  return {
    ...queries(prisma),
    withBlobLock: (sha256, fn) => withBlobLock(prisma, sha256, queries, fn),
  };
}
