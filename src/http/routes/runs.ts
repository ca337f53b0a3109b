import path from 'node:path';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../../app.js';
import type { RunRequest } from '../../domain/runSpec.js';
import { cancelRun, deleteRun, getResults, submitRun } from '../../services/runs.js';
import { compareRuns, evaluateVerdict } from '../../services/verdicts.js';
import { isUuid } from '../../store/ids.js';
import { decodeCursor } from '../../store/pagination.js';
import { findRunJson, listRunsJson } from '../../store/runQueries.js';
import { RUN_STATUSES, runRepository } from '../../store/runRepository.js';
import { notFound } from '../problem.js';

// PostgreSQL text and jsonb cannot hold U+0000: no control characters in names and tags (as for
// models), so such input is a 400, never a database error.
const NO_CONTROL = '^[^\\u0000-\\u001f\\u007f]*$';
const Name = Type.String({ minLength: 1, maxLength: 200, pattern: NO_CONTROL });
const Tag = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[^,\\s\\u0000-\\u001f\\u007f][^,\\u0000-\\u001f\\u007f]*$',
});
const Num = Type.Number();

const Gates = Type.Array(Type.Object({}, { additionalProperties: true }), { maxItems: 100 });
const Baseline = Type.Union([
  Type.Object({ runId: Type.String({ maxLength: 100 }) }, { additionalProperties: false }),
  Type.Object(
    { model: Type.String({ minLength: 1, maxLength: 200, pattern: NO_CONTROL }), tag: Tag },
    { additionalProperties: false },
  ),
]);
const VerdictBody = Type.Object(
  { gates: Gates, baseline: Type.Optional(Type.Union([Type.Null(), Baseline])) },
  { additionalProperties: false },
);
const CompareQuery = Type.Object(
  { baseline: Type.String({ maxLength: 100 }) },
  { additionalProperties: false },
);

// Transform families are checked in depth by the domain (src/domain/sweep.ts), which can name
// the family and the problem; here only their outer shape.
const Family = Type.Object(
  { type: Type.String({ minLength: 1, maxLength: 40 }) },
  { additionalProperties: true },
);

export const RunRequestSchema = Type.Object(
  {
    modelId: Type.String({ minLength: 1, maxLength: 100 }),
    datasetId: Type.String({ minLength: 1, maxLength: 100 }),
    name: Type.Optional(Name),
    tags: Type.Optional(Type.Array(Tag, { maxItems: 32 })),
    transforms: Type.Array(Family, { minItems: 1, maxItems: 64 }),
    combine: Type.Optional(Type.Literal('concat')),
    metrics: Type.Optional(
      Type.Array(Type.Union([Type.Literal('accuracy'), Type.Literal('ekld'), Type.Literal('nv')]), {
        minItems: 1,
        maxItems: 3,
      }),
    ),
    nv: Type.Optional(
      Type.Object(
        {
          layers: Type.Optional(
            Type.Union([
              Type.Literal('all'),
              Type.Array(Type.String({ maxLength: 1000 }), { maxItems: 10_000 }),
            ]),
          ),
          aggregation: Type.Optional(
            Type.Array(Type.Union([Type.Literal('none'), Type.Literal('mean')]), {
              minItems: 1,
              maxItems: 2,
            }),
          ),
          dispersion: Type.Optional(Type.Union([Type.Literal('std'), Type.Literal('variance')])),
          perClass: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
    preprocessing: Type.Optional(
      Type.Object(
        {
          mean: Type.Optional(Type.Array(Num, { minItems: 1, maxItems: 16 })),
          std: Type.Optional(Type.Array(Num, { minItems: 1, maxItems: 16 })),
          layout: Type.Optional(Type.Union([Type.Literal('NCHW'), Type.Literal('NHWC')])),
          outputIsProbability: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647 })),
    classSizes: Type.Optional(
      Type.Union([Type.Null(), Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 65_536 })]),
    ),
    resize: Type.Optional(Type.Boolean()),
    // Gates are checked in depth against the sweep, classes and layers by src/domain/gates.ts.
    gates: Type.Optional(Gates),
    baseline: Type.Optional(Type.Union([Type.Null(), Baseline])),
  },
  { additionalProperties: false },
);

const IdParams = Type.Object({ id: Type.String({ maxLength: 100 }) });
const ListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    modelId: Type.Optional(Type.String({ format: 'uuid' })),
    datasetId: Type.Optional(Type.String({ format: 'uuid' })),
    status: Type.Optional(Type.Union(RUN_STATUSES.map((s) => Type.Literal(s)))),
    verdict: Type.Optional(Type.Union(['PASS', 'WARN', 'FAIL', 'ERROR', 'NONE'].map((s) => Type.Literal(s)))),
    tag: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: NO_CONTROL })),
    createdAfter: Type.Optional(Type.String({ format: 'date-time' })),
    createdBefore: Type.Optional(Type.String({ format: 'date-time' })),
    sort: Type.Union([Type.Literal('-createdAt'), Type.Literal('createdAt')], { default: '-createdAt' }),
  },
  { additionalProperties: false },
);

