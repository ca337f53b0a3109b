// Zip reading over yauzl (random access from the central directory). Entry names are decoded
// and checked here (not by yauzl) so an unsafe name is reported as ARCHIVE_PATH_UNSAFE with the
// entry; inflated bytes are charged to the budget as they are produced.
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import yauzl from 'yauzl';
import { IngestError, type IngestLimits, invalid, isZlibError } from './errors.js';
import { safeEntrySegments } from './paths.js';
import type { ByteBudget } from './streams.js';

export interface ZipEntryInfo {
  /** Decoded name as stored (backslashes turned into slashes). */
  name: string;
  /** Safe path segments. */
  segments: string[];
  isDirectory: boolean;
  /** Uncompressed size as declared by the archive (not trusted for limits). */
  declaredSize: number;
  entry: yauzl.Entry;
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/** A zip/yauzl failure as INVALID_DATASET; system errors (EIO, ENOSPC...) are passed through. */
export function zipError(err: unknown, entry?: string): unknown {
  if (err instanceof IngestError) return err;
  if (isZlibError(err)) {
    return invalid(
      `zip entry${entry ? ` "${entry}"` : ''}: corrupt compressed data (${(err as Error).message})`,
      entry,
    );
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (err instanceof Error && typeof code === 'string' && /^E[A-Z]/.test(code)) return err;
  if (err instanceof TypeError || err instanceof RangeError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return invalid(`not a valid zip archive${entry ? ` (entry "${entry}")` : ''}: ${message}`, entry);
}

export class ZipArchive {
  private constructor(private readonly zip: yauzl.ZipFile) {}

  static async open(path: string): Promise<ZipArchive> {
    try {
      const zip = await yauzl.openPromise(path, {
        lazyEntries: true,
        autoClose: false,
        decodeStrings: false,
        // Sizes are enforced by counting actual inflated bytes (ByteBudget), not by headers.
        validateEntrySizes: false,
        strictFileNames: false,
      });
      return new ZipArchive(zip);
    } catch (err) {
      throw zipError(err);
    }
  }

  get entryCount(): number {
    return this.zip.entryCount;
  }

  /** Every entry, with safe names; refuses symlinks, encrypted entries and too many entries. */
  async entries(limits: IngestLimits): Promise<ZipEntryInfo[]> {
    if (this.zip.entryCount > limits.maxArchiveEntries) {
      throw new IngestError(
        'TOO_MANY_ENTRIES',
        `the archive has ${this.zip.entryCount} entries, more than the limit of ${limits.maxArchiveEntries} (MAX_ARCHIVE_ENTRIES)`,
      );
    }
    const out: ZipEntryInfo[] = [];
    try {
      for await (const entry of this.zip.eachEntry()) {
        if (out.length >= limits.maxArchiveEntries) {
          throw new IngestError(
            'TOO_MANY_ENTRIES',
            `the archive has more than ${limits.maxArchiveEntries} entries (MAX_ARCHIVE_ENTRIES)`,
          );
        }
        const name = yauzl.getFileNameLowLevel(
          entry.generalPurposeBitFlag,
          entry.fileNameRaw,
          entry.extraFields,
          false,
        );
        const segments = safeEntrySegments(name);
        const mode = (entry.externalFileAttributes >>> 16) & S_IFMT;
        if (mode === S_IFLNK) {
          throw new IngestError('ARCHIVE_PATH_UNSAFE', `archive entry "${name}" is a symbolic link`, name);
        }
        const isDirectory = name.endsWith('/');
        if (!isDirectory) {
          if (entry.isEncrypted()) throw invalid(`zip entry "${name}" is encrypted`, name);
          if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
            throw invalid(
              `zip entry "${name}" uses unsupported compression method ${entry.compressionMethod} (only stored and deflate)`,
              name,
            );
          }
        }
        out.push({ name, segments, isDirectory, declaredSize: entry.uncompressedSize, entry });
      }
    } catch (err) {
      throw zipError(err);
    }
    return out;
  }

  /** The entry's inflated content as a stream, metered by the budget when one is given. */
  async openStream(info: ZipEntryInfo, budget?: ByteBudget): Promise<Readable> {
    let raw: Readable;
    try {
      raw = await this.zip.openReadStreamPromise(info.entry);
    } catch (err) {
      throw zipError(err, info.name);
    }
    if (!budget) return raw;
    return pipeline(raw, budget.meter(info.name), () => undefined);
  }

  /** The whole entry in memory, refusing more than maxBytes (counted, not trusted from headers). */
  async readAll(
    info: ZipEntryInfo,
    maxBytes: number,
    onTooLarge: () => Error,
    budget?: ByteBudget,
  ): Promise<Buffer> {
    const stream = await this.openStream(info, budget);
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBytes) throw onTooLarge();
        chunks.push(chunk);
      }
    } catch (err) {
      stream.destroy();
      throw zipError(err, info.name);
    }
    return Buffer.concat(chunks, size);
  }

  close(): void {
    this.zip.close();
  }
}
