// Counter-based standard normal numbers for gaussian_noise: z depends only on
// (seed, global sample index, element index), never on batching, sharding or call order.

/** lowbias32 integer finaliser (Chris Wellons): a good 32-bit avalanche mix. */
function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** 32-bit key of (seed, sample index); seeds and indices may exceed 2^32. */
export function noiseKey(seed: number, sampleIndex: number): number {
  const s = Math.trunc(seed);
  const sLo = s >>> 0;
  const sHi = Math.floor(s / 4294967296) >>> 0;
  const iLo = sampleIndex >>> 0;
  const iHi = Math.floor(sampleIndex / 4294967296) >>> 0;
  let h = mix32(sLo ^ 0x9e3779b9);
  h = mix32(h ^ sHi);
  h = mix32((h + 0x632be5ab) ^ iLo);
  h = mix32(h ^ iHi ^ 0x85ebca6b);
  return h;
}

const TWO_POW_32 = 4294967296;

/**
 * Writes `count` standard normal values for elements 0..count-1 of sample `sampleIndex`
 * under `seed`, multiplied by `scale`, into `out` from `offset` (Box-Muller on hashed counters).
 */
export function fillGaussian(
  out: Float32Array,
  offset: number,
  count: number,
  seed: number,
  sampleIndex: number,
  scale = 1,
): void {
  const key = noiseKey(seed, sampleIndex);
  const pairs = count >>> 1;
  for (let p = 0; p <= pairs; p++) {
    const e = 2 * p;
    if (e >= count) break;
    const h1 = mix32(key ^ mix32(2 * p + 1));
    const h2 = mix32(mix32(key + 0x27d4eb2f) ^ mix32(2 * p + 2));
    const u1 = (h1 + 0.5) / TWO_POW_32; // (0, 1): log is finite
    const u2 = (h2 + 0.5) / TWO_POW_32;
    const r = Math.sqrt(-2 * Math.log(u1)) * scale;
    const t = 2 * Math.PI * u2;
    out[offset + e] = r * Math.cos(t);
    if (e + 1 < count) out[offset + e + 1] = r * Math.sin(t);
  }
}