export async function runRoutes(app: FastifyInstance, deps: AppDeps) {
  const runs = runRepository(deps.db);
  const service = {
    pool: deps.db.pool,
    boss: deps.queue,
    runs,
    limits: {
      maxRunInferences: deps.config.limits.maxRunInferences,
      maxPoints: deps.config.limits.maxRunPoints,
      maxImagePixels: deps.config.limits.maxImagePixels,
    },
    shardInferences: deps.config.shardInferences,
    minShards: deps.config.workers,
  };

  app.post('/v1/runs', { schema: { body: RunRequestSchema } }, async (req, reply) => {
    const run = await submitRun(service, req.body as Static<typeof RunRequestSchema> as RunRequest);
    return reply.status(202).header('location', `/v1/runs/${run.id}`).send(run);
  });

  // The two hot reads go straight from SQL to JSON text (src/store/runQueries.ts).
  app.get('/v1/runs', { schema: { querystring: ListQuery } }, async (req, reply) => {
    const q = req.query as Static<typeof ListQuery>;
    const page = await listRunsJson(
      deps.db.pool,
      { limit: q.limit, cursor: decodeCursor(q.cursor), direction: q.sort === 'createdAt' ? 'asc' : 'desc' },
      {
        modelId: q.modelId,
        datasetId: q.datasetId,
        status: q.status,
        tag: q.tag,
        verdict: q.verdict,
        createdAfter: q.createdAfter ? new Date(q.createdAfter) : undefined,
        createdBefore: q.createdBefore ? new Date(q.createdBefore) : undefined,
      },
    );
    return reply.type('application/json; charset=utf-8').send(page);
  });

  app.get('/v1/runs/:id', { schema: { params: IdParams } }, async (req, reply) => {
    const { id } = req.params as Static<typeof IdParams>;
    const run = isUuid(id) ? await findRunJson(deps.db.pool, id) : null;
    if (!run) throw notFound('run', id);
    return reply.type('application/json; charset=utf-8').send(run);
  });

  app.get('/v1/runs/:id/results', { schema: { params: IdParams } }, async (req) =>
    getResults(runs, (req.params as Static<typeof IdParams>).id),
  );

  app.post('/v1/runs/:id/cancel', { schema: { params: IdParams } }, async (req) =>
    cancelRun(runs, (req.params as Static<typeof IdParams>).id),
  );

  // Deleting runs is for admins, as deleting models and datasets is: a CI key (write) must not
  // be able to remove the baselines its gates are judged against.
  app.delete(
    '/v1/runs/:id',
    { config: { scope: 'admin' }, schema: { params: IdParams } },
    async (req, reply) => {
      await deleteRun(
        { runs, partialsDir: path.join(deps.config.dataDir, 'partials') },
        (req.params as Static<typeof IdParams>).id,
      );
      return reply.status(204).send();
    },
  );

  // Evaluating gates changes nothing (the stored verdict stays): a read key may ask, as a dashboard would.
  app.post(
    '/v1/runs/:id/verdict',
    { config: { scope: 'read' }, schema: { params: IdParams, body: VerdictBody } },
    async (req) => {
      const body = req.body as Static<typeof VerdictBody>;
      return evaluateVerdict(deps.db.pool, (req.params as Static<typeof IdParams>).id, body);
    },
  );

  app.get('/v1/runs/:id/compare', { schema: { params: IdParams, querystring: CompareQuery } }, async (req) =>
    compareRuns(
      deps.db.pool,
      (req.params as Static<typeof IdParams>).id,
      (req.query as Static<typeof CompareQuery>).baseline,
    ),
  );
}
