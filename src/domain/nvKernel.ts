// The inner loop of normalized-variance accumulation, over a flat byte-addressed heap, in two
// interchangeable implementations with bit-identical float64 results:
// - 'wasm': WebAssembly with 128-bit SIMD (f64x2), source in nvKernel.wat (several times faster);
// - 'js': the same operations in the same order in scalar JavaScript (fallback, and the reference
//   the tests compare the WebAssembly build with).
// Pure computation: no I/O. The heap is private to one accumulator.

/** nvKernel.wat assembled with wabt 1.0.39 (see the .wat header to rebuild). */
export const NV_KERNEL_WASM_BASE64 =
  'AGFzbQEAAAABEgFgDn9/f39/f39/f39/f39/AAMCAQAFAwEAAQcXAgZtZW1vcnkCAAphY2N1bXVsYXRlAAAK5AkB4QkCDX8OeyACQQJ0IRMgA0EDdCEURAAAAAAAAPA/IAS4o/0UISREAAAAAAAA8D8gBEEBa7ij/RQhJUQAAAAAAADw//0UISggDQRARAAAAAAAAAAA/RQhKAtBACEOAkADQCAOIANPDQEgAyAOayEPIA8gBUsEQCAFIQ8LQQAhEAJAA0AgECABTw0BIAYgEEEDdGorAwD9FCEjIAAgEEECdGooAgAgDkECdGohFSAVIRYgDkEDdCEYQQAhGkEAIRICQANAIBIgD08NASAW/V0DAP1fICj99wEhGyAHIBpq/QwAAAAAAAAAAAAAAAAAAAAA/QsEACAIIBpq/QwAAAAAAAAAAAAAAAAAAAAA/QsEACAJIBhqIRkgGf0ABAAhISAbICH98QEhICAhICAgI/3yAf3wASEiIBkgIv0LBAAgCiAYaiEZIBkgGf0ABAAgICAbICL98QH98gH98AH9CwQAIBZBCGohFiAYQRBqIRggGkEQaiEaIBJBAmohEgwACwtBASERAkADQCARQQFqIARPDQEgFSARIBNsaiEWIBYgE2ohFyARIANsIA5qQQN0IRhBACEaQQAhEgJAA0AgEiAPTw0BIBUgGkEBdmr9XQMA/V8gKP33ASEdIBb9XQMA/V8gKP33ASEbIBf9XQMA/V8gKP33ASEcIBsgHf3xASEeIBwgHf3xASEfIAcgGmohGSAZIBn9AAQAIB798AEgH/3wAf0LBAAgCCAaaiEZIBkgGf0ABAAgHiAe/fIB/fABIB8gH/3yAf3wAf0LBAAgCSAYaiEZIBn9AAQAISEgGyAh/fEBISAgISAgICP98gH98AEhIiAZICL9CwQAIAogGGohGSAZIBn9AAQAICAgGyAi/fEB/fIB/fAB/QsEACAJIBhqIBRqIRkgGf0ABAAhISAcICH98QEhICAhICAgI/3yAf3wASEiIBkgIv0LBAAgCiAYaiAUaiEZIBkgGf0ABAAgICAcICL98QH98gH98AH9CwQAIBZBCGohFiAXQQhqIRcgGEEQaiEYIBpBEGohGiASQQJqIRIMAAsLIBFBAmohEQwACwsgESAESQRAIBUgESATbGohFiARIANsIA5qQQN0IRhBACEaQQAhEgJAA0AgEiAPTw0BIBb9XQMA/V8gKP33ASEbIBsgFSAaQQF2av1dAwD9XyAo/fcB/fEBIR4gByAaaiEZIBkgGf0ABAAgHv3wAf0LBAAgCCAaaiEZIBkgGf0ABAAgHiAe/fIB/fAB/QsEACAJIBhqIRkgGf0ABAAhISAbICH98QEhICAhICAgI/3yAf3wASEiIBkgIv0LBAAgCiAYaiEZIBkgGf0ABAAgICAbICL98QH98gH98AH9CwQAIBZBCGohFiAYQRBqIRggGkEQaiEaIBJBAmohEgwACwsLIA5BA3QhGEEAIRpBACESAkADQCASIA9PDQEgByAaav0ABAAhJiAIIBpq/QAEACAmICb98gEgJP3yAf3xASAl/fIBIScgJ/0MAAAAAAAAAAAAAAAAAAAAAP33ASEnIAwgGGohGSAZIBn9AAQAICf98AH9CwQAIAsgGGohGSAZIBn9AAQAICf97wH98AH9CwQAIBhBEGohGCAaQRBqIRogEkECaiESDAALCyAQQQFqIRAMAAsLIA4gBWohDgwACwsL';

