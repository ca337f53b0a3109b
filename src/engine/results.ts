// The merged statistics of a run, shaped as the API's `/results` and the run's `summary`.
import type { ClassificationAccumulator } from '../domain/classification.js';
import type { ExamplesAccumulator } from '../domain/examples.js';
import type { NormalizedVarianceAccumulator } from '../domain/normalizedVariance.js';
import type { RunSpec } from '../domain/runSpec.js';
import type { TransformPoint } from '../domain/sweep.js';
import type { FinalizeRunResult } from './engineTasks.js';

export function buildResults(
  spec: RunSpec,
  points: TransformPoint[],
  classification: ClassificationAccumulator,
  nv: Map<string, NormalizedVarianceAccumulator>,
  classNames: string[],
  examples: ExamplesAccumulator | null = null,
): FinalizeRunResult {
  const c = classification.finalize({
    params: points.map((p) => p.params),
    classNames,
    classSizes: spec.classSizes,
  });
  const wantEkld = spec.metrics.includes('ekld');
  const nvResults = spec.metrics.includes('nv')
    ? spec.nv.layers.flatMap((layer) => {
        const acc = nv.get(layer);
        if (!acc) return [];
        return spec.nv.aggregation.map((aggregation) => acc.finalize(aggregation, spec.nv.dispersion));
      })
    : [];
  const results: Record<string, unknown> = {
    samples: c.samples,
    nonFiniteSamples: c.nonFiniteSamples,
    clean: c.clean,
    points: c.points.map((p) => (wantEkld ? p : { ...p, ekld: undefined })),
    accuracy: c.accuracy,
    consistency: c.consistency,
    tta: c.tta,
    ...(wantEkld ? { ekld: c.ekld } : {}),
    ...(spec.metrics.includes('nv') ? { nv: nvResults } : {}),
    ...(examples ? { examples: examples.finalize({ params: points.map((p) => p.params), classNames }) } : {}),
  };
  const summary: Record<string, unknown> = {
    samples: c.samples,
    points: points.length,
    accuracy: {
      clean: c.clean.accuracy,
      mean: c.accuracy.mean,
      min: c.accuracy.min,
      worstCase: c.accuracy.worstCase,
    },
    consistency: c.consistency.mean,
    tta: c.tta.accuracy,
    ...(wantEkld ? { ekld: c.ekld.overall } : {}),
    ...(nvResults.length
      ? { nv: Object.fromEntries(nvResults.map((r) => [`${r.layer}|${r.aggregation}`, r.nv])) }
      : {}),
  };
  return { results, summary };
}
