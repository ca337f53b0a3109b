// The contract: openapi.yaml at the repository root, served as written (YAML and JSON) and
// rendered by Swagger UI at /docs from assets inside the package (no CDN).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { parse } from 'yaml';

export const OPENAPI_PATH = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'openapi.yaml',
);

export function loadOpenApi(): { yaml: string; document: Record<string, unknown> } {
  const yaml = readFileSync(OPENAPI_PATH, 'utf8');
  return { yaml, document: parse(yaml) as Record<string, unknown> };
}

export async function openapiRoutes(app: FastifyInstance) {
  const { yaml, document } = loadOpenApi();
  // Our own file; @fastify/swagger's typings want one specific OpenAPI version's type.
  await app.register(swagger, { mode: 'static', specification: { document: document as never } });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true } });
  app.get('/openapi.yaml', { config: { scope: 'public' } }, async (_req, reply) =>
    reply.type('application/yaml').send(yaml),
  );
  app.get('/openapi.json', { config: { scope: 'public' } }, async () => document);
}
