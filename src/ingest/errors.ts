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

/** The first IngestError among the candidates, else an INVALID_DATASET wrapping the first error. */
export function asIngestError(context: string, ...candidates: unknown[]): IngestError {
  for (const c of candidates) if (c instanceof IngestError) return c;
  const first = candidates.find((c) => c !== undefined && c !== null);
  const message = first instanceof Error ? first.message : String(first ?? 'unknown error');
  return invalid(`${context}: ${message}`);
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
