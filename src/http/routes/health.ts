import type { FastifyInstance } from 'fastify';
import type { Database } from '../../store/database.js';
import { isMigrated } from '../../store/migrator.js';

export async function healthRoutes(app: FastifyInstance, opts: { db: Database }) {
  app.get('/healthz', { config: { scope: 'public' } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { config: { scope: 'public' } }, async (req, reply) => {
    try {
      const migrated = await isMigrated(opts.db.pool);
      if (!migrated) {
        return reply.status(503).send({ status: 'unavailable', database: 'up', migrations: 'pending' });
      }
      return { status: 'ready', database: 'up', migrations: 'applied' };
    } catch (err) {
      // The error names the database's address: it is logged, and the probe gets a generic detail.
      req.log.warn({ err }, 'readiness: the database is unreachable');
      return reply
        .status(503)
        .send({ status: 'unavailable', database: 'down', detail: 'the database is unreachable' });
    }
  });
}