export type KernelKind = 'wasm' | 'js';

/** Largest heap an accumulator may use (pointers are 32-bit in the WebAssembly kernel). */
export const MAX_HEAP_BYTES = 2 ** 31;

/**
 * accumulate(ptrs, nb, D, Dp, m, tile, invs, tA, tQ, mean, m2, tvStd, tvVar, relu): see
 * nvKernel.wat. All arguments are byte offsets into the heap or counts (ptrs: nb int32 byte offsets
 * of the samples' activations); relu is 1 to accumulate max(x, 0) of the values (NaN and -0 kept,
 * as ONNX Runtime's Relu), 0 for the values themselves.
 */
export type AccumulateFn = (
  ptrs: number,
  nb: number,
  D: number,
  Dp: number,
  m: number,
  tile: number,
  invs: number,
  tA: number,
  tQ: number,
  mean: number,
  m2: number,
  tvStd: number,
  tvVar: number,
  relu: number,
) => void;

export interface NvHeap {
  readonly kind: KernelKind;
  /** Current size in bytes. */
  readonly byteLength: number;
  /** Grows the heap to at least `bytes` (contents kept; earlier views become stale). */
  ensure(bytes: number): void;
  /** A float64 view of the whole heap (index = byte offset / 8); re-fetch after ensure(). */
  f64(): Float64Array;
  /** A float32 view of the whole heap (index = byte offset / 4); re-fetch after ensure(). */
  f32(): Float32Array;
  /** An int32 view of the whole heap (index = byte offset / 4); re-fetch after ensure(). */
  i32(): Int32Array;
  accumulate: AccumulateFn;
}

// The few WebAssembly JS-API members used here (the project's type libraries do not declare them).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmModule {
  readonly __wasmModule?: never;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => { exports: Record<string, unknown> };
}

let wasmModule: WasmModule | null | undefined;

function compiledModule(): WasmModule | null {
  if (wasmModule === undefined) {
    wasmModule = null;
    const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
    try {
      const bytes = Buffer.from(NV_KERNEL_WASM_BASE64, 'base64');
      if (api?.validate(bytes)) wasmModule = new api.Module(bytes);
    } catch {
      wasmModule = null;
    }
  }
  return wasmModule;
}

/** Whether this runtime can run the WebAssembly SIMD kernel. */
export function wasmKernelAvailable(): boolean {
  return compiledModule() !== null;
}

const PAGE = 65536;

class WasmHeap implements NvHeap {
  readonly kind = 'wasm' as const;
  private readonly memory: WasmMemory;
  private f64View: Float64Array;
  private f32View: Float32Array;
  private i32View: Int32Array;
  readonly accumulate: AccumulateFn;

  constructor(module: WasmModule) {
    const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly as WasmApi;
    const instance = new api.Instance(module, {});
    const memory = instance.exports.memory as WasmMemory;
    const accumulate = instance.exports.accumulate as AccumulateFn;
    this.memory = memory;
    this.accumulate = accumulate;
    this.f64View = new Float64Array(memory.buffer);
    this.f32View = new Float32Array(memory.buffer);
    this.i32View = new Int32Array(memory.buffer);
  }

  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  ensure(bytes: number): void {
    if (bytes > MAX_HEAP_BYTES)
      throw new RangeError(`normalized variance needs ${bytes} bytes, more than ${MAX_HEAP_BYTES}`);
    const have = this.memory.buffer.byteLength;
    if (bytes <= have) return;
    const want = Math.max(bytes, Math.min(MAX_HEAP_BYTES, have * 2));
    this.memory.grow(Math.ceil((want - have) / PAGE));
  }

  f64(): Float64Array {
    if (this.f64View.buffer !== this.memory.buffer) this.f64View = new Float64Array(this.memory.buffer);
    return this.f64View;
  }

  f32(): Float32Array {
    if (this.f32View.buffer !== this.memory.buffer) this.f32View = new Float32Array(this.memory.buffer);
    return this.f32View;
  }

  i32(): Int32Array {
    if (this.i32View.buffer !== this.memory.buffer) this.i32View = new Int32Array(this.memory.buffer);
    return this.i32View;
  }
}

class JsHeap implements NvHeap {
  readonly kind = 'js' as const;
  private buffer = new ArrayBuffer(PAGE);
  private f64View = new Float64Array(this.buffer);
  private f32View = new Float32Array(this.buffer);
  private i32View = new Int32Array(this.buffer);

  get byteLength(): number {
    return this.buffer.byteLength;
  }

