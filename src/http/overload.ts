// Protection against overload, every refusal a problem+json with Retry-After:
// - per-key rate limits (@fastify/rate-limit): RATE_LIMIT_PER_MINUTE requests per API key (per
//   client IP on routes that need no key), then 429 RATE_LIMITED;
// - a cap on uploads processed at once (MAX_CONCURRENT_UPLOADS per process): the next one is
//   503 TOO_MANY_UPLOADS, since the server (not this client) is at capacity;
// - event-loop pressure (@fastify/under-pressure): while the mean event-loop delay is above
//   MAX_EVENT_LOOP_DELAY_MS, 503 OVERLOADED.
// Health routes and /metrics are exempt from all three: probes and scrapers must see the truth.
// Register after the auth plugin (the rate limit is keyed by the key it found) and before routes.
import rateLimit from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { AppError } from './problem.js';

const EXEMPT = new Set(['/healthz', '/readyz', '/metrics']);
/** Routes whose handlers receive uploads (bodies up to MAX_MODEL_BYTES / MAX_DATASET_BYTES). */
const UPLOAD_ROUTES = new Set(['POST /v1/models', 'POST /v1/datasets']);
/** Seconds a client is told to wait after 503 TOO_MANY_UPLOADS / OVERLOADED. */
const UPLOAD_RETRY_AFTER = 5;
const PRESSURE_RETRY_AFTER = 5;

const isExempt = (req: FastifyRequest) => EXEMPT.has(req.routeOptions.url ?? '');

export interface UploadGate {
  /** Uploads being processed now. */
  readonly active: number;
  readonly max: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    uploadGate: UploadGate;
  }
}

export const overloadPlugin = fp(async (app: FastifyInstance, opts: { config: Config['overload'] }) => {
  const { rateLimitPerMinute, maxConcurrentUploads, maxEventLoopDelayMs, pressureSampleMs } = opts.config;

  if (maxEventLoopDelayMs > 0) {
    await app.register(underPressure, {
      maxEventLoopDelay: maxEventLoopDelayMs,
      sampleInterval: pressureSampleMs,
      retryAfter: PRESSURE_RETRY_AFTER,
      pressureHandler: async (req: FastifyRequest, _reply: FastifyReply, type: string, value?: number) => {
        if (isExempt(req)) return;
        throw new AppError(
          503,
          'OVERLOADED',
          `the server is overloaded (${type}${value === undefined ? '' : ` ${Math.round(value)}`}); retry later`,
          { retryAfter: PRESSURE_RETRY_AFTER },
        );
      },
    });
  }

  if (rateLimitPerMinute > 0) {
    await app.register(rateLimit, {
      global: true,
      max: rateLimitPerMinute,
      timeWindow: 60_000,
      // Runs as a route-level onRequest hook, after the auth plugin's: the key is known by then.
      keyGenerator: (req: FastifyRequest) => (req.apiKey ? `key:${req.apiKey.id}` : `ip:${req.ip}`),
      allowList: (req: FastifyRequest) => isExempt(req),
      errorResponseBuilder: (req: FastifyRequest, ctx: { max: number; ttl: number }) =>
        new AppError(
          429,
          'RATE_LIMITED',
          `more than ${ctx.max} requests per minute ${req.apiKey ? 'with this API key' : 'from this address'}; retry in ${Math.ceil(ctx.ttl / 1000)} s`,
          { retryAfter: Math.max(1, Math.ceil(ctx.ttl / 1000)) },
        ),
    });
  }

  // Uploads: the handler itself is wrapped, so the slot is held exactly while the upload is
  // received and processed (also when the client goes away mid-upload and the handler fails).
  let active = 0;
  app.decorate('uploadGate', {
    get active() {
      return active;
    },
    max: maxConcurrentUploads,
  });
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.some((m) => UPLOAD_ROUTES.has(`${m} ${route.url}`))) return;
    const handler = route.handler as RouteHandlerMethod;
    route.handler = async function gatedUpload(this: FastifyInstance, req, reply) {
      if (active >= maxConcurrentUploads) {
        // The body is not read: close the connection rather than drain a large upload.
        reply.header('connection', 'close');
        throw new AppError(
          503,
          'TOO_MANY_UPLOADS',
          `${active} uploads are being processed (MAX_CONCURRENT_UPLOADS = ${maxConcurrentUploads}); retry later`,
          { retryAfter: UPLOAD_RETRY_AFTER },
        );
      }
      active++;
      try {
        return await handler.call(this, req, reply);
      } finally {
        active--;
      }
    };
  });
});
