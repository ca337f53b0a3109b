// Content-addressed files under DATA_DIR/blobs/sha256/<aa>/<hash>. Writes go to DATA_DIR/tmp
// first and are renamed into place, so a reader never sees a half-written blob and a failed
// upload leaves nothing behind.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface StoredBlob {
  sha256: string;
  sizeBytes: number;
  path: string;
}

export class BlobTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`exceeds the limit of ${limit} bytes`);
  }
}

export interface TempFile {
  path: string;
  sha256: string;
  sizeBytes: number;
}

export class BlobStore {
  readonly blobsDir: string;
  readonly tmpDir: string;
  /** Bytes streamed through writeTemp (i.e. uploads received) since start, for GET /metrics. */
  receivedBytes = 0;

  constructor(dataDir: string) {
    this.blobsDir = path.join(dataDir, 'blobs', 'sha256');
    this.tmpDir = path.join(dataDir, 'tmp');
  }

  async init(): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    // Anything left in tmp is from a process that died mid-upload.
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

  pathOf(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return path.join(this.blobsDir, sha256.slice(0, 2), sha256);
  }

  /** A fresh path in the temp folder; the caller removes it or hands it to adoptTemp. */
  tempPath(suffix = ''): string {
    return path.join(this.tmpDir, randomUUID() + suffix);
  }

  /** Streams into a temp file while hashing; never holds the content in memory. */
  async writeTemp(source: Readable, maxBytes = Number.POSITIVE_INFINITY): Promise<TempFile> {
    const tmp = this.tempPath();
    const hash = createHash('sha256');
    let size = 0;
    const count = (n: number) => {
      this.receivedBytes += n;
    };
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        count(chunk.length);
        if (size > maxBytes) return done(new BlobTooLargeError(maxBytes));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, meter, createWriteStream(tmp, { flags: 'wx' }));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return { path: tmp, sha256: hash.digest('hex'), sizeBytes: size };
  }

  /** Moves a finished temp file into the store under its hash (idempotent). */
  async adoptTemp(file: TempFile): Promise<StoredBlob> {
    const dest = this.pathOf(file.sha256);
    await mkdir(path.dirname(dest), { recursive: true });
    if (await this.has(file.sha256)) {
      await rm(file.path, { force: true });
    } else {
      await rename(file.path, dest);
    }
    return { sha256: file.sha256, sizeBytes: file.sizeBytes, path: dest };
  }

  /** Hashes a file already written in tmp (e.g. a converted dataset) and adopts it. */
  async adoptFile(tmpPath: string): Promise<StoredBlob> {
    const hash = createHash('sha256');
    let size = 0;
    await pipeline(createReadStream(tmpPath), async (chunks: AsyncIterable<Buffer>) => {
      for await (const c of chunks) {
        hash.update(c);
        size += c.length;
      }
    });
    return this.adoptTemp({ path: tmpPath, sha256: hash.digest('hex'), sizeBytes: size });
  }

  async has(sha256: string): Promise<boolean> {
    try {
      await stat(this.pathOf(sha256));
      return true;
    } catch {
      return false;
    }
  }

  async remove(sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true });
  }

  async removeTemp(p: string): Promise<void> {
    await rm(p, { force: true, recursive: true });
  }
}
