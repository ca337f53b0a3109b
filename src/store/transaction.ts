// One transaction on a client of its own from the pool: the shape every multi-statement write
// here shares (shard claims and completions, requeues, run submission, the webhook outbox).
import type pg from 'pg';

/**
 * Runs `fn` between BEGIN and COMMIT on one client; ROLLBACK (whose own failure is ignored: the
 * connection may be the thing that broke) and rethrow when anything in it throws. The client goes
 * back to the pool either way.
 */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
