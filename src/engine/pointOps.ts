// The domain's sweep ops (src/domain/sweep.ts) in the transform compiler's vocabulary.
import type { TransformOp as SweepOp } from '../domain/sweep.js';
import type { TransformOp, TransformOps } from './transformOps.js';

function toEngineOp(op: SweepOp): TransformOp {
  switch (op.op) {
    case 'rotate':
      return { type: 'rotate', deg: op.degrees, fill: op.fill };
    case 'scale':
      return { type: 'scale', factor: op.factor, fill: op.fill };
    case 'translate':
      return { type: 'translate', dx: op.dx, dy: op.dy, unit: op.unit, fill: op.fill };
    case 'shear':
      return { type: 'shear', deg: op.degrees, fill: op.fill };
    case 'hflip':
      return { type: 'hflip', fill: op.fill };
    case 'vflip':
      return { type: 'vflip', fill: op.fill };
    case 'affine':
      return { type: 'affine', matrix: op.matrix, fill: op.fill };
    case 'brightness':
      return { type: 'brightness', delta: op.delta };
    case 'contrast':
      return { type: 'contrast', factor: op.factor };
    case 'gamma':
      return { type: 'gamma', g: op.gamma };
    case 'gaussian_noise':
      return { type: 'gaussian_noise', sigma: op.sigma, seed: op.seed };
    case 'gaussian_blur':
      return { type: 'gaussian_blur', sigma: op.sigma };
    case 'dilate':
      return { type: 'dilate', k: op.k };
    case 'erode':
      return { type: 'erode', k: op.k };
    case 'background':
      return { type: 'background', value: op.value };
  }
}

export function toEngineOps(ops: readonly SweepOp[]): TransformOps {
  return ops.map(toEngineOp);
}
