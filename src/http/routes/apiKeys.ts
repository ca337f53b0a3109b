import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../../app.js';
import { type ApiKeyRecord, apiKeyRepository, SCOPES } from '../../store/apiKeys.js';
import { isUuid } from '../../store/ids.js';
import { notFound } from '../problem.js';

const CreateBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\u0000-\\u001f]+$' }),
    scopes: Type.Array(Type.Union(SCOPES.map((s) => Type.Literal(s))), {
      minItems: 1,
      maxItems: 3,
      uniqueItems: true,
    }),
  },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ maxLength: 100 }) });

function present(k: ApiKeyRecord) {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    scopes: k.scopes,
    createdAt: k.createdAt.toISOString(),
    lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
  };
}

export async function apiKeyRoutes(app: FastifyInstance, deps: AppDeps) {
  const keys = apiKeyRepository(deps.db.prisma);

  app.post(
    '/v1/api-keys',
    { config: { scope: 'admin' }, schema: { body: CreateBody } },
    async (req, reply) => {
      const body = req.body as Static<typeof CreateBody>;
      const { key, record } = await keys.create(body.name, body.scopes);
      // The secret is shown this once; only its hash is stored.
      return reply.status(201).send({ ...present(record), key });
    },
  );

  app.get('/v1/api-keys', { config: { scope: 'admin' } }, async () => ({
    items: (await keys.list()).map(present),
  }));

  app.delete(
    '/v1/api-keys/:id',
    { config: { scope: 'admin' }, schema: { params: IdParams } },
    async (req, reply) => {
      const { id } = req.params as Static<typeof IdParams>;
      if (!isUuid(id) || !(await keys.revoke(id))) throw notFound('API key', id);
      if (req.apiKey?.id === id) req.log.warn({ keyId: id }, 'an API key revoked itself');
      return reply.status(204).send();
    },
  );
}
