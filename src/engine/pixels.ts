// Stored samples (HWC, uint8 0..255 or float32 0..1) to planar float32 in [0,1] for the
// transform graphs, and an optional resize to the model's input size.

/** [B, H, W, C] uint8 or float32 -> [B, C, H, W] float32 in [0,1]. */
export function toPlanarFloat(
  pixels: Uint8Array | Float32Array,
  batch: number,
  height: number,
  width: number,
  channels: number,
): Float32Array {
  const hw = height * width;
  const out = new Float32Array(batch * channels * hw);
  const scale = pixels instanceof Uint8Array ? 1 / 255 : 1;
  if (channels === 1) {
    for (let i = 0; i < out.length; i++) out[i] = pixels[i] * scale;
    return out;
  }
  for (let b = 0; b < batch; b++) {
    const src = b * hw * channels;
    const dst = b * hw * channels;
    for (let p = 0; p < hw; p++) {
      for (let c = 0; c < channels; c++) out[dst + c * hw + p] = pixels[src + p * channels + c] * scale;
    }
  }
  return out;
}

/**
 * Bilinear resize of `planes` planes of h x w to h2 x w2 (half-pixel centres, edge clamped: the
 * convention of PyTorch's interpolate with align_corners=False and of PIL's bilinear upscaling).
 */
export function resizeBilinear(
  src: Float32Array,
  planes: number,
  h: number,
  w: number,
  h2: number,
  w2: number,
): Float32Array {
  const out = new Float32Array(planes * h2 * w2);
  const sy = h / h2;
  const sx = w / w2;
  for (let y = 0; y < h2; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), h - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, h - 1);
    const wy = fy - y0;
    for (let x = 0; x < w2; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), w - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, w - 1);
      const wx = fx - x0;
      for (let p = 0; p < planes; p++) {
        const base = p * h * w;
        const top = src[base + y0 * w + x0] * (1 - wx) + src[base + y0 * w + x1] * wx;
        const bottom = src[base + y1 * w + x0] * (1 - wx) + src[base + y1 * w + x1] * wx;
        out[p * h2 * w2 + y * w2 + x] = top * (1 - wy) + bottom * wy;
      }
    }
  }
  return out;
}
