import { describe, expect, it } from 'vitest';
import {
  type AffineMatrix,
  countSweep,
  expandSweep,
  geometricMatrix,
  type PointParams,
  parsePointKey,
  pointKey,
  SweepError,
  samePoint,
  samplingGrid,
  splitStages,
  type TransformFamily,
  type TransformOp,
} from '../../src/domain/sweep.js';

const LIMITS = { maxPoints: 10_000 };

function expand(families: unknown[], limits = LIMITS) {
  return expandSweep(families as TransformFamily[], limits);
}

function sweepError(fn: () => unknown): SweepError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SweepError);
    return err as SweepError;
  }
  throw new Error('expected a SweepError');
}

function values(families: unknown[], key: string) {
  return expand(families).map((p) => p.params[key]);
}

describe('expandSweep: families', () => {
  it('explicit values, in order, with params and ops', () => {
    const pts = expand([{ type: 'rotate', values: [0, 90, 180, 270] }]);
    expect(pts.map((p) => p.params)).toEqual([
      { rotate: 0 },
      { rotate: 90 },
      { rotate: 180 },
      { rotate: 270 },
    ]);
    expect(pts[1].ops).toEqual([{ op: 'rotate', degrees: 90, fill: 0 }]);
  });

  it('ranges: end exclusive unless inclusive, decimal-clean values', () => {
    expect(
      values([{ type: 'rotate', range: { from: -45, to: 45, step: 15, inclusive: true } }], 'rotate'),
    ).toEqual([-45, -30, -15, 0, 15, 30, 45]);
    expect(values([{ type: 'rotate', range: { from: -45, to: 45, step: 15 } }], 'rotate')).toEqual([
      -45, -30, -15, 0, 15, 30,
    ]);
    expect(values([{ type: 'rotate', range: { from: 0, to: 360, step: 90 } }], 'rotate')).toEqual([
      0, 90, 180, 270,
    ]);
    expect(values([{ type: 'rotate', range: { from: -180, to: 180, step: 30 } }], 'rotate')).toHaveLength(12);
    expect(values([{ type: 'brightness', range: { from: 0, to: 1, step: 0.1 } }], 'brightness')).toEqual([
      0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
    ]);
    expect(
      values([{ type: 'brightness', range: { from: 0, to: 1, step: 0.1, inclusive: true } }], 'brightness'),
    ).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]);
    // -0.3 + 3 * 0.1 is 5.6e-17 in floating point: reported as 0
    expect(
      values(
        [{ type: 'brightness', range: { from: -0.3, to: 0.3, step: 0.1, inclusive: true } }],
        'brightness',
      ),
    ).toEqual([-0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3]);
    expect(
      values([{ type: 'scale', range: { from: 0.8, to: 1.2, step: 0.05, inclusive: true } }], 'scale'),
    ).toEqual([0.8, 0.85, 0.9, 0.95, 1, 1.05, 1.1, 1.15, 1.2]);
    // descending, and a single-point inclusive range
    expect(
      values([{ type: 'rotate', range: { from: 90, to: 0, step: -30, inclusive: true } }], 'rotate'),
    ).toEqual([90, 60, 30, 0]);
    expect(
      values([{ type: 'rotate', range: { from: 5, to: 5, step: 1, inclusive: true } }], 'rotate'),
    ).toEqual([5]);
    // a step that does not divide the span: the last value stays below `to`
    expect(
      values([{ type: 'rotate', range: { from: 0, to: 10, step: 4, inclusive: true } }], 'rotate'),
    ).toEqual([0, 4, 8]);
  });

  it('uniform samples are deterministic for a seed and within [min, max)', () => {
    const fam = { type: 'rotate', uniform: { min: -30, max: 30 }, samples: 50, seed: 42 };
    const a = values([fam], 'rotate') as number[];
    const b = values([fam], 'rotate') as number[];
    expect(a).toEqual(b);
    expect(a).toHaveLength(50);
    for (const x of a) {
      expect(x).toBeGreaterThanOrEqual(-30);
      expect(x).toBeLessThan(30);
    }
    expect(new Set(a).size).toBe(50);
    const c = values([{ ...fam, seed: 43 }], 'rotate');
    expect(c).not.toEqual(a);
    // pinned: same values on any machine (mulberry32)
    expect(values([{ type: 'brightness', uniform: [0, 1], samples: 3, seed: 1 }], 'brightness')).toEqual([
      0.6270739405881613, 0.002735721180215478, 0.5274470399599522,
    ]);
  });

  it('grid: Cartesian product, first family outermost, params and ops in the listed order', () => {
    const pts = expand([
      {
        type: 'grid',
        of: [
          { type: 'rotate', values: [0, 15] },
          { type: 'scale', values: [1, 1.2] },
        ],
      },
    ]);
    expect(pts.map((p) => pointKey(p.params))).toEqual([
      'rotate=0,scale=1',
      'rotate=0,scale=1.2',
      'rotate=15,scale=1',
      'rotate=15,scale=1.2',
    ]);
    expect(pts[3].ops).toEqual([
      { op: 'rotate', degrees: 15, fill: 0 },
      { op: 'scale', factor: 1.2, fill: 0 },
    ]);
    expect(Object.keys(pts[3].params)).toEqual(['rotate', 'scale']);
  });

  it('concat lists families one after another; duplicates are kept', () => {
    const pts = expand([
      { type: 'rotate', values: [0, 90] },
      { type: 'rotate', values: [90] },
      { type: 'hflip' },
      { type: 'identity' },
    ]);
    expect(pts.map((p) => pointKey(p.params))).toEqual([
      'rotate=0',
      'rotate=90',
      'rotate=90',
      'hflip',
      'identity',
    ]);
    expect(pts[3].ops).toEqual([{ op: 'hflip', fill: 0 }]);
    expect(pts[4].ops).toEqual([]);
    expect(pts[4].params).toEqual({ identity: true });
  });

  it('every transform type of SPEC 3 and its op', () => {
    const pts = expand([
      { type: 'translate', values: [[2, -3], { dx: 0.5, dy: 0 }] },
      { type: 'translate', unit: 'fraction', values: [[0.1, 0.2]] },
      { type: 'translate_x', range: { from: -2, to: 2, step: 2, inclusive: true } },
      { type: 'translate_y', unit: 'fraction', values: [0.25] },
      { type: 'shear', values: [10], fill: 0.5 },
      { type: 'vflip', values: [true, false] },
      {
        type: 'affine',
        values: [
          [0, 1, 0, -1, 0, 0],
          [
            [2, 0, 1],
            [0, 2, -1],
          ],
        ],
      },
      { type: 'brightness', values: [-0.2] },
      { type: 'contrast', values: [0, 1.5] },
      { type: 'gamma', values: [0.5] },
      { type: 'gaussian_noise', values: [0.1], seed: 7 },
      { type: 'gaussian_blur', values: [0, 1.5] },
      { type: 'dilate', values: [3] },
      { type: 'erode', values: [1] },
      { type: 'background', values: [1] },
    ]);
    const byKey = Object.fromEntries(pts.map((p) => [pointKey(p.params), p.ops]));
    expect(byKey['translate=[2,-3]']).toEqual([{ op: 'translate', dx: 2, dy: -3, unit: 'px', fill: 0 }]);
    expect(byKey['translate=[0.5,0]']).toEqual([{ op: 'translate', dx: 0.5, dy: 0, unit: 'px', fill: 0 }]);
    expect(byKey['translate_frac=[0.1,0.2]']).toEqual([
      { op: 'translate', dx: 0.1, dy: 0.2, unit: 'fraction', fill: 0 },
    ]);
    expect(byKey['translate_x=-2']).toEqual([{ op: 'translate', dx: -2, dy: 0, unit: 'px', fill: 0 }]);
    expect(byKey['translate_x=0']).toBeDefined();
    expect(byKey['translate_y_frac=0.25']).toEqual([
      { op: 'translate', dx: 0, dy: 0.25, unit: 'fraction', fill: 0 },
    ]);
    expect(byKey['shear=10']).toEqual([{ op: 'shear', degrees: 10, fill: 0.5 }]);
    expect(byKey.vflip).toEqual([{ op: 'vflip', fill: 0 }]);
    expect(byKey['vflip=false']).toEqual([]);
    expect(byKey['affine=[0,1,0,-1,0,0]']).toEqual([{ op: 'affine', matrix: [0, 1, 0, -1, 0, 0], fill: 0 }]);
    expect(byKey['affine=[2,0,1,0,2,-1]']).toBeDefined();
    expect(byKey['brightness=-0.2']).toEqual([{ op: 'brightness', delta: -0.2 }]);
    expect(byKey['contrast=0']).toEqual([{ op: 'contrast', factor: 0 }]);
    expect(byKey['gamma=0.5']).toEqual([{ op: 'gamma', gamma: 0.5 }]);
    expect(byKey['gaussian_noise=0.1']).toEqual([{ op: 'gaussian_noise', sigma: 0.1, seed: 7 }]);
    expect(byKey['gaussian_blur=1.5']).toEqual([{ op: 'gaussian_blur', sigma: 1.5 }]);
    expect(byKey['dilate=3']).toEqual([{ op: 'dilate', k: 3 }]);
    expect(byKey['erode=1']).toEqual([{ op: 'erode', k: 1 }]);
    expect(byKey['background=1']).toEqual([{ op: 'background', value: 1 }]);
    // the noise seed: noiseSeed, else seed (also the sampling seed of a uniform family), else 0
    const noisy = expand([
      { type: 'gaussian_noise', values: [0.1] },
      { type: 'gaussian_noise', uniform: { min: 0, max: 0.2 }, samples: 1, seed: 3, noiseSeed: 9 },
    ]);
    expect(noisy.map((p) => (p.ops[0] as { seed: number }).seed)).toEqual([0, 9]);
  });
});

