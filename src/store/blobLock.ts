// Models and datasets share the blob store: a blob file is removed only when no row refers to it,
// and registering or deleting rows for the same blob must not interleave with that check, in any
// process. Both repositories run such work under one Postgres advisory lock per blob hash.
import { Prisma, type PrismaClient } from '../generated/prisma/client.js';

export type Client = PrismaClient | Prisma.TransactionClient;

/** Runs `fn` with queries bound to a transaction that holds the blob's advisory lock. */
export function withBlobLock<Q, T>(
  prisma: PrismaClient,
  sha256: string,
  queries: (db: Client) => Q,
  fn: (tx: Q) => Promise<T>,
): Promise<T> {
  return prisma.$transaction(
    async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`blob:${sha256}`}, 0))`;
      return fn(queries(tx));
    },
    { timeout: 60_000, maxWait: 60_000 },
  );
}

/** Whether any model (its file) or dataset (its canonical file) still refers to this blob. */
export async function blobReferenced(db: Client, sha256: string): Promise<boolean> {
  const [models, datasets] = await Promise.all([
    db.model.count({ where: { sha256 } }),
    db.dataset.count({ where: { blobSha256: sha256 } }),
  ]);
  return models + datasets > 0;
}

/** A unique-constraint (P2002) or foreign-key (P2003) violation from Prisma. */
export function isConstraintViolation(err: unknown, code: 'P2002' | 'P2003'): boolean {
  return err instanceof Prisma.PrismaClientKnownRequestError && err.code === code;
}
