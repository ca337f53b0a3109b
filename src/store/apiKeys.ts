// API keys: random secrets shown once, stored as sha256 hashes (the secrets are 256-bit random,
// so a fast hash is enough; there is nothing to brute-force).
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import type { PrismaClient } from '../generated/prisma/client.js';

export const SCOPES = ['read', 'write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface ApiKeyRecord {
  id: string;
  name: string;
  prefix: string;
  scopes: Scope[];
  createdAt: Date;
  lastUsedAt: Date | null;
}

export function generateKey(): string {
  return `inv_${randomBytes(32).toString('base64url')}`;
}

export function hashKey(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

function toRecord(row: {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  createdAt: Date;
  lastUsedAt: Date | null;
}): ApiKeyRecord {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes.filter((s): s is Scope => (SCOPES as readonly string[]).includes(s)),
    createdAt: row.createdAt,
    lastUsedAt: row.lastUsedAt,
  };
}

interface ApiKeyRow {
  id: string;
  name: string;
  prefix: string;
  hash: string;
  scopes: string[];
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** `pool`, when given, serves authenticate (the per-request lookup) without Prisma. */
/** How stale an API key's lastUsedAt may get (ms). */
const LAST_USED_RESOLUTION_MS = 60_000;

export function apiKeyRepository(prisma: PrismaClient, pool?: pg.Pool) {
  return {
    async create(
      name: string,
      scopes: Scope[],
      secret = generateKey(),
    ): Promise<{ key: string; record: ApiKeyRecord }> {
      const row = await prisma.apiKey.create({
        data: { id: randomUUID(), name, prefix: secret.slice(0, 8), hash: hashKey(secret), scopes },
      });
      return { key: secret, record: toRecord(row) };
    },

    /** Makes sure a key with this secret exists (the bootstrap admin key); idempotent. */
    /**
     * A bootstrap key (`secret` under `name`), created when unknown. A key revoked through the API
     * stays revoked: starting again with the same secret must not bring a leaked key back.
     * Returns whether the key is usable.
     */
    async ensureBootstrap(name: string, secret: string, scopes: Scope[]): Promise<'active' | 'revoked'> {
      const hash = hashKey(secret);
      const row = await prisma.apiKey.upsert({
        where: { hash },
        create: { id: randomUUID(), name, prefix: secret.slice(0, 8), hash, scopes },
        update: {},
      });
      return row.revokedAt ? 'revoked' : 'active';
    },

    /** Revokes the keys named `name` other than `secret` (earlier values of a rotated key). */
    async revokeOthersNamed(name: string, secret: string): Promise<number> {
      const { count } = await prisma.apiKey.updateMany({
        where: { name, hash: { not: hashKey(secret) }, revokedAt: null },
        data: { revokedAt: new Date() },
      });
      return count;
    },

    async authenticate(secret: string): Promise<ApiKeyRecord | null> {
      const hash = hashKey(secret);
      // Every request runs this: with the pool (as the auth plugin has it), one prepared
      // statement, a sixth of the CPU of Prisma's findUnique.
      const row = pool
        ? (
            await pool.query<ApiKeyRow>({
              name: 'api-key-by-hash',
              text: `SELECT id, name, prefix, hash, scopes, created_at AS "createdAt",
                            last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"
                       FROM api_keys WHERE hash = $1`,
              values: [hash],
            })
          ).rows[0]
        : await prisma.apiKey.findUnique({ where: { hash } });
      if (!row || row.revokedAt) return null;
      // The lookup is by hash; compare again in constant time so the path does not leak.
      if (!timingSafeEqual(Buffer.from(row.hash), Buffer.from(hash))) return null;
      // lastUsedAt to the minute: one write per key per minute, not per request, and not awaited
      // (a failed bookkeeping write must not fail the request).
      const last = row.lastUsedAt ? new Date(row.lastUsedAt).getTime() : 0;
      if (Date.now() - last >= LAST_USED_RESOLUTION_MS) {
        const touch = pool
          ? pool.query('UPDATE api_keys SET last_used_at = now() WHERE id = $1', [row.id])
          : prisma.apiKey.update({ where: { id: row.id }, data: { lastUsedAt: new Date() } });
        void Promise.resolve(touch).catch(() => undefined);
      }
      return toRecord(row);
    },

    async list(): Promise<ApiKeyRecord[]> {
      const rows = await prisma.apiKey.findMany({
        where: { revokedAt: null },
        orderBy: { createdAt: 'asc' },
      });
      return rows.map(toRecord);
    },

    async revoke(id: string): Promise<boolean> {
      const res = await prisma.apiKey.updateMany({
        where: { id, revokedAt: null },
        data: { revokedAt: new Date() },
      });
      return res.count > 0;
    },
  };
}

export type ApiKeyRepository = ReturnType<typeof apiKeyRepository>;