describe('expandSweep: validation', () => {
  const bad: Array<[string, unknown[], RegExp]> = [
    ['no family', [], /at least one/],
    ['unknown type', [{ type: 'spin', values: [1] }], /transforms\[0\].*unknown transform type 'spin'/],
    ['missing values', [{ type: 'rotate' }], /transforms\[0\] \(rotate\): missing values, range or uniform/],
    ['two sources', [{ type: 'rotate', values: [1], range: { from: 0, to: 1, step: 1 } }], /only one of/],
    ['unknown property', [{ type: 'rotate', valuse: [1] }], /unknown property 'valuse'/],
    ['empty values', [{ type: 'rotate', values: [] }], /non-empty/],
    ['NaN value', [{ type: 'rotate', values: [0, Number.NaN] }], /values\[1\] must be a finite number/],
    ['Infinity value', [{ type: 'rotate', values: [Number.POSITIVE_INFINITY] }], /finite/],
    ['string value', [{ type: 'rotate', values: ['90'] }], /finite number, got "90"/],
    ['step 0', [{ type: 'rotate', range: { from: 0, to: 10, step: 0 } }], /step must not be 0/],
    ['wrong sign', [{ type: 'rotate', range: { from: 0, to: 10, step: -1 } }], /goes away/],
    [
      'NaN bound',
      [{ type: 'rotate', range: { from: Number.NaN, to: 10, step: 1 } }],
      /range.from must be a finite/,
    ],
    ['empty range', [{ type: 'rotate', range: { from: 5, to: 5, step: 1 } }], /no points/],
    [
      'negative samples',
      [{ type: 'rotate', uniform: { min: 0, max: 1 }, samples: -1, seed: 1 }],
      /samples must be >= 1/,
    ],
    ['zero samples', [{ type: 'rotate', uniform: { min: 0, max: 1 }, samples: 0 }], /samples must be >= 1/],
    ['fractional samples', [{ type: 'rotate', uniform: { min: 0, max: 1 }, samples: 1.5 }], /integer/],
    ['min > max', [{ type: 'rotate', uniform: { min: 1, max: 0 }, samples: 2 }], /greater than/],
    ['scale 0', [{ type: 'scale', values: [0] }], /> 0/],
    ['gamma 0', [{ type: 'gamma', values: [0] }], /> 0/],
    ['contrast < 0', [{ type: 'contrast', values: [-1] }], />= 0/],
    ['blur sigma < 0', [{ type: 'gaussian_blur', values: [-0.1] }], /\[0, 1000\]/],
    // 2 ceil(3 sigma) + 1 taps: a sigma of 1e9 would be a kernel of 6e9 weights.
    ['blur sigma > 1000', [{ type: 'gaussian_blur', values: [1e9] }], /\[0, 1000\]/],
    ['noise sigma < 0', [{ type: 'gaussian_noise', values: [-1] }], />= 0/],
    ['dilate 1.5', [{ type: 'dilate', values: [1.5] }], /integer >= 1/],
    ['erode 0', [{ type: 'erode', values: [0] }], /integer >= 1/],
    ['background 2', [{ type: 'background', values: [2] }], /\[0, 1\]/],
    ['shear 90', [{ type: 'shear', values: [90] }], /\(-90, 90\)/],
    ['translate range', [{ type: 'translate', range: { from: 0, to: 2, step: 1 } }], /translate_x/],
    ['translate scalar', [{ type: 'translate', values: [3] }], /\[dx, dy\]/],
    ['hflip number', [{ type: 'hflip', values: [1] }], /boolean/],
    ['affine singular', [{ type: 'affine', values: [[1, 2, 0, 2, 4, 0]] }], /singular/],
    ['affine short', [{ type: 'affine', values: [[1, 0, 0, 1]] }], /6 numbers/],
    ['identity values', [{ type: 'identity', values: [1] }], /takes no values/],
    ['fill on photometric', [{ type: 'brightness', values: [0.1], fill: 0 }], /geometric/],
    ['fill out of range', [{ type: 'rotate', values: [1], fill: 2 }], /fill must be in/],
    ['unit on rotate', [{ type: 'rotate', values: [1], unit: 'px' }], /unit/],
    ['bad unit', [{ type: 'translate_x', values: [1], unit: 'cm' }], /unit must be/],
    ['seed without uniform', [{ type: 'rotate', values: [1], seed: 3 }], /seed/],
    [
      'non-integer seed',
      [{ type: 'rotate', uniform: { min: 0, max: 1 }, samples: 2, seed: 0.5 }],
      /seed must be/,
    ],
    ['empty grid', [{ type: 'grid', of: [] }], /non-empty/],
    [
      'same parameter twice in a grid',
      [
        {
          type: 'grid',
          of: [
            { type: 'rotate', values: [1] },
            { type: 'rotate', values: [2] },
          ],
        },
      ],
      /'rotate' appears twice/,
    ],
    [
      'conflicting fills in one resampling',
      [
        {
          type: 'grid',
          of: [
            { type: 'rotate', values: [1], fill: 1 },
            { type: 'scale', values: [2] },
          ],
        },
      ],
      /share one fill/,
    ],
    ['family not an object', [42], /must be an object/],
  ];
  for (const [name, families, message] of bad) {
    it(`INVALID_SWEEP: ${name}`, () => {
      const err = sweepError(() => expand(families));
      expect(err.code).toBe('INVALID_SWEEP');
      expect(err.statusCode).toBe(422);
      expect(err.message).toMatch(message);
    });
  }

  it('names the family path inside grids', () => {
    const err = sweepError(() =>
      expand([
        { type: 'rotate', values: [0] },
        {
          type: 'grid',
          of: [
            { type: 'rotate', values: [1] },
            { type: 'scale', values: [-1] },
          ],
        },
      ]),
    );
    expect(err.path).toBe('transforms[1].of[1]');
    expect(err.message).toMatch(/^transforms\[1\]\.of\[1\] \(scale\): values\[0\] must be > 0/);
  });

  it('refuses points with the same params that transform differently (seed, fill, unit); exact repeats are kept', () => {
    for (const families of [
      [
        { type: 'gaussian_noise', values: [0.3], seed: 1 },
        { type: 'gaussian_noise', values: [0.3], seed: 2 },
      ],
      [
        { type: 'rotate', values: [30] },
        { type: 'rotate', values: [30], fill: 0.5 },
      ],
    ]) {
      const err = sweepError(() => expand(families));
      expect(err.code).toBe('INVALID_SWEEP');
      expect(err.message).toMatch(/points 0 and 1 are both (gaussian_noise=0.3|rotate=30)/);
    }
    expect(
      expand([
        { type: 'gaussian_noise', values: [0.3], seed: 1 },
        { type: 'gaussian_noise', values: [0.2], seed: 2 },
        { type: 'rotate', values: [90, 90] },
      ]).map((p) => pointKey(p.params)),
    ).toEqual(['gaussian_noise=0.3', 'gaussian_noise=0.2', 'rotate=90', 'rotate=90']);
  });

  it('combine other than concat is refused', () => {
    const err = sweepError(() =>
      expandSweep([{ type: 'rotate', values: [0] }], { maxPoints: 10, combine: 'zip' as 'concat' }),
    );
    expect(err.code).toBe('INVALID_SWEEP');
  });

  it('SWEEP_TOO_LARGE is decided arithmetically, before anything is allocated', () => {
    const t0 = performance.now();
    const huge = [
      [{ type: 'rotate', range: { from: 0, to: 1e9, step: 1 } }],
      [{ type: 'rotate', range: { from: 0, to: 1, step: 1e-300 } }],
      [{ type: 'rotate', uniform: { min: 0, max: 1 }, samples: 1e12, seed: 1 }],
      [
        {
          type: 'grid',
          of: [
            { type: 'rotate', range: { from: 0, to: 1000, step: 1 } },
            { type: 'scale', range: { from: 1, to: 1001, step: 1 } },
            { type: 'brightness', range: { from: 0, to: 1000, step: 1 } },
          ],
        },
      ],
    ];
    for (const families of huge) {
      const err = sweepError(() => expand(families));
      expect(err.code).toBe('SWEEP_TOO_LARGE');
    }
    expect(performance.now() - t0).toBeLessThan(200);
  });

  it('maxPoints is inclusive and counts all families and grid products', () => {
    const fams = [
      { type: 'rotate', values: [0, 90] },
      {
        type: 'grid',
        of: [
          { type: 'rotate', values: [0, 1] },
          { type: 'scale', values: [1, 2, 3] },
        ],
      },
    ];
    expect(expand(fams, { maxPoints: 8 })).toHaveLength(8);
    expect(countSweep(fams as TransformFamily[])).toBe(8);
    expect(sweepError(() => expand(fams, { maxPoints: 7 })).code).toBe('SWEEP_TOO_LARGE');
    expect(sweepError(() => expand([{ type: 'rotate', values: [1, 2, 3] }], { maxPoints: 2 })).code).toBe(
      'SWEEP_TOO_LARGE',
    );
  });
});

