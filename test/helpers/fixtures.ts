// The Fashion-MNIST fixtures and a run spec built from them without the service: shared by the
// tests and by the scripts (bench, loadtest), which must not import vitest (hence not runs.ts).
import path from 'node:path';
import { buildRunSpec, type RunRequest, type RunSpec } from '../../src/domain/runSpec.js';
import { inspectModel } from '../../src/engine/onnxModel.js';
import type { IngestResult } from '../../src/ingest/index.js';

export const FIXTURES = path.resolve(import.meta.dirname, '..', 'fixtures');
export const FMNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];
/** The fixture models' training normalisation. */
export const FMNIST_PREPROCESSING = { mean: [0.286], std: [0.353] };

/**
 * The spec the service would build for `request` on the model at `modelPath` (inspected here)
 * and a dataset ingested with ingestDataset, with the fixture preprocessing: what the service
 * reads from its model and dataset rows, taken from the files instead.
 */
export async function fixtureRunSpec(
  request: RunRequest,
  modelPath: string,
  ingested: Pick<IngestResult, 'meta' | 'classes'>,
  limits: { maxRunInferences: number; maxPoints: number },
): Promise<RunSpec> {
  const info = await inspectModel(modelPath);
  return buildRunSpec(
    request,
    {
      inputs: info.inputs,
      outputs: info.outputs,
      layers: info.layers,
      preprocessing: { ...FMNIST_PREPROCESSING, layout: 'NCHW', outputIsProbability: false },
    },
    {
      count: ingested.meta.count,
      width: ingested.meta.width,
      height: ingested.meta.height,
      channels: ingested.meta.channels,
      classes: ingested.classes,
    },
    limits,
  ).spec;
}
