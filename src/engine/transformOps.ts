// Primitive image transformations of one sweep point, in the order they are applied (SPEC section 3).
// Pixel space: values in [0,1], x to the right, y downwards, pixel centres at integer coordinates,
// image centre c = ((W-1)/2, (H-1)/2).

/** Value for sampling points that fall outside the image (default 0). */
export interface GeometricFill {
  fill?: number;
}

export type GeometricOp =
  /** Counter-clockwise on screen for positive degrees (torchvision's `rotate` sign), about c. */
  | ({ type: 'rotate'; deg: number } & GeometricFill)
  /** Zoom about c by `factor` (> 1 enlarges). */
  | ({ type: 'scale'; factor: number } & GeometricFill)
  /**
   * Shift by (dx, dy) pixels (positive dx right, positive dy down); with unit 'fraction', dx and dy
   * are fractions of the width and height.
   */
  | ({ type: 'translate'; dx: number; dy: number; unit?: 'px' | 'fraction' } & GeometricFill)
  /**
   * Shear parallel to the x axis about c, torchvision's `affine(shear=[deg, 0])` convention:
   * forward map x' = x - tan(deg) * (y - cy), y' = y.
   */
  | ({ type: 'shear'; deg: number } & GeometricFill)
  | ({ type: 'hflip' } & GeometricFill)
  | ({ type: 'vflip' } & GeometricFill)
  /**
   * Explicit forward 2x3 map [a, b, tx, c, d, ty] (row-major): a point p moves to A p + t.
   * With origin 'center' (default) p is relative to c (p' - c = A (p - c) + t); with 'pixel' p is in
   * pixel-index coordinates.
   */
  | ({
      type: 'affine';
      matrix: readonly [number, number, number, number, number, number];
      origin?: 'center' | 'pixel';
    } & GeometricFill);

export type PhotometricOp =
  /** x + delta, clipped to [0,1]. */
  | { type: 'brightness'; delta: number }
  /** (x - 0.5) * factor + 0.5, clipped to [0,1]. */
  | { type: 'contrast'; factor: number }
  /** x ** g. */
  | { type: 'gamma'; g: number }
  /**
   * x + sigma * z, clipped to [0,1], z ~ N(0,1) drawn from (seed, global sample index, element index
   * c*H*W + y*W + x) only: the same for any batching or sharding.
   */
  | { type: 'gaussian_noise'; sigma: number; seed: number }
  /** Separable Gaussian, radius ceil(3 sigma), normalised, reflect padding (torchvision-like). */
  | { type: 'gaussian_blur'; sigma: number }
  /** Grey-scale dilation (max) over a k x k square. */
  | { type: 'dilate'; k: number }
  /** Grey-scale erosion (min) over a k x k square. */
  | { type: 'erode'; k: number }
  /** Pixels exactly equal to 0 are set to `value`. */
  | { type: 'background'; value: number }
  | { type: 'identity' };

export type TransformOp = GeometricOp | PhotometricOp;

/** The ordered primitive ops of one sweep point ([] = the untransformed image). */
export type TransformOps = readonly TransformOp[];

export function isGeometric(op: TransformOp): op is GeometricOp {
  switch (op.type) {
    case 'rotate':
    case 'scale':
    case 'translate':
    case 'shear':
    case 'hflip':
    case 'vflip':
    case 'affine':
      return true;
    default:
      return false;
  }
}

/** Row-major 3x3 homogeneous matrix (last row 0 0 1). */
export type Mat3 = [number, number, number, number, number, number, number, number, number];

export const IDENTITY3: Mat3 = [1, 0, 0, 0, 1, 0, 0, 0, 1];

export function matMul3(a: Mat3, b: Mat3): Mat3 {
  const r = new Array<number>(9).fill(0) as Mat3;
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      r[i * 3 + j] = a[i * 3] * b[j] + a[i * 3 + 1] * b[3 + j] + a[i * 3 + 2] * b[6 + j];
    }
  }
  return r;
}

export function invertAffine3(m: Mat3): Mat3 {
  const [a, b, tx, c, d, ty] = m;
  const det = a * d - b * c;
  if (!Number.isFinite(det) || Math.abs(det) < 1e-12) throw new Error('affine transform is not invertible');
  const ia = d / det;
  const ib = -b / det;
  const ic = -c / det;
  const id = a / det;
  return [ia, ib, -(ia * tx + ib * ty), ic, id, -(ic * tx + id * ty), 0, 0, 1];
}

/**
 * cos and sin of an angle in degrees, exact (0, +-1) at multiples of 90 degrees, so that a
 * rotation by k*90 degrees maps pixel centres onto pixel centres exactly.
 */
export function cosSinDeg(deg: number): [number, number] {
  const r = ((deg % 360) + 360) % 360;
  if (r === 0) return [1, 0];
  if (r === 90) return [0, 1];
  if (r === 180) return [-1, 0];
  if (r === 270) return [0, -1];
  // The exact remainder (deg itself within one turn): deg * PI / 180 of a large angle is far off.
  const rad = ((deg % 360) * Math.PI) / 180;
  return [Math.cos(rad), Math.sin(rad)];
}

function aboutCentre(
  m2: [number, number, number, number],
  t: [number, number],
  cx: number,
  cy: number,
): Mat3 {
  // p' = c + M (p - c) + t
  const [a, b, c, d] = m2;
  return [a, b, cx - a * cx - b * cy + t[0], c, d, cy - c * cx - d * cy + t[1], 0, 0, 1];
}

/**
 * Forward matrix (pixel-index coordinates, y down) of one geometric op for an image of the given
 * size: output position = M * input position.
 */
export function forwardMatrix(op: GeometricOp, width: number, height: number): Mat3 {
  const cx = (width - 1) / 2;
  const cy = (height - 1) / 2;
  switch (op.type) {
    case 'rotate': {
      // Counter-clockwise on screen with y pointing down: (1, 0) -> (cos, -sin).
      const [cos, sin] = cosSinDeg(op.deg);
      return aboutCentre([cos, sin, -sin, cos], [0, 0], cx, cy);
    }
    case 'scale':
      if (!(op.factor > 0)) throw new Error(`scale factor must be > 0 (got ${op.factor})`);
      return aboutCentre([op.factor, 0, 0, op.factor], [0, 0], cx, cy);
    case 'translate': {
      const fraction = op.unit === 'fraction';
      return [1, 0, fraction ? op.dx * width : op.dx, 0, 1, fraction ? op.dy * height : op.dy, 0, 0, 1];
    }
    case 'shear': {
      const [cos, sin] = cosSinDeg(op.deg);
      if (Math.abs(cos) < 1e-12) throw new Error(`shear of ${op.deg} degrees is degenerate`);
      return aboutCentre([1, -sin / cos, 0, 1], [0, 0], cx, cy);
    }
    case 'hflip':
      return aboutCentre([-1, 0, 0, 1], [0, 0], cx, cy);
    case 'vflip':
      return aboutCentre([1, 0, 0, -1], [0, 0], cx, cy);
    case 'affine': {
      const [a, b, tx, c, d, ty] = op.matrix;
      if ((op.origin ?? 'center') === 'pixel') return [a, b, tx, c, d, ty, 0, 0, 1];
      return aboutCentre([a, b, c, d], [tx, ty], cx, cy);
    }
  }
}
