// /v1/datasets: multipart upload (IDX or .npy pair, image-folder archive or npz), list, get, delete.
// Parts are streamed to temp files (never held in memory); the service does the rest.
import { rm } from 'node:fs/promises';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AppDeps } from '../../app.js';
import { DatasetService, type DatasetUpload, type UploadedPart } from '../../services/datasets.js';
import { BlobTooLargeError } from '../../store/blobStore.js';
import type { DatasetRecord } from '../../store/datasetRepository.js';
import { multipartError } from '../multipart.js';
import { AppError } from '../problem.js';

const ClassSchema = Type.Object({
  index: Type.Integer(),
  name: Type.String(),
  count: Type.Integer(),
});

export const DatasetSchema = Type.Object({
  id: Type.String(),
  sha256: Type.String(),
  name: Type.String(),
  format: Type.Union([Type.Literal('idx'), Type.Literal('zip'), Type.Literal('tar'), Type.Literal('npz')]),
  count: Type.Integer(),
  width: Type.Integer(),
  height: Type.Integer(),
  channels: Type.Integer(),
  dtype: Type.Union([Type.Literal('uint8'), Type.Literal('float32')]),
  classes: Type.Array(ClassSchema),
  blobSha256: Type.String(),
  sizeBytes: Type.Integer(),
  createdAt: Type.String(),
});

type DatasetJson = Static<typeof DatasetSchema>;

const IdParams = Type.Object({ id: Type.String({ maxLength: 100 }) });
const ListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);

export function datasetJson(d: DatasetRecord): DatasetJson {
  return {
    id: d.id,
    sha256: d.sha256,
    name: d.name,
    format: d.format,
    count: d.count,
    width: d.width,
    height: d.height,
    channels: d.channels,
    dtype: d.dtype,
    classes: d.classes,
    blobSha256: d.blobSha256,
    sizeBytes: d.sizeBytes,
    createdAt: d.createdAt.toISOString(),
  };
}

const FILE_FIELDS = ['file', 'images', 'labels'] as const;
type FileField = (typeof FILE_FIELDS)[number];
const MAX_CLASS_NAMES = 65_536;

const badRequest = (detail: string) => new AppError(400, 'VALIDATION_FAILED', detail);
// PostgreSQL text cannot hold U+0000; no control characters in names (as for models and runs).
// biome-ignore lint/suspicious/noControlCharactersInRegex: this is the check for them
const CONTROL = /[\u0000-\u001f\u007f]/;

function parseClassNames(raw: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw badRequest('classNames must be a JSON array of strings');
  }
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    value.length > MAX_CLASS_NAMES ||
    !value.every((v) => typeof v === 'string' && v.length >= 1 && v.length <= 200 && !CONTROL.test(v))
  ) {
    throw badRequest(
      `classNames must be a JSON array of 1 to ${MAX_CLASS_NAMES} non-empty strings of at most 200 characters, without control characters`,
    );
  }
  return value as string[];
}

/** Reads the multipart body: files to temp files (within MAX_DATASET_BYTES in total), fields parsed. */
async function receiveUpload(req: FastifyRequest, deps: AppDeps): Promise<DatasetUpload> {
  if (!req.isMultipart())
    throw new AppError(415, 'UNSUPPORTED_MEDIA_TYPE', 'expected a multipart/form-data body');
  const upload: DatasetUpload = {};
  const written: UploadedPart[] = [];
  const max = deps.config.limits.maxDatasetBytes;
  let used = 0;
  try {
    for await (const part of req.parts()) {
      if (part.type === 'file') {
        const field = part.fieldname as FileField;
        if (!FILE_FIELDS.includes(field)) {
          part.file.resume();
          throw badRequest(`unexpected file field "${part.fieldname}" (expected file, or images and labels)`);
        }
        if (upload[field]) {
          part.file.resume();
          throw badRequest(`field "${field}" given twice`);
        }
        let tmp: Awaited<ReturnType<typeof deps.blobs.writeTemp>>;
        try {
          tmp = await deps.blobs.writeTemp(part.file, max - used);
        } catch (err) {
          if (err instanceof BlobTooLargeError) {
            throw new AppError(
              413,
              'PAYLOAD_TOO_LARGE',
              `the dataset upload exceeds the limit of ${max} bytes (MAX_DATASET_BYTES)`,
            );
          }
          throw err;
        }
        const saved: UploadedPart = { ...tmp, filename: part.filename || undefined };
        written.push(saved);
        used += tmp.sizeBytes;
        upload[field] = saved;
        continue;
      }
      const value = typeof part.value === 'string' ? part.value : String(part.value ?? '');
      if (part.valueTruncated)
        throw new AppError(413, 'PAYLOAD_TOO_LARGE', `field "${part.fieldname}" is too long`);
      if (part.fieldname === 'name') {
        const name = value.trim();
        if (name.length < 1 || name.length > 200) throw badRequest('name must have 1 to 200 characters');
        if (CONTROL.test(name)) throw badRequest('name must not contain control characters');
        upload.name = name;
      } else if (part.fieldname === 'classNames') {
        upload.classNames = parseClassNames(value);
      } else if ((FILE_FIELDS as readonly string[]).includes(part.fieldname)) {
        throw badRequest(`"${part.fieldname}" must be a file part (with a filename)`);
      } else {
        throw badRequest(
          `unexpected field "${part.fieldname}" (expected file or images+labels, name, classNames)`,
        );
      }
    }
    const pair = upload.images && upload.labels;
    if (upload.file ? upload.images || upload.labels : !pair) {
      throw badRequest(
        'send either one "file" (zip, tar, tar.gz, npz) or both "images" and "labels" (IDX or .npy)',
      );
    }
    return upload;
  } catch (err) {
    await Promise.all(written.map((p) => rm(p.path, { force: true })));
    throw multipartError(err);
  }
}

export async function datasetRoutes(app: FastifyInstance, deps: AppDeps) {
  const service = new DatasetService(deps);

  app.post('/v1/datasets', async (req, reply) => {
    const upload = await receiveUpload(req, deps);
    const { dataset, created } = await service.register(upload);
    return reply.status(created ? 201 : 200).send(datasetJson(dataset));
  });

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/v1/datasets',
    { schema: { querystring: ListQuery } },
    async (req) => {
      const { limit, cursor, name } = req.query;
      const page = await service.list({ limit, cursor }, { name });
      return { items: page.items.map(datasetJson), nextCursor: page.nextCursor };
    },
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    '/v1/datasets/:id',
    { schema: { params: IdParams } },
    async (req) => datasetJson(await service.get(req.params.id)),
  );

  app.delete<{ Params: Static<typeof IdParams> }>(
    '/v1/datasets/:id',
    { schema: { params: IdParams }, config: { scope: 'admin' } },
    async (req, reply) => {
      await service.delete(req.params.id);
      return reply.status(204).send();
    },
  );
}
