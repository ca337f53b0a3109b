// Use-cases for datasets: register an upload (dedup, convert to the canonical form, store the
// blob and the row), read, list, delete. The upload's parts arrive as temp files; this module
// owns them from then on and removes them whatever happens.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import type { Config } from '../config.js';
import { AppError, notFound } from '../http/problem.js';
import { IngestError, type IngestSource, ingestDataset } from '../ingest/index.js';
import { isConstraintViolation } from '../store/blobLock.js';
import type { BlobStore, TempFile } from '../store/blobStore.js';
import type { Database } from '../store/database.js';
import {
  type DatasetFilter,
  type DatasetRecord,
  type DatasetRepository,
  datasetRepository,
  type Page,
  type PageRequest,
} from '../store/datasetRepository.js';

export interface UploadedPart extends TempFile {
  filename?: string;
}

export interface DatasetUpload {
  /** One archive / npz (`file`), or an IDX or .npy pair (`images` + `labels`). */
  file?: UploadedPart;
  images?: UploadedPart;
  labels?: UploadedPart;
  name?: string;
  classNames?: string[];
}

export interface DatasetServiceDeps {
  config: Config;
  db: Database;
  blobs: BlobStore;
}

/** The identity of an upload: the file's sha256, or sha256("<images>:<labels>") for a pair. */
export function uploadSha256(upload: DatasetUpload): string {
  if (upload.file) return upload.file.sha256;
  if (upload.images && upload.labels) {
    return createHash('sha256').update(`${upload.images.sha256}:${upload.labels.sha256}`).digest('hex');
  }
  throw new AppError(400, 'VALIDATION_FAILED', 'send either "file" or both "images" and "labels"');
}

function defaultName(upload: DatasetUpload): string {
  const from = upload.file?.filename ?? upload.images?.filename;
  const base = from
    ?.split(/[\\/]/)
    .pop()
    ?.replace(/(\.(gz|tgz|tar|zip|npz|npy))+$/i, '')
    // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them (PostgreSQL text cannot hold U+0000)
    .replace(/[\u0000-\u001f\u007f]/g, '')
    .trim();
  return (base || 'dataset').slice(0, 200);
}

async function sha256OfFile(path: string): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }))
    hash.update(chunk as Buffer);
  return { sha256: hash.digest('hex'), sizeBytes: (await stat(path)).size };
}

function toProblem(err: IngestError): AppError {
  return new AppError(422, err.code, err.message, err.entry !== undefined ? { entry: err.entry } : {});
}

/** True when the upload states no class names, or exactly the stored ones. */
function sameClassNames(dataset: DatasetRecord, classNames: readonly string[] | undefined): boolean {
  if (!classNames) return true;
  return (
    classNames.length === dataset.classes.length && dataset.classes.every((c, i) => c.name === classNames[i])
  );
}

/** 409 DATASET_EXISTS: these bytes are stored already, under other class names. */
function existsWithOtherNames(dataset: DatasetRecord): AppError {
  return new AppError(
    409,
    'DATASET_EXISTS',
    `the same bytes are stored as dataset ${dataset.id} with other class names; ` +
      'send its class names (or none) to get that dataset, or delete it first to store them with new names',
    { datasetId: dataset.id },
  );
}

/** The existing dataset for a re-upload, or 409 when the upload names its classes otherwise. */
function reuse(dataset: DatasetRecord, upload: DatasetUpload): { dataset: DatasetRecord; created: false } {
  if (!sameClassNames(dataset, upload.classNames)) throw existsWithOtherNames(dataset);
  return { dataset, created: false };
}

export class DatasetService {
  readonly repo: DatasetRepository;

  constructor(private readonly deps: DatasetServiceDeps) {
    this.repo = datasetRepository(deps.db.prisma);
  }

