// GET /v1/runs/{id}/charts/{accuracy|ekld|nv}.svg: a succeeded run's charts as standalone SVG,
// rendered server side with Vega-Lite (for CI comments: the CLI downloads them with its key).
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../../app.js';
import {
  CHART_NAMES,
  type ChartName,
  type ChartResults,
  ChartUnavailableError,
  renderChart,
} from '../../render/charts.js';
import { getSucceededRun } from '../../services/runs.js';
import { modelRepository } from '../../store/modelRepository.js';
import { runRepository } from '../../store/runRepository.js';
import { AppError } from '../problem.js';

const ChartParams = Type.Object({
  id: Type.String({ maxLength: 100 }),
  chart: Type.String({ maxLength: 40 }),
});

export async function chartRoutes(app: FastifyInstance, deps: AppDeps) {
  const runs = runRepository(deps.db);
  const models = modelRepository(deps.db.prisma);

  app.get('/v1/runs/:id/charts/:chart', { schema: { params: ChartParams } }, async (req, reply) => {
    const { id, chart } = req.params as Static<typeof ChartParams>;
    const name = chart.replace(/\.svg$/, '') as ChartName;
    if (!chart.endsWith('.svg') || !CHART_NAMES.includes(name)) {
      throw new AppError(
        404,
        'NOT_FOUND',
        `no chart ${chart}; charts: ${CHART_NAMES.map((c) => `${c}.svg`).join(', ')}`,
      );
    }
    const { run, results } = await getSucceededRun(runs, id, 'charts');
    const model = name === 'nv' ? await models.findById(run.modelId) : null;
    let svg: string;
    try {
      svg = await renderChart(name, results as ChartResults, {
        title: run.name ?? `run ${run.id.slice(0, 8)}`,
        layerOrder: model?.layers.map((l) => l.name),
      });
    } catch (err) {
      if (err instanceof ChartUnavailableError) throw new AppError(409, 'CHART_UNAVAILABLE', err.message);
      throw err;
    }
    return reply
      .type('image/svg+xml; charset=utf-8')
      .header('cache-control', 'private, max-age=300')
      .header('content-disposition', `inline; filename="${run.id}-${name}.svg"`)
      .send(svg);
  });
}
