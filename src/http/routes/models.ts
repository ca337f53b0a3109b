// /v1/models: thin handlers over src/services/models.ts.
import type { Multipart } from '@fastify/multipart';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AppDeps } from '../../app.js';
import {
  deleteModel,
  getModel,
  listModels,
  type ModelDeps,
  registerModel,
  type UploadPart,
} from '../../services/models.js';
import { type ModelRecord, modelRepository } from '../../store/modelRepository.js';
import { multipartError } from '../multipart.js';
import { AppError } from '../problem.js';

/** The JSON form of a model (openapi.yaml: Model). */
export function presentModel(m: ModelRecord) {
  return {
    id: m.id,
    sha256: m.sha256,
    name: m.name,
    version: m.version,
    tags: m.tags,
    sizeBytes: m.sizeBytes,
    opset: m.opset,
    inputs: m.inputs,
    outputs: m.outputs,
    layers: m.layers,
    preprocessing: m.preprocessing,
    createdAt: m.createdAt.toISOString(),
  };
}

/** PostgreSQL text cannot hold U+0000; no control characters in filters. */
const NO_CONTROL = '^[^\\u0000-\\u001f\\u007f]*$';

// Any string: ids that are not UUIDs are simply not found (404), never a 500.
const IdParams = Type.Object({ id: Type.String() });

const ListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: NO_CONTROL })),
    tag: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: NO_CONTROL })),
  },
  { additionalProperties: false },
);

/** Adapts @fastify/multipart's parts to the service's framework-free UploadPart. */
async function* uploadParts(req: FastifyRequest): AsyncGenerator<UploadPart> {
  let iterator: AsyncIterableIterator<Multipart>;
  try {
    iterator = req.parts();
  } catch (err) {
    throw multipartError(err);
  }
  while (true) {
    let next: IteratorResult<Multipart>;
    try {
      next = await iterator.next();
    } catch (err) {
      throw multipartError(err);
    }
    if (next.done) return;
    const part = next.value;
    yield part.type === 'file'
      ? { type: 'file', fieldname: part.fieldname, filename: part.filename, stream: part.file }
      : { type: 'field', fieldname: part.fieldname, value: part.value, truncated: part.valueTruncated };
  }
}

export async function modelRoutes(app: FastifyInstance, deps: AppDeps) {
  const svc: ModelDeps = { repo: modelRepository(deps.db.prisma), blobs: deps.blobs, config: deps.config };

  app.post('/v1/models', async (req, reply) => {
    if (!req.isMultipart()) {
      throw new AppError(
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        'expected a multipart/form-data body with the model in a "file" part',
      );
    }
    const { model, created } = await registerModel(svc, uploadParts(req));
    return reply.status(created ? 201 : 200).send(presentModel(model));
  });

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/v1/models',
    { schema: { querystring: ListQuery } },
    async (req) => {
      const { limit, cursor, name, tag } = req.query;
      const page = await listModels(svc, { limit, cursor }, { name, tag });
      return { items: page.items.map(presentModel), nextCursor: page.nextCursor };
    },
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    '/v1/models/:id',
    { schema: { params: IdParams } },
    async (req) => presentModel(await getModel(svc, req.params.id)),
  );

  app.delete<{ Params: Static<typeof IdParams> }>(
    '/v1/models/:id',
    { config: { scope: 'admin' }, schema: { params: IdParams } },
    async (req, reply) => {
      await deleteModel(svc, req.params.id);
      return reply.status(204).send();
    },
  );
}