  /**
   * Registers an upload. The same upload again returns the existing dataset (created: false),
   * unchanged (a new `name` is ignored, as for models); `classNames` are checked as on a first
   * upload (422 when they do not fit the data) and, when they differ from the stored ones, refused
   * with 409 DATASET_EXISTS. Throws AppError 422 for bad content; leaves no row, blob or temp file
   * behind on failure.
   */
  async register(upload: DatasetUpload): Promise<{ dataset: DatasetRecord; created: boolean }> {
    const { blobs, config } = this.deps;
    const parts = [upload.file, upload.images, upload.labels].filter((p): p is UploadedPart => !!p);
    const canonicalTmp = blobs.tempPath('.invds');
    try {
      const sha256 = uploadSha256(upload);
      const source: IngestSource = upload.file
        ? { kind: 'file', path: upload.file.path, filename: upload.file.filename }
        : { kind: 'idx', imagesPath: upload.images!.path, labelsPath: upload.labels!.path };
      const ingest = async () => {
        try {
          return await ingestDataset(source, canonicalTmp, {
            limits: config.limits,
            classNames: upload.classNames,
          });
        } catch (err) {
          if (err instanceof IngestError) throw toProblem(err);
          throw err;
        }
      };

      const existing = await this.repo.findBySha256(sha256);
      if (existing) {
        const names = upload.classNames;
        // At least as many names as stored classes always fit (the stored classes cover every
        // label and, for archives, every class folder). Fewer may not: check them against the data
        // exactly as a first upload does (422 if they do not fit), discarding the result.
        if (names && !sameClassNames(existing, names) && names.length < existing.classes.length) {
          await ingest();
        }
        return reuse(existing, upload);
      }

      const result = await ingest();
      // The uploaded parts are no longer needed; free the disk before hashing the canonical file.
      await Promise.all(parts.map((p) => rm(p.path, { force: true })));
      const blob = await sha256OfFile(canonicalTmp);
      const { meta } = result;

      return await this.repo.withBlobLock(blob.sha256, async (tx) => {
        // A concurrent identical upload may have won while this one was converting.
        const raced = await tx.findBySha256(sha256);
        if (raced) return reuse(raced, upload);
        const hadBlob = await blobs.has(blob.sha256);
        await blobs.adoptTemp({ path: canonicalTmp, sha256: blob.sha256, sizeBytes: blob.sizeBytes });
        try {
          const dataset = await tx.create({
            sha256,
            name: upload.name ?? defaultName(upload),
            format: result.format,
            count: meta.count,
            width: meta.width,
            height: meta.height,
            channels: meta.channels,
            dtype: meta.dtype,
            classes: result.classes,
            blobSha256: blob.sha256,
            sizeBytes: blob.sizeBytes,
          });
          return { dataset, created: true };
        } catch (err) {
          if (!hadBlob) await blobs.remove(blob.sha256);
          throw err;
        }
      });
    } catch (err) {
      if (isConstraintViolation(err, 'P2002')) {
        const existing = await this.repo.findBySha256(uploadSha256(upload));
        if (existing) return reuse(existing, upload);
      }
      throw err;
    } finally {
      await Promise.all([
        ...parts.map((p) => rm(p.path, { force: true })),
        rm(canonicalTmp, { force: true }),
      ]);
    }
  }

  async get(id: string): Promise<DatasetRecord> {
    const dataset = await this.repo.findById(id);
    if (!dataset) throw notFound('dataset', id);
    return dataset;
  }

  list(page: PageRequest, filter: DatasetFilter = {}): Promise<Page<DatasetRecord>> {
    return this.repo.list(page, filter);
  }

  /** 404 if unknown, 409 DATASET_IN_USE while a run references it; removes the blob when unreferenced. */
  async delete(id: string): Promise<void> {
    const dataset = await this.repo.findById(id);
    if (!dataset) throw notFound('dataset', id);
    const inUse = () =>
      new AppError(
        409,
        'DATASET_IN_USE',
        `dataset ${id} is used by at least one run; delete those runs first (DELETE /v1/runs/{id})`,
      );
    try {
      await this.repo.withBlobLock(dataset.blobSha256, async (tx) => {
        if (await tx.isInUse(id)) throw inUse();
        if (!(await tx.delete(id))) throw notFound('dataset', id);
        if (!(await tx.blobReferenced(dataset.blobSha256))) await this.deps.blobs.remove(dataset.blobSha256);
      });
    } catch (err) {
      if (isConstraintViolation(err, 'P2003')) throw inUse();
      throw err;
    }
  }
}
