// Turns every error into application/problem+json. A lost or refused database connection is a
// 503 DATABASE_UNAVAILABLE with Retry-After (the database restarts, the client comes back).
// Anything else not recognised is a 500, logged with the request id; tests assert that no input
// reaches that branch.
import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { isConnectionLoss } from '../store/database.js';
import { AppError, type Problem, problem } from './problem.js';

/** Seconds a client is told to wait when the database is unreachable. */
export const DATABASE_RETRY_AFTER = 5;

function fromFastifyError(err: FastifyError): Problem | null {
  if (err.validation) {
    const where = err.validationContext ?? 'request';
    const errors = err.validation.map((v) => ({
      path: `${where}${v.instancePath || ''}`,
      message: v.message ?? 'invalid',
      ...(v.params && 'additionalProperty' in v.params ? { property: v.params.additionalProperty } : {}),
    }));
    const first = errors[0];
    const detail = first
      ? `${first.path}: ${first.message}${first.property ? ` (${String(first.property)})` : ''}`
      : err.message;
    return problem(400, 'VALIDATION_FAILED', detail, { errors });
  }
  switch (err.code) {
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return problem(400, 'INVALID_JSON', err.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return problem(415, 'UNSUPPORTED_MEDIA_TYPE', err.message);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_PARTS_LIMIT':
    case 'FST_FILES_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return problem(413, 'PAYLOAD_TOO_LARGE', err.message);
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return problem(415, 'UNSUPPORTED_MEDIA_TYPE', 'expected a multipart/form-data body');
    case 'FST_PROTO_VIOLATION':
      return problem(400, 'VALIDATION_FAILED', err.message);
  }
  const status = err.statusCode;
  if (status && status >= 400 && status < 500) {
    return problem(status, err.code?.replace(/^FST_(ERR_)?/, '') || 'BAD_REQUEST', err.message);
  }
  return null;
}

export const errorHandlerPlugin = fp(async (app: FastifyInstance) => {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    let body: Problem | null = null;
    let retryAfter = (err as AppError).extra?.retryAfter;
    if (err instanceof AppError) body = err.toProblem();
    else if (isConnectionLoss(err)) {
      // The real error (with the database's address) goes to the log, not to the client.
      req.log.warn({ err }, 'database unavailable');
      retryAfter = DATABASE_RETRY_AFTER;
      body = problem(503, 'DATABASE_UNAVAILABLE', 'the database is unreachable; retry shortly', {
        retryAfter,
      });
    } else body = fromFastifyError(err);
    if (!body) {
      req.log.error({ err }, 'unhandled error');
      body = problem(500, 'INTERNAL', 'an internal error occurred; it has been logged', {
        requestId: req.id,
      });
    }
    if ((body.status === 429 || body.status === 503) && retryAfter !== undefined) {
      reply.header('retry-after', String(retryAfter));
    }
    return reply.status(body.status).type('application/problem+json').send(body);
  });

  app.setNotFoundHandler((req, reply) => {
    reply
      .status(404)
      .type('application/problem+json')
      .send(problem(404, 'ROUTE_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`));
  });
});
