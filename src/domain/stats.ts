// Small numeric helpers shared by the metric accumulators: exact (bit-for-bit) serialization of
// Float64Arrays, Chan's parallel merge of (count, mean, M2), argmax, and a seeded PRNG.
// Pure functions: no I/O.

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function swapBytes8(bytes: Uint8Array): void {
  for (let o = 0; o < bytes.length; o += 8) {
    for (let a = o, b = o + 7; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

/**
 * Float64Array -> base64 of its IEEE-754 bytes in little-endian order. Unlike JSON numbers this
 * keeps NaN, +-Infinity and -0 exactly.
 */
export function encodeFloat64(values: Float64Array): string {
  const bytes = new Uint8Array(values.byteLength);
  bytes.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  if (!LITTLE_ENDIAN) swapBytes8(bytes);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Inverse of encodeFloat64. Throws when the length does not match `expectedLength` (if given). */
export function decodeFloat64(encoded: string, expectedLength?: number): Float64Array {
  if (typeof encoded !== 'string') throw new TypeError('encoded Float64Array must be a base64 string');
  const buf = Buffer.from(encoded, 'base64');
  if (buf.byteLength % 8 !== 0) throw new RangeError('encoded Float64Array has a length not a multiple of 8');
  const out = new Float64Array(buf.byteLength / 8);
  const bytes = new Uint8Array(out.buffer);
  bytes.set(buf);
  if (!LITTLE_ENDIAN) swapBytes8(bytes);
  if (expectedLength !== undefined && out.length !== expectedLength) {
    throw new RangeError(`encoded Float64Array has ${out.length} values, expected ${expectedLength}`);
  }
  return out;
}

/** Checks a JSON array of non-negative integer counts and returns it as a Float64Array. */
export function decodeCounts(values: unknown, expectedLength: number, what: string): Float64Array {
  if (!Array.isArray(values) || values.length !== expectedLength) {
    throw new RangeError(`${what}: expected an array of ${expectedLength} counts`);
  }
  const out = new Float64Array(expectedLength);
  for (let i = 0; i < expectedLength; i++) {
    const v = values[i];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw new RangeError(`${what}[${i}]: not a non-negative integer`);
    }
    out[i] = v;
  }
  return out;
}

/** Checks a non-negative integer count from a JSON state. */
export function checkCount(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what}: not a non-negative integer`);
  }
  return value;
}

/**
 * Chan et al.'s parallel update: merges running (nB, meanB, M2B) into (nA, meanA, M2A), element-wise,
 * in place on meanA / M2A. nA and nB are shared by every element (as they are when each sample
 * contributes one value to every element).
 */
export function chanMerge(
  nA: number,
  meanA: Float64Array,
  m2A: Float64Array,
  nB: number,
  meanB: Float64Array,
  m2B: Float64Array,
): void {
  if (nB === 0) return;
  const len = meanA.length;
  if (nA === 0) {
    meanA.set(meanB);
    m2A.set(m2B);
    return;
  }
  const n = nA + nB;
  const wB = nB / n;
  const wAB = (nA * nB) / n;
  for (let k = 0; k < len; k++) {
    const delta = meanB[k] - meanA[k];
    meanA[k] += delta * wB;
    m2A[k] += m2B[k] + delta * delta * wAB;
  }
}

/**
 * Index of the first maximum of values[offset .. offset+length) (numpy's tie rule), or -1 when a
 * NaN is present (the prediction is undefined: it matches no label).
 */
export function argmax(values: ArrayLike<number>, offset: number, length: number): number {
  let best = -1;
  let bestValue = Number.NEGATIVE_INFINITY;
  for (let k = 0; k < length; k++) {
    const v = values[offset + k];
    if (Number.isNaN(v)) return -1;
    if (best < 0 || v > bestValue) {
      best = k;
      bestValue = v;
    }
  }
  return best;
}

/** Folds any safe integer (negative or above 2^32 too) into a 32-bit PRNG seed. */
export function seedToUint32(seed: number): number {
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 4294967296) >>> 0;
  return (lo ^ Math.imul(hi, 0x9e3779b1)) >>> 0;
}

/**
 * mulberry32: a small, fast, deterministic PRNG on 32-bit integer arithmetic, so the same seed
 * gives the same sequence on any machine. Returns uniform values in [0, 1) with 32-bit resolution.
 */
export function mulberry32(seed: number): () => number {
  let a = seedToUint32(seed);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `count` standard normal samples for a seed (Box-Muller over mulberry32), e.g. to bake the noise of
 * `gaussian_noise(sigma, seed)` into a constant tensor so that it is the same on every machine
 * and execution provider.
 */
export function gaussianSamples(seed: number, count: number): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const u1 = 1 - next(); // (0, 1]
    const u2 = next();
    const r = Math.sqrt(-2 * Math.log(u1));
    const t = 2 * Math.PI * u2;
    out[i] = r * Math.cos(t);
    if (i + 1 < count) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

/** Ratio as reported in results: null when undefined (0/0) or not finite. */
export function ratioOrNull(num: number, den: number): number | null {
  if (den === 0) return null;
  const r = num / den;
  return Number.isFinite(r) ? r : null;
}

/** A float64 result value as JSON can carry it: null for NaN / +-Infinity. */
export function finiteOrNull(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}