describe('point keys', () => {
  const cases: Array<[PointParams, string]> = [
    [{ rotate: 90 }, 'rotate=90'],
    [{ rotate: -45 }, 'rotate=-45'],
    [{ rotate: 15, scale: 1.2 }, 'rotate=15,scale=1.2'],
    [{ translate: [2, -3] }, 'translate=[2,-3]'],
    [{ translate_frac: [0.1, 0.25] }, 'translate_frac=[0.1,0.25]'],
    [{ hflip: true }, 'hflip'],
    [{ hflip: false }, 'hflip=false'],
    [{ identity: true }, 'identity'],
    [{ brightness: 1e-7 }, 'brightness=1e-7'],
    [{ affine: [0, 1, 0, -1, 0, 0], brightness: 0.1 }, 'affine=[0,1,0,-1,0,0],brightness=0.1'],
  ];
  for (const [params, key] of cases) {
    it(`${key} round-trips`, () => {
      expect(pointKey(params)).toBe(key);
      expect(parsePointKey(key)).toEqual(params);
    });
  }

  it('parses spaces and name=true; rejects garbage', () => {
    expect(parsePointKey(' rotate = 15 , scale=1.20 ')).toEqual({ rotate: 15, scale: 1.2 });
    expect(parsePointKey('hflip=true')).toEqual({ hflip: true });
    expect(parsePointKey('translate=[ 1 , 2 ]')).toEqual({ translate: [1, 2] });
    for (const bad of [
      '',
      'spin=3',
      'rotate=abc',
      'rotate=0x10',
      'rotate=Infinity',
      'rotate=1,rotate=2',
      'translate=[1,2',
      'a]',
    ]) {
      const err = sweepError(() => parsePointKey(bad));
      expect(err.code).toBe('INVALID_POINT_KEY');
    }
  });

  it('every expanded point has a key that parses back to its params', () => {
    const pts = expand([
      { type: 'rotate', range: { from: -45, to: 45, step: 15, inclusive: true } },
      {
        type: 'grid',
        of: [{ type: 'translate', values: [[1, 2]] }, { type: 'hflip' }, { type: 'gamma', values: [0.8] }],
      },
      { type: 'scale', uniform: { min: 0.5, max: 2 }, samples: 5, seed: 3 },
    ]);
    for (const p of pts) expect(parsePointKey(pointKey(p.params))).toEqual(p.params);
  });

  it('samePoint ignores order', () => {
    expect(samePoint({ rotate: 15, scale: 1.2 }, { scale: 1.2, rotate: 15 })).toBe(true);
    expect(samePoint({ rotate: 15 }, { rotate: 15, scale: 1 })).toBe(false);
    expect(samePoint({ translate: [1, 2] }, { translate: [1, 2] })).toBe(true);
    expect(samePoint({ translate: [1, 2] }, { translate: [2, 1] })).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Geometry

function apply(m: AffineMatrix, x: number, y: number): [number, number] {
  return [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]];
}

/** Nearest-free warp for integer maps: out[y][x] = img[sy][sx] or fill. */
function warpExact(img: number[][], m: AffineMatrix, fill = -1): number[][] {
  const H = img.length;
  const W = img[0].length;
  const out: number[][] = [];
  for (let y = 0; y < H; y++) {
    const row: number[] = [];
    for (let x = 0; x < W; x++) {
      const [sx, sy] = apply(m, x, y);
      expect(Number.isInteger(sx) && Number.isInteger(sy)).toBe(true);
      row.push(sx >= 0 && sx < W && sy >= 0 && sy < H ? img[sy][sx] : fill);
    }
    out.push(row);
  }
  return out;
}

function grid(W: number, H: number): number[][] {
  return Array.from({ length: H }, (_, y) => Array.from({ length: W }, (_, x) => y * W + x));
}

/** np.rot90(img, k): counter-clockwise quarter turns; k = 1: out[i][j] = img[j][W-1-i]. */
function rot90(img: number[][], k: number): number[][] {
  let a = img;
  for (let t = 0; t < ((k % 4) + 4) % 4; t++) {
    const H = a.length;
    const W = a[0].length;
    a = Array.from({ length: W }, (_, i) => Array.from({ length: H }, (_, j) => a[j][W - 1 - i]));
  }
  return a;
}

const rot = (degrees: number): TransformOp => ({ op: 'rotate', degrees, fill: 0 });

describe('geometricMatrix', () => {
  it('rotations by multiples of 90 degrees are exact pixel permutations equal to np.rot90', () => {
    const img = grid(5, 5);
    // literal np.rot90(np.arange(25).reshape(5, 5)) (k = 1)
    expect(rot90(img, 1)).toEqual([
      [4, 9, 14, 19, 24],
      [3, 8, 13, 18, 23],
      [2, 7, 12, 17, 22],
      [1, 6, 11, 16, 21],
      [0, 5, 10, 15, 20],
    ]);
    expect(geometricMatrix([rot(90)], 5, 5)).toEqual([0, -1, 4, 1, 0, 0]);
    for (const [deg, k] of [
      [0, 0],
      [90, 1],
      [180, 2],
      [270, 3],
      [-90, 3],
      [450, 1],
      [-180, 2],
    ]) {
      expect(warpExact(img, geometricMatrix([rot(deg)], 5, 5))).toEqual(rot90(img, k));
    }
    // composition: 90 then 90 is 180
    expect(warpExact(img, geometricMatrix([rot(90), rot(90)], 5, 5))).toEqual(rot90(img, 2));
    // even size too (centre between pixels)
    const img4 = grid(4, 4);
    expect(warpExact(img4, geometricMatrix([rot(90)], 4, 4))).toEqual(rot90(img4, 1));
  });

  it('positive rotation is counter-clockwise on screen (y down)', () => {
    // the pixel above the centre moves to the left of it
    const m = geometricMatrix([rot(90)], 5, 5);
    expect(apply(m, 0, 2)).toEqual([2, 0]);
    // small angle: the source of an output pixel right of the centre lies below-right of it
    const [sx, sy] = apply(geometricMatrix([rot(10)], 5, 5), 4, 2);
    expect(sx).toBeCloseTo(2 + 2 * Math.cos((10 * Math.PI) / 180), 12);
    expect(sy).toBeCloseTo(2 + 2 * Math.sin((10 * Math.PI) / 180), 12);
  });

  it('non-square images rotate about their own centre without skew', () => {
    const W = 7;
    const H = 5;
    const img = grid(W, H);
    const m = geometricMatrix([rot(90)], W, H);
    expect(apply(m, 3, 2)).toEqual([3, 2]); // centre fixed
    const out = warpExact(img, m);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        // inverse map about c = (3, 2): src = (c_x - (y - c_y), c_y + (x - c_x))
        const sx = 3 - (y - 2);
        const sy = 2 + (x - 3);
        const inside = sx >= 0 && sx < W && sy >= 0 && sy < H;
        expect(out[y][x]).toBe(inside ? img[sy][sx] : -1);
      }
    }
    // columns 0 and 6 come from outside the 5 rows: fill
    expect(out.map((r) => r[0])).toEqual([-1, -1, -1, -1, -1]);
    expect(out.map((r) => r[6])).toEqual([-1, -1, -1, -1, -1]);
    // distances to the centre are preserved at any angle
    const m30 = geometricMatrix([rot(30)], W, H);
    for (const [x, y] of [
      [0, 0],
      [6, 4],
      [5, 1],
    ]) {
      const [sx, sy] = apply(m30, x, y);
      expect(Math.hypot(sx - 3, sy - 2)).toBeCloseTo(Math.hypot(x - 3, y - 2), 12);
    }
  });

  it('flips, translation (px and fraction), scale, shear and affine', () => {
    const img = grid(5, 4);
    expect(warpExact(img, geometricMatrix([{ op: 'hflip', fill: 0 }], 5, 4))).toEqual(
      img.map((r) => [...r].reverse()),
    );
    expect(warpExact(img, geometricMatrix([{ op: 'vflip', fill: 0 }], 5, 4))).toEqual([...img].reverse());
    // content moves right by 2 and up by 1
    const t = geometricMatrix([{ op: 'translate', dx: 2, dy: -1, unit: 'px', fill: 0 }], 5, 4);
    expect(apply(t, 3, 1)).toEqual([1, 2]);
    const tf = geometricMatrix([{ op: 'translate', dx: 0.2, dy: 0.5, unit: 'fraction', fill: 0 }], 10, 4);
    expect(apply(tf, 5, 3)).toEqual([3, 1]);
    // scale 2 about the centre (2, 1.5): output 2 px right of centre samples 1 px right
    const s = geometricMatrix([{ op: 'scale', factor: 2, fill: 0 }], 5, 4);
    expect(apply(s, 4, 1.5)).toEqual([3, 1.5]);
    expect(apply(s, 2, 1.5)).toEqual([2, 1.5]);
    // torchvision's x-shear: forward x' = x - tan(a) * y (centred), so the inverse adds it back
    const sh = geometricMatrix([{ op: 'shear', degrees: 45, fill: 0 }], 5, 5);
    const [shx, shy] = apply(sh, 2, 4);
    expect(shx).toBeCloseTo(4, 12);
    expect(shy).toBe(4);
    // affine forward about the centre: [[0,1],[-1,0]] is rotate(90) (counter-clockwise)
    const a = geometricMatrix([{ op: 'affine', matrix: [0, 1, 0, -1, 0, 0], fill: 0 }], 5, 5);
    expect(a).toEqual(geometricMatrix([rot(90)], 5, 5));
    const a2 = geometricMatrix([{ op: 'affine', matrix: [2, 0, 1, 0, 2, -1], fill: 0 }], 5, 5);
    // forward: out - c = 2 (src - c) + (1, -1); so out (3, 1) <- src c + ((1, -1) - (1, -1)) / 2 = c
    expect(apply(a2, 3, 1)).toEqual([2, 2]);
  });

  it('ops are applied in order: translate then rotate differs from rotate then translate', () => {
    const tr: TransformOp = { op: 'translate', dx: 1, dy: 0, unit: 'px', fill: 0 };
    const m1 = geometricMatrix([tr, rot(90)], 5, 5);
    const m2 = geometricMatrix([rot(90), tr], 5, 5);
    // translate right then rotate CCW: the pixel right of centre ends up above the centre
    // (src (3,2) -> (4,2) after translate... inverse check via a pixel content at src (2,2))
    const img = grid(5, 5);
    const out1 = warpExact(img, m1);
    const out2 = warpExact(img, m2);
    // centre pixel content (12): translate right -> at (3,2); rotate 90 CCW -> at (2,1)
    expect(out1[1][2]).toBe(12);
    // rotate first keeps it at the centre, translate -> (3,2)
    expect(out2[2][3]).toBe(12);
  });

  it('refuses non-geometric ops', () => {
    expect(() => geometricMatrix([{ op: 'brightness', delta: 0.1 }], 5, 5)).toThrow(TypeError);
  });

  it('samplingGrid normalises to [-1, 1] (align corners) and splitStages groups geometric runs', () => {
    const id = geometricMatrix([], 3, 2);
    expect(Array.from(samplingGrid(id, 3, 2))).toEqual([-1, -1, 0, -1, 1, -1, -1, 1, 0, 1, 1, 1]);
    const half = Array.from(samplingGrid(id, 2, 2, false));
    expect(half).toEqual([-0.5, -0.5, 0.5, -0.5, -0.5, 0.5, 0.5, 0.5]);
    const [p] = expand([
      {
        type: 'grid',
        of: [
          { type: 'rotate', values: [10] },
          { type: 'scale', values: [1.1] },
          { type: 'brightness', values: [0.1] },
          { type: 'hflip' },
        ],
      },
    ]);
    const stages = splitStages(p.ops);
    expect(stages.map((s) => s.kind)).toEqual(['geometric', 'pixel', 'geometric']);
    expect(stages[0]).toMatchObject({ kind: 'geometric', fill: 0 });
    expect((stages[0] as { ops: TransformOp[] }).ops.map((o) => o.op)).toEqual(['rotate', 'scale']);
  });
});
