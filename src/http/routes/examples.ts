// The examples strip: GET /v1/runs/{id}/examples (the samples whose prediction flips most, with
// image URLs) and GET /v1/datasets/{id}/images/{index} (one image as PNG, optionally transformed).
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../../app.js';
import type { ExampleResult, ExamplesResult } from '../../domain/examples.js';
import { type PointParams, pointKey } from '../../domain/sweep.js';
import {
  applyPoint,
  encodePng,
  parseTransformParam,
  type RunSweep,
  readSample,
  resolvePoint,
  TransformParamError,
} from '../../render/datasetImage.js';
import { getSucceededRun } from '../../services/runs.js';
import { datasetRepository } from '../../store/datasetRepository.js';
import { isUuid } from '../../store/ids.js';
import { runRepository } from '../../store/runRepository.js';
import { AppError, notFound } from '../problem.js';

const IdParams = Type.Object({ id: Type.String({ maxLength: 100 }) });
const ExamplesQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) },
  { additionalProperties: false },
);
const ImageParams = Type.Object({
  id: Type.String({ maxLength: 100 }),
  index: Type.String({ pattern: '^[0-9]{1,10}$' }),
});
const ImageQuery = Type.Object(
  {
    transform: Type.Optional(Type.String({ minLength: 1, maxLength: 2000 })),
    run: Type.Optional(Type.String({ format: 'uuid' })),
  },
  { additionalProperties: false },
);

function imageUrl(datasetId: string, index: number, runId?: string, params?: PointParams | null): string {
  const base = `/v1/datasets/${datasetId}/images/${index}`;
  if (!runId || !params) return base;
  return `${base}?run=${runId}&transform=${encodeURIComponent(pointKey(params))}`;
}

export async function exampleRoutes(app: FastifyInstance, deps: AppDeps) {
  const runs = runRepository(deps.db);
  const datasets = datasetRepository(deps.db.prisma);

  app.get(
    '/v1/runs/:id/examples',
    { schema: { params: IdParams, querystring: ExamplesQuery } },
    async (req) => {
      const { id } = req.params as Static<typeof IdParams>;
      const { limit } = req.query as Static<typeof ExamplesQuery>;
      const found = await getSucceededRun(runs, id, 'examples');
      const run = found.run;
      const results = (found.results ?? {}) as { samples?: number; examples?: ExamplesResult };
      const examples = results.examples;
      if (!examples || !Array.isArray(examples.items)) {
        throw new AppError(
          409,
          'EXAMPLES_UNAVAILABLE',
          `run ${id} has no recorded examples (it was evaluated before the engine recorded them)`,
        );
      }
      const items = examples.items.slice(0, limit ?? examples.items.length).map((e: ExampleResult) => ({
        ...e,
        image: imageUrl(run.datasetId, e.index),
        changed: e.changed.map((c) => ({
          ...c,
          key: c.params ? pointKey(c.params) : null,
          image: imageUrl(run.datasetId, e.index, run.id, c.params),
        })),
      }));
      return {
        runId: run.id,
        datasetId: run.datasetId,
        samples: results.samples ?? 0,
        points: examples.points,
        items,
      };
    },
  );

  app.get(
    '/v1/datasets/:id/images/:index',
    { schema: { params: ImageParams, querystring: ImageQuery } },
    async (req, reply) => {
      const { id, index: indexText } = req.params as Static<typeof ImageParams>;
      const q = req.query as Static<typeof ImageQuery>;
      const dataset = isUuid(id) ? await datasets.findById(id) : null;
      if (!dataset) throw notFound('dataset', id);
      const index = Number(indexText);
      if (index >= dataset.count) {
        throw new AppError(
          404,
          'NOT_FOUND',
          `dataset ${id} has ${dataset.count} images; there is no image ${index}`,
        );
      }
      let sweep: RunSweep | undefined;
      if (q.run) {
        const run = await runs.findById(q.run);
        if (!run) throw notFound('run', q.run);
        if (run.datasetId !== id) {
          throw new AppError(422, 'RUN_DATASET_MISMATCH', `run ${q.run} did not evaluate dataset ${id}`);
        }
        sweep = run.request as unknown as RunSweep;
      }
      let png: Buffer;
      let label: number;
      try {
        const params = q.transform ? parseTransformParam(q.transform) : {};
        const ops = resolvePoint(params, sweep);
        const sample = await readSample(deps.blobs.pathOf(dataset.blobSha256), index);
        label = sample.label;
        png = await encodePng(applyPoint(sample.image, ops, index, q.transform ? sweep : undefined));
      } catch (err) {
        if (err instanceof TransformParamError) throw new AppError(400, 'INVALID_TRANSFORM', err.message);
        throw err;
      }
      // A dataset never changes and transforms are deterministic: the bytes of a URL never change.
      return reply
        .type('image/png')
        .header('cache-control', 'private, max-age=86400, immutable')
        .header('x-sample-label', String(label))
        .send(png);
    },
  );
}