  ensure(bytes: number): void {
    if (bytes > MAX_HEAP_BYTES)
      throw new RangeError(`normalized variance needs ${bytes} bytes, more than ${MAX_HEAP_BYTES}`);
    const have = this.buffer.byteLength;
    if (bytes <= have) return;
    const want = Math.ceil(Math.max(bytes, Math.min(MAX_HEAP_BYTES, have * 2)) / PAGE) * PAGE;
    const next = new ArrayBuffer(want);
    new Uint8Array(next).set(new Uint8Array(this.buffer));
    this.buffer = next;
    this.f64View = new Float64Array(next);
    this.f32View = new Float32Array(next);
    this.i32View = new Int32Array(next);
  }

  f64(): Float64Array {
    return this.f64View;
  }

  f32(): Float32Array {
    return this.f32View;
  }

  i32(): Int32Array {
    return this.i32View;
  }

  readonly accumulate: AccumulateFn = (
    ptrs,
    nb,
    D,
    Dp,
    m,
    tile,
    invs,
    tA,
    tQ,
    mean,
    m2,
    tvStd,
    tvVar,
    relu,
  ) =>
    jsAccumulate(
      this.f64View,
      this.f32View,
      this.i32View,
      ptrs,
      nb,
      D,
      Dp,
      m,
      tile,
      invs,
      tA,
      tQ,
      mean,
      m2,
      tvStd,
      tvVar,
      relu,
    );
}

/**
 * The scalar twin of nvKernel.wat's accumulate: per value, the same operations in the same order
 * (the loops are nested differently, and the per-sample sums go through tA/tQ in memory, which
 * changes no bit); pad lanes included.
 */
export function jsAccumulate(
  h64: Float64Array,
  h32: Float32Array,
  hi32: Int32Array,
  ptrs: number,
  nb: number,
  D: number,
  Dp: number,
  m: number,
  tile: number,
  invs: number,
  tA: number,
  tQ: number,
  mean: number,
  m2: number,
  tvStd: number,
  tvVar: number,
  relu = 0,
): void {
  // max(x, floor): x < floor ? floor : x (NaN and -0 kept); -Infinity leaves every value as it is
  const floor = relu ? 0 : Number.NEGATIVE_INFINITY;
  const invM = 1 / m;
  const invM1 = 1 / (m - 1);
  const iA = tA >>> 3;
  const iQ = tQ >>> 3;
  const iMean = mean >>> 3;
  const iM2 = m2 >>> 3;
  const iStd = tvStd >>> 3;
  const iVar = tvVar >>> 3;
  for (let d0 = 0; d0 < Dp; d0 += tile) {
    const dl = Math.min(tile, Dp - d0);
    for (let b = 0; b < nb; b++) {
      const invN = h64[(invs >>> 3) + b];
      const p0 = (hi32[(ptrs >>> 2) + b] >>> 2) + d0;
      for (let t = 0; t < dl; t++) {
        let x = h32[p0 + t];
        if (x < floor) x = floor;
        h64[iA + t] = 0;
        h64[iQ + t] = 0;
        const k = iMean + d0 + t;
        const mu = h64[k];
        const delta = x - mu;
        const mk = mu + delta * invN;
        h64[k] = mk;
        const k2 = iM2 + d0 + t;
        h64[k2] = h64[k2] + delta * (x - mk);
      }
      for (let j = 1; j < m; j++) {
        const pa = p0 + j * D;
        const srow = j * Dp + d0;
        for (let t = 0; t < dl; t++) {
          let x = h32[pa + t];
          if (x < floor) x = floor;
          let x0 = h32[p0 + t];
          if (x0 < floor) x0 = floor;
          const y = x - x0;
          h64[iA + t] = h64[iA + t] + y;
          h64[iQ + t] = h64[iQ + t] + y * y;
          const k = iMean + srow + t;
          const mu = h64[k];
          const delta = x - mu;
          const mk = mu + delta * invN;
          h64[k] = mk;
          const k2 = iM2 + srow + t;
          h64[k2] = h64[k2] + delta * (x - mk);
        }
      }
      for (let t = 0; t < dl; t++) {
        const a = h64[iA + t];
        let v = (h64[iQ + t] - a * a * invM) * invM1;
        if (v < 0) v = 0;
        h64[iVar + d0 + t] = h64[iVar + d0 + t] + v;
        h64[iStd + d0 + t] = h64[iStd + d0 + t] + Math.sqrt(v);
      }
    }
  }
}

/** A fresh heap: 'auto' picks WebAssembly when the runtime supports it, else JavaScript. */
export function createHeap(kind: KernelKind | 'auto' = 'auto'): NvHeap {
  if (kind === 'js') return new JsHeap();
  const module = compiledModule();
  if (module) return new WasmHeap(module);
  if (kind === 'wasm') throw new Error('the WebAssembly SIMD kernel is not available in this runtime');
  return new JsHeap();
}
