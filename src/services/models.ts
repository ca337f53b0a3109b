// Use cases for models: register an upload, read, list, delete. No HTTP framework here: the
// route hands over the multipart parts as a plain async iterable.
import type { Readable } from 'node:stream';
import type { Config } from '../config.js';
import { classifierOutput } from '../domain/runSpec.js';
import { type Dim, inspectModel, type ModelInfo, type TensorInfo } from '../engine/onnxModel.js';
import { AppError, notFound } from '../http/problem.js';
import { isConstraintViolation } from '../store/blobLock.js';
import { type BlobStore, BlobTooLargeError, type TempFile } from '../store/blobStore.js';
import type {
  Layout,
  ModelFilter,
  ModelRecord,
  ModelRepository,
  Page,
  PageRequest,
  Preprocessing,
} from '../store/modelRepository.js';

export interface ModelDeps {
  repo: ModelRepository;
  blobs: BlobStore;
  config: Config;
}

/** One part of a multipart upload. A file part's stream must be consumed before the next part. */
export type UploadPart =
  | { type: 'file'; fieldname: string; filename: string; stream: Readable }
  | { type: 'field'; fieldname: string; value: unknown; truncated: boolean };

/** What the client may state about the model; all optional. */
export interface ModelFields {
  name?: string;
  version?: string;
  tags?: string[];
  preprocessing?: Partial<Preprocessing>;
}

const FIELD_NAMES = ['name', 'version', 'tags', 'preprocessing'] as const;
const MAX_NAME = 200;
const MAX_VERSION = 100;
const MAX_TAG = 64;
const MAX_TAGS = 32;
// biome-ignore lint/suspicious/noControlCharactersInRegex: this is the check for them
const CONTROL = /[\u0000-\u001f\u007f]/;

function badRequest(detail: string, path?: string): AppError {
  return new AppError(400, 'VALIDATION_FAILED', detail, path ? { errors: [{ path, message: detail }] } : {});
}

// ---------------------------------------------------------------------------------------------
// Fields

function text(field: string, value: unknown, max: number): string {
  if (typeof value !== 'string') throw badRequest(`field "${field}" must be text`, `body/${field}`);
  const trimmed = value.trim();
  if (trimmed.length === 0) throw badRequest(`field "${field}" must not be empty`, `body/${field}`);
  if (trimmed.length > max) {
    throw badRequest(`field "${field}" is longer than ${max} characters`, `body/${field}`);
  }
  if (CONTROL.test(trimmed)) {
    throw badRequest(`field "${field}" must not contain control characters`, `body/${field}`);
  }
  return trimmed;
}

function parseTags(value: unknown): string[] {
  const raw = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : null;
  if (!raw || raw.some((t) => typeof t !== 'string')) {
    throw badRequest('field "tags" must be a comma-separated list', 'body/tags');
  }
  const tags = [...new Set((raw as string[]).map((t) => t.trim()).filter((t) => t.length > 0))];
  if (tags.length > MAX_TAGS) throw badRequest(`at most ${MAX_TAGS} tags are allowed`, 'body/tags');
  if (tags.some((t) => CONTROL.test(t))) {
    throw badRequest('tags must not contain control characters', 'body/tags');
  }
  const long = tags.find((t) => t.length > MAX_TAG);
  if (long)
    throw badRequest(`tag "${long.slice(0, 20)}..." is longer than ${MAX_TAG} characters`, 'body/tags');
  return tags;
}

function numberList(key: 'mean' | 'std', value: unknown): number[] {
  const path = `body/preprocessing/${key}`;
  if (!Array.isArray(value) || value.length === 0 || value.length > 64) {
    throw badRequest(`preprocessing.${key} must be a non-empty array of numbers, one per channel`, path);
  }
  for (const v of value) {
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw badRequest(`preprocessing.${key} must contain finite numbers only`, path);
    }
    if (key === 'std' && v <= 0) throw badRequest('preprocessing.std values must be > 0', path);
  }
  return value as number[];
}

