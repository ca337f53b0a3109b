// Small streaming helpers shared by the format readers: a budget on unpacked bytes (counted as
// they are actually produced, never trusted from headers), an exact-length reader over an async
// stream of chunks, and gzip-aware file opening.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline, type Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { IngestError, type IngestLimits, invalid } from './errors.js';

/** Counts unpacked bytes across a whole upload; throws UNCOMPRESSED_TOO_LARGE past the limit. */
/** What reading an images/labels file pair (IDX or .npy, each raw or gzip) takes. */
export interface PairIngestOptions {
  imagesPath: string;
  labelsPath: string;
  outPath: string;
  limits: IngestLimits;
  budget: ByteBudget;
  classNames?: readonly string[];
}

export class ByteBudget {
  used = 0;
  constructor(readonly limit: number) {}

  add(n: number, entry?: string): void {
    this.used += n;
    if (this.used > this.limit) {
      throw new IngestError(
        'UNCOMPRESSED_TOO_LARGE',
        `more than ${this.limit} bytes unpacked (MAX_UNCOMPRESSED_BYTES)`,
        entry,
      );
    }
  }

  /** A pass-through stream that charges every byte to this budget. */
  meter(entry?: string): Transform {
    return new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        try {
          this.add(chunk.length, entry);
        } catch (err) {
          return done(err as Error);
        }
        done(null, chunk);
      },
    });
  }
}

/** Reads exact byte counts from an async iterable of chunks, then hands out the rest. */
export class ChunkReader {
  private readonly it: AsyncIterator<Buffer>;
  private pending: Buffer | null = null;
  /** Bytes handed out so far. */
  position = 0;

  constructor(
    source: AsyncIterable<Buffer>,
    private readonly what: string,
  ) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async pull(): Promise<Buffer | null> {
    if (this.pending) {
      const p = this.pending;
      this.pending = null;
      return p;
    }
    const r = await this.it.next();
    return r.done ? null : Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
  }

  /** Exactly n bytes, or INVALID_DATASET "truncated" if the stream ends first. */
  async readExact(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let have = 0;
    while (have < n) {
      const chunk = await this.pull();
      if (!chunk) throw invalid(`${this.what} is truncated (ended after ${this.position + have} bytes)`);
      const take = Math.min(chunk.length, n - have);
      parts.push(take === chunk.length ? chunk : chunk.subarray(0, take));
      if (take < chunk.length) this.pending = chunk.subarray(take);
      have += take;
    }
    this.position += n;
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, n);
  }

  /** The remaining chunks (including any already buffered). */
  async *rest(): AsyncGenerator<Buffer> {
    for (;;) {
      const chunk = await this.pull();
      if (!chunk) return;
      this.position += chunk.length;
      yield chunk;
    }
  }

  /** Stops the underlying stream early. */
  async close(): Promise<void> {
    await this.it.return?.();
  }
}

export async function readHead(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export const isGzip = (head: Uint8Array) => head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;

/**
 * A stream of a file's content, gunzipped when it starts with the gzip magic; with a budget, the
 * gunzipped bytes are charged to it. Errors (corrupt gzip, budget) surface on the returned stream.
 */
export async function openMaybeGunzip(path: string, budget?: ByteBudget, entry?: string): Promise<Readable> {
  const gz = isGzip(await readHead(path, 2));
  const file = createReadStream(path, { highWaterMark: 256 * 1024 });
  if (!gz) return file;
  const noop = () => undefined;
  const gunzip = createGunzip({ chunkSize: 64 * 1024 });
  if (!budget) return pipeline(file, gunzip, noop);
  return pipeline(file, gunzip, budget.meter(entry), noop);
}
