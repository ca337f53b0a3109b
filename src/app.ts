// buildApp: plugins, then routes. The server and the tests both use it; tests drive it with
// app.inject against a real database.
import multipart from '@fastify/multipart';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type PgBoss from 'pg-boss';
import type { Config } from './config.js';
import { authPlugin } from './http/auth.js';
import { errorHandlerPlugin } from './http/errorHandler.js';
import { installJsonBodyParser } from './http/jsonBody.js';
import { metricsPlugin } from './http/metrics.js';
import { overloadPlugin } from './http/overload.js';
import { problem } from './http/problem.js';
import { apiKeyRoutes } from './http/routes/apiKeys.js';
import { chartRoutes } from './http/routes/charts.js';
import { dashboardRoutes } from './http/routes/dashboard.js';
import { datasetRoutes } from './http/routes/datasets.js';
import { exampleRoutes } from './http/routes/examples.js';
import { healthRoutes } from './http/routes/health.js';
import { modelRoutes } from './http/routes/models.js';
import { openapiRoutes } from './http/routes/openapi.js';
import { runRoutes } from './http/routes/runs.js';
import { webhookRoutes } from './http/routes/webhooks.js';
import { installValidators } from './http/validation.js';
import { apiKeyRepository } from './store/apiKeys.js';
import type { BlobStore } from './store/blobStore.js';
import type { Database } from './store/database.js';

declare module 'fastify' {
  interface FastifyInstance {
    routeList: ReadonlyArray<{ method: string; url: string }>;
  }
}

export interface AppDeps {
  config: Config;
  db: Database;
  blobs: BlobStore;
  /** The job queue; the API enqueues run shards on it. */
  queue: PgBoss;
}

export async function buildApp(
  deps: AppDeps,
  opts: { logger?: boolean | object } = {},
): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logger ?? { level: deps.config.logLevel },
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.-]{1,100}$/.test(given) ? given : crypto.randomUUID();
    },
    requestIdHeader: false,
    // Errors Fastify raises before routing (bad URL encoding, over-long params) are problems too.
    frameworkErrors: (err, _req, reply) => {
      const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
      const code = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'URI_TOO_LONG' : 'BAD_URL';
      (reply as FastifyReply)
        .status(status)
        .type('application/problem+json')
        .send(problem(status, code, err.message));
    },
    bodyLimit: 1024 * 1024,
    trustProxy: deps.config.trustProxy,
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Every route as registered, for the contract test that checks openapi.yaml covers them all.
  const routeList: Array<{ method: string; url: string }> = [];
  app.addHook('onRoute', (r) => {
    for (const method of Array.isArray(r.method) ? r.method : [r.method])
      routeList.push({ method, url: r.url });
  });
  app.decorate('routeList', routeList);

  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  installValidators(app);
  // The API takes JSON and multipart only; Fastify's default text/plain parser would turn a text
  // body into a confusing validation error instead of a 415.
  app.removeContentTypeParser('text/plain');
  installJsonBodyParser(app);
  await app.register(errorHandlerPlugin);
  await app.register(authPlugin, {
    keys: apiKeyRepository(deps.db.prisma, deps.db.pool),
    // Invalid keys are limited per address here: they never reach the per-key limiter below.
    failuresPerMinute: deps.config.overload.authFailuresPerMinute,
  });
  // After auth (rate limits are per key), before the routes it guards and measures.
  await app.register(overloadPlugin, { config: deps.config.overload });
  await app.register(metricsPlugin, {
    pool: deps.db.pool,
    queue: deps.queue,
    blobs: deps.blobs,
    public: deps.config.metricsPublic,
  });
  await app.register(multipart, {
    limits: {
      fileSize: Math.max(deps.config.limits.maxModelBytes, deps.config.limits.maxDatasetBytes),
      files: 2,
      fields: 20,
      fieldSize: 1024 * 1024,
      parts: 30,
    },
  });

  await app.register(healthRoutes, { db: deps.db });
  await app.register(openapiRoutes);
  await app.register(modelRoutes, deps);
  await app.register(datasetRoutes, deps);
  await app.register(runRoutes, deps);
  await app.register(apiKeyRoutes, deps);
  await app.register(webhookRoutes, deps);
  await app.register(dashboardRoutes);
  await app.register(chartRoutes, deps);
  await app.register(exampleRoutes, deps);
  return app;
}