/** Validates the `preprocessing` field (JSON text, or an object if sent as application/json). */
export function parsePreprocessing(value: unknown): Partial<Preprocessing> {
  let obj: unknown = value;
  if (typeof value === 'string') {
    try {
      obj = JSON.parse(value);
    } catch (err) {
      throw badRequest(
        `field "preprocessing" is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
        'body/preprocessing',
      );
    }
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) {
    throw badRequest(
      'field "preprocessing" must be a JSON object {mean, std, layout, outputIsProbability}',
      'body/preprocessing',
    );
  }
  const out: Partial<Preprocessing> = {};
  for (const [key, v] of Object.entries(obj)) {
    switch (key) {
      case 'mean':
      case 'std':
        out[key] = numberList(key, v);
        break;
      case 'layout':
        if (v !== 'NCHW' && v !== 'NHWC') {
          throw badRequest('preprocessing.layout must be "NCHW" or "NHWC"', 'body/preprocessing/layout');
        }
        out.layout = v;
        break;
      case 'outputIsProbability':
        if (typeof v !== 'boolean') {
          throw badRequest(
            'preprocessing.outputIsProbability must be true or false',
            'body/preprocessing/outputIsProbability',
          );
        }
        out.outputIsProbability = v;
        break;
      default:
        throw badRequest(
          `preprocessing has an unknown property "${key.slice(0, 50)}" (allowed: mean, std, layout, outputIsProbability)`,
          'body/preprocessing',
        );
    }
  }
  return out;
}

function parseField(fields: ModelFields, name: string, value: unknown): void {
  switch (name) {
    case 'name':
      fields.name = text('name', value, MAX_NAME);
      break;
    case 'version':
      fields.version = text('version', value, MAX_VERSION);
      break;
    case 'tags':
      fields.tags = parseTags(value);
      break;
    case 'preprocessing':
      fields.preprocessing = parsePreprocessing(value);
      break;
  }
}

/** The default model name: the upload's file name without folders and the .onnx extension. */
export function nameFromFilename(filename: string | undefined): string {
  const base = (filename ?? '').split(/[/\\]/).pop() ?? '';
  const name = base
    .replace(/\.onnx$/i, '')
    .replace(new RegExp(CONTROL.source, 'g'), '')
    .trim();
  return name ? name.slice(0, MAX_NAME) : 'model';
}

// ---------------------------------------------------------------------------------------------
// Preprocessing

/**
 * NCHW when dim 1 looks like channels (1 or 3), NHWC when dim 3 does; a symbolic dim 1 or 3 next
 * to two fixed ones is the channel dim (and is then refused as not fixed); otherwise the smaller
 * fixed one.
 */
export function inferLayout(shape: readonly Dim[]): Layout {
  const [, d1, d2, d3] = shape;
  const channelLike = (d: Dim | undefined) => d === 1 || d === 3;
  const fixed = (d: Dim | undefined) => typeof d === 'number';
  if (channelLike(d1)) return 'NCHW';
  if (channelLike(d3)) return 'NHWC';
  if (!fixed(d1) && fixed(d2) && fixed(d3)) return 'NCHW';
  if (!fixed(d3) && fixed(d1) && fixed(d2)) return 'NHWC';
  if (typeof d1 === 'number' && (typeof d3 !== 'number' || d1 <= d3)) return 'NCHW';
  if (typeof d3 === 'number') return 'NHWC';
  return 'NCHW';
}

/** Fills defaults (mean 0, std 1 per channel, layout from the input shape) and checks lengths. */
export function resolvePreprocessing(given: Partial<Preprocessing>, input: TensorInfo): Preprocessing {
  const shape = input.shape ?? [];
  const layout = given.layout ?? inferLayout(shape);
  const channels = shape[layout === 'NCHW' ? 1 : 3];
  const where = `input ${input.name} ${layout} [${shape.map((d) => d ?? '?').join(',')}]`;
  if (typeof channels !== 'number' || channels < 1) {
    throw new AppError(
      422,
      'UNSUPPORTED_MODEL',
      `the channel dimension of ${where} is not a fixed size; the model needs a fixed number of channels`,
    );
  }
  for (const key of ['mean', 'std'] as const) {
    const values = given[key];
    if (values && values.length !== channels) {
      throw new AppError(
        422,
        'INVALID_PREPROCESSING',
        `preprocessing.${key} has ${values.length} value(s) but ${where} has ${channels} channel(s)`,
      );
    }
  }
  return {
    mean: given.mean ?? new Array(channels).fill(0),
    std: given.std ?? new Array(channels).fill(1),
    layout,
    outputIsProbability: given.outputIsProbability ?? false,
  };
}

// ---------------------------------------------------------------------------------------------
// Register

/** At most this many model inspections (ONNX Runtime sessions) at once in this process. */
const MAX_CONCURRENT_INSPECTIONS = 2;
let inspecting = 0;
const waiting: Array<() => void> = [];

async function limited<T>(fn: () => Promise<T>): Promise<T> {
  if (inspecting >= MAX_CONCURRENT_INSPECTIONS) {
    await new Promise<void>((resolve) => waiting.push(resolve));
  } else {
    inspecting++;
  }
  try {
    return await fn();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else inspecting--;
  }
}

function isFsError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code);
}

async function receiveFile(deps: ModelDeps, part: Extract<UploadPart, { type: 'file' }>): Promise<TempFile> {
  try {
    return await deps.blobs.writeTemp(part.stream, deps.config.limits.maxModelBytes);
  } catch (err) {
    if (err instanceof BlobTooLargeError) {
      throw new AppError(
        413,
        'PAYLOAD_TOO_LARGE',
        `the model file exceeds the limit of ${err.limit} bytes (MAX_MODEL_BYTES)`,
        { limit: err.limit },
      );
    }
    if (err instanceof AppError || (err as { statusCode?: unknown }).statusCode || isFsError(err)) throw err;
    // The request stream broke off or the multipart framing is wrong.
    throw badRequest(
      `the upload of "file" did not complete: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/**
 * Registers an uploaded model. The `file` part is streamed to a temp file (hashing as it goes);
 * the same bytes as an existing model return that model with created=false. Otherwise the file
 * is inspected (422 INVALID_MODEL / EXTERNAL_DATA_UNSUPPORTED / UNSUPPORTED_MODEL /
 * INVALID_PREPROCESSING), moved into the blob store and recorded. Whatever fails, the temp file
 * is removed and no row is left.
 */
export async function registerModel(
  deps: ModelDeps,
  parts: AsyncIterable<UploadPart>,
): Promise<{ model: ModelRecord; created: boolean }> {
  let temp: TempFile | null = null;
  let adopted = false;
  let filename: string | undefined;
  const fields: ModelFields = {};
  const seen = new Set<string>();
  try {
    for await (const part of parts) {
      if (part.type === 'file') {
        if (part.fieldname !== 'file' || temp) {
          part.stream.resume();
          throw badRequest(
            part.fieldname !== 'file'
              ? `unexpected file part "${part.fieldname.slice(0, 50)}"; send the model as the "file" part`
              : 'only one "file" part is allowed',
            `body/${part.fieldname.slice(0, 50)}`,
          );
        }
        filename = part.filename;
        temp = await receiveFile(deps, part);
        continue;
      }
      const name = part.fieldname;
      if (name === 'file') {
        throw badRequest(
          '"file" must be a file part (a Content-Disposition with a filename), not a plain field',
          'body/file',
        );
      }
      if (!(FIELD_NAMES as readonly string[]).includes(name)) {
        throw badRequest(
          `unknown field "${name.slice(0, 50)}" (allowed: file, ${FIELD_NAMES.join(', ')})`,
          `body/${name.slice(0, 50)}`,
        );
      }
      if (part.truncated) {
        throw new AppError(413, 'PAYLOAD_TOO_LARGE', `field "${name}" is larger than the field size limit`);
      }
      if (seen.has(name)) throw badRequest(`field "${name}" is given more than once`, `body/${name}`);
      seen.add(name);
      parseField(fields, name, part.value);
    }
    if (!temp) throw badRequest('the request has no "file" part (the .onnx model)', 'body/file');
    const file: TempFile = temp;

    const existing = await deps.repo.findBySha256(file.sha256);
    if (existing) return { model: existing, created: false };

    const info: ModelInfo = await limited(() => inspectModel(file.path));
    const given = { ...fields.preprocessing };
    // A classifier output computed by a Softmax already is a probability vector (unless told).
    if (given.outputIsProbability === undefined) {
      const scores = classifierOutput(info.outputs)?.output.name;
      if (scores !== undefined && info.probabilityOutputs.includes(scores)) given.outputIsProbability = true;
    }
    const preprocessing = resolvePreprocessing(given, info.inputs[0]);
    const result = await deps.repo.withBlobLock(file.sha256, async (tx) => {
      const again = await tx.findBySha256(file.sha256);
      if (again) return { model: again, created: false };
      const model = await tx.create({
        sha256: file.sha256,
        name: fields.name ?? nameFromFilename(filename),
        version: fields.version ?? null,
        tags: fields.tags ?? [],
        sizeBytes: file.sizeBytes,
        opset: info.opset,
        inputs: info.inputs,
        outputs: info.outputs,
        layers: info.layers,
        preprocessing,
      });
      // Inside the transaction: if the move fails, the row is rolled back.
      await deps.blobs.adoptTemp(file);
      adopted = true;
      return { model, created: true };
    });
    return result;
  } catch (err) {
    // Same bytes registered concurrently by another process between our check and insert.
    if (temp && isConstraintViolation(err, 'P2002')) {
      const existing = await deps.repo.findBySha256(temp.sha256);
      if (existing) return { model: existing, created: false };
    }
    throw err;
  } finally {
    if (temp && !adopted) await deps.blobs.removeTemp(temp.path);
  }
}

// ---------------------------------------------------------------------------------------------
// Read, list, delete

export async function getModel(deps: Pick<ModelDeps, 'repo'>, id: string): Promise<ModelRecord> {
  const model = await deps.repo.findById(id);
  if (!model) throw notFound('model', id.slice(0, 100));
  return model;
}

export function listModels(
  deps: Pick<ModelDeps, 'repo'>,
  page: PageRequest,
  filter: ModelFilter = {},
): Promise<Page<ModelRecord>> {
  return deps.repo.list(page, filter);
}

function inUse(id: string): AppError {
  return new AppError(
    409,
    'MODEL_IN_USE',
    `model ${id} is referenced by runs; delete those runs first (DELETE /v1/runs/{id})`,
  );
}

/** Deletes the row, and the blob file when nothing else refers to it. 409 MODEL_IN_USE while runs exist. */
export async function deleteModel(deps: Pick<ModelDeps, 'repo' | 'blobs'>, id: string): Promise<void> {
  const model = await getModel(deps, id);
  if (await deps.repo.isInUse(model.id)) throw inUse(model.id);
  try {
    await deps.repo.withBlobLock(model.sha256, async (tx) => {
      if (!(await tx.delete(model.id))) throw notFound('model', model.id);
      if (!(await tx.blobReferenced(model.sha256))) await deps.blobs.remove(model.sha256);
    });
  } catch (err) {
    // A run was created between the check and the delete (the foreign key restricts it).
    if (isConstraintViolation(err, 'P2003')) throw inUse(model.id);
    throw err;
  }
}
