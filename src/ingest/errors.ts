// Errors raised while reading an uploaded dataset. The service layer maps them to 4xx problem
// responses (422 for content problems); `entry` names the archive entry or part at fault.

export type IngestErrorCode =
  | 'INVALID_DATASET'
  | 'ARCHIVE_PATH_UNSAFE'
  | 'TOO_MANY_IMAGES'
  | 'TOO_MANY_ENTRIES'
  | 'UNCOMPRESSED_TOO_LARGE'
  | 'IMAGE_TOO_LARGE'
  | 'UNSUPPORTED_DATASET_FORMAT';

export class IngestError extends Error {
  constructor(
    readonly code: IngestErrorCode,
    detail: string,
    readonly entry?: string,
  ) {
    super(detail);
    this.name = 'IngestError';
  }
}

export const invalid = (detail: string, entry?: string) => new IngestError('INVALID_DATASET', detail, entry);

/** True for errors of node:zlib (corrupt or truncated gzip/deflate data). */
export function isZlibError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && code.startsWith('Z_');
}

/**
 * Picks the error to report: the first IngestError among the candidates, else corrupt
 * compressed data as INVALID_DATASET, else the first candidate unchanged (a server-side failure).
 */
export function pickError(context: string, ...candidates: unknown[]): unknown {
  for (const c of candidates) if (c instanceof IngestError) return c;
  for (const c of candidates) {
    if (isZlibError(c)) return invalid(`${context}: corrupt compressed data (${(c as Error).message})`);
  }
  return candidates.find((c) => c !== undefined && c !== null);
}

export interface IngestLimits {
  /** Most images (samples) in one dataset. */
  maxDatasetImages: number;
  /** Most bytes unpacked from archives / gzip, and most bytes of decoded pixels. */
  maxUncompressedBytes: number;
  /** Most pixels (width x height) of one image. */
  maxImagePixels: number;
  /** Most entries in one archive. */
  maxArchiveEntries: number;
}

/** Count, image size and decoded size against the limits; `what` names the source in messages. */
export function checkDatasetShape(
  shape: { count: number; height: number; width: number; channels: number; bytesPerValue: number },
  limits: IngestLimits,
  what: string,
): void {
  const { count, height, width, channels } = shape;
  if (count === 0) throw invalid(`${what}: the dataset has no images`, what);
  if (count > limits.maxDatasetImages) {
    throw new IngestError(
      'TOO_MANY_IMAGES',
      `${what}: ${count} images exceed the limit of ${limits.maxDatasetImages} (MAX_DATASET_IMAGES)`,
      what,
    );
  }
  if (height < 1 || width < 1) throw invalid(`${what}: image size ${width}x${height} is empty`, what);
  if (channels < 1 || channels > 4) throw invalid(`${what}: ${channels} channels (expected 1 to 4)`, what);
  if (width * height > limits.maxImagePixels) {
    throw new IngestError(
      'IMAGE_TOO_LARGE',
      `${what}: ${width}x${height} pixels exceed the limit of ${limits.maxImagePixels} (MAX_IMAGE_PIXELS)`,
      what,
    );
  }
  const decoded = count * height * width * channels * shape.bytesPerValue;
  if (decoded > limits.maxUncompressedBytes) {
    throw new IngestError(
      'UNCOMPRESSED_TOO_LARGE',
      `${what}: ${decoded} bytes of decoded pixels exceed the limit of ${limits.maxUncompressedBytes} (MAX_UNCOMPRESSED_BYTES)`,
      what,
    );
  }
}
