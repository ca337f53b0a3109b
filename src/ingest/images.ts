// Decoding PNG/JPEG/WebP with sharp. probeImage reads only the header (size, greyscale) so the
// pixel limit is checked before anything is decoded; decodeImage turns an image into raw HWC
// uint8 pixels of a given size and channel count.
//
// Conversions (documented in openapi.yaml):
// - transparency is flattened onto black (alpha is dropped; 0 is also the transforms' fill value);
// - 1 channel: luminance (sharp greyscale); 3 channels: sRGB;
// - an image of another size is resized to the target with fit 'fill' (aspect ratio not kept);
// - 16-bit images are reduced to 8 bits; EXIF orientation is not applied (pixels as stored);
// - animated images: the first frame.
import sharp, { type Metadata } from 'sharp';
import { IngestError, invalid } from './errors.js';

export interface ImageProbe {
  format: 'png' | 'jpeg' | 'webp';
  width: number;
  height: number;
  /** Greyscale (with or without alpha). */
  grey: boolean;
}

const FORMATS = new Set(['png', 'jpeg', 'webp']);

function tooLarge(entry: string, width: number, height: number, max: number): IngestError {
  return new IngestError(
    'IMAGE_TOO_LARGE',
    `image "${entry}" is ${width}x${height} pixels, more than the limit of ${max} (MAX_IMAGE_PIXELS)`,
    entry,
  );
}

export async function probeImage(data: Buffer, entry: string, maxPixels: number): Promise<ImageProbe> {
  let meta: Metadata;
  try {
    // Header only: libvips reads no pixel data for metadata(); the size is checked below.
    meta = await sharp(data, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw invalid(`image "${entry}" cannot be read: ${(err as Error).message.split('\n')[0]}`, entry);
  }
  const format = meta.format ?? 'unknown';
  if (!FORMATS.has(format)) {
    throw invalid(`"${entry}" is a ${format} image; only PNG, JPEG and WebP are accepted`, entry);
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width < 1 || height < 1) throw invalid(`image "${entry}" has no size`, entry);
  if (width * height > maxPixels) throw tooLarge(entry, width, height, maxPixels);
  const grey = meta.space === 'b-w' || meta.space === 'grey16' || (meta.channels ?? 3) <= 2;
  return { format: format as ImageProbe['format'], width, height, grey };
}

export interface DecodeTarget {
  width: number;
  height: number;
  channels: 1 | 3;
}

/** Raw pixels, H x W x C uint8 (HWC), at the target size. */
export async function decodeImage(
  data: Buffer,
  entry: string,
  source: { width: number; height: number },
  target: DecodeTarget,
  maxPixels: number,
): Promise<Buffer> {
  try {
    let img = sharp(data, { limitInputPixels: maxPixels }).flatten({ background: { r: 0, g: 0, b: 0 } });
    if (source.width !== target.width || source.height !== target.height) {
      img = img.resize(target.width, target.height, { fit: 'fill' });
    }
    img = target.channels === 1 ? img.greyscale() : img.toColourspace('srgb');
    const { data: pixels, info } = await img
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.width !== target.width || info.height !== target.height || info.channels !== target.channels) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}`);
    }
    return pixels;
  } catch (err) {
    const message = (err as Error).message.split('\n')[0];
    if (/pixel limit/i.test(message)) throw tooLarge(entry, source.width, source.height, maxPixels);
    throw invalid(`image "${entry}" is corrupt or cannot be decoded: ${message}`, entry);
  }
}
