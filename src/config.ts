// Every setting of the service, read from the environment in one place and typed.
// The README's configuration table documents the same names and defaults.
import os from 'node:os';
import path from 'node:path';

export type ExecutionProvider = 'cpu' | 'cuda';
export type Role = 'api' | 'worker' | 'all';

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  /** null: start an embedded PostgreSQL under dataDir/pg. */
  databaseUrl: string | null;
  embeddedPgPort: number;
  adminKey: string | null;
  /**
   * Fastify's trustProxy: whom to believe about the client address in X-Forwarded-For (rate
   * limits and key-guessing limits count per address). false: the socket's peer.
   */
  trustProxy: boolean | string[];
  logLevel: string;
  role: Role;
  limits: {
    maxModelBytes: number;
    maxDatasetBytes: number;
    maxDatasetImages: number;
    maxUncompressedBytes: number;
    maxImagePixels: number;
    maxArchiveEntries: number;
    maxRunInferences: number;
    maxRunPoints: number;
  };
  /** Inferences per shard: one queue job, one persisted partial, progress at least this often. */
  shardInferences: number;
  /** Seconds without a heartbeat after which a running shard is given to another worker. */
  shardStaleSeconds: number;
  shardRetries: number;
  webhooks: {
    retryLimit: number;
    retryDelaySeconds: number;
    timeoutMs: number;
    pollMs: number;
    /** Webhook deliveries in flight at once in this process. */
    concurrency: number;
  };
  workers: number;
  ortThreads: number;
  ortEp: ExecutionProvider;
  /**
   * Nice value (0..19) of the engine threads, so that a sweep yields the CPU to the API's main
   * thread and PostgreSQL on a shared machine; 0 leaves them at the process's priority.
   */
  engineNice: number;
  /** Protection against overload (src/http/overload.ts). */
  overload: {
    /** Requests per minute per API key (per IP without a key); 0 disables the limit. */
    rateLimitPerMinute: number;
    /** Uploads (POST /v1/models, /v1/datasets) processed at once by this process; more get 503. */
    maxConcurrentUploads: number;
    /** Mean event-loop delay (ms) above which requests get 503 OVERLOADED; 0 disables the check. */
    maxEventLoopDelayMs: number;
    /** How often the event-loop delay is sampled (ms). */
    pressureSampleMs: number;
    /** Failed authentications (invalid API keys) per minute per client IP, then 429; 0 disables. */
    authFailuresPerMinute: number;
  };
  /** GET /metrics without an API key (Prometheus scrapers usually cannot send one). */
  metricsPublic: boolean;
}

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min = 0, max = Number.POSITIVE_INFINITY): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.POSITIVE_INFINITY ? `>= ${min}` : `from ${min} to ${max}`;
    throw new ConfigError(`${name} must be an integer ${range}, got "${raw}"`);
  }
  return value;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['true', '1', 'yes'].includes(raw)) return true;
  if (['false', '0', 'no'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
}

const GiB = 1024 ** 3;

/**
 * TRUST_PROXY: unset or false (the socket's peer is the client), true (the left-most
 * X-Forwarded-For entry: only behind a proxy that sets it), or a comma-separated list of proxy
 * addresses or CIDR ranges whose X-Forwarded-For is believed.
 */
function trustProxy(env: Env): boolean | string[] {
  const raw = env.TRUST_PROXY?.trim();
  if (!raw || raw === 'false') return false;
  if (raw === 'true') return true;
  const list = raw.split(',').map((s) => s.trim());
  if (list.some((s) => !/^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(s))) {
    throw new ConfigError(`TRUST_PROXY must be true, false or a list of addresses/CIDR ranges, got "${raw}"`);
  }
  return list;
}

/** INVARIANCE_ADMIN_KEY: an admin credential, so at least 16 characters and no whitespace. */
function adminKey(env: Env): string | null {
  const raw = env.INVARIANCE_ADMIN_KEY;
  if (!raw) return null;
  if (raw.length < 16 || /\s/.test(raw)) {
    throw new ConfigError(
      `INVARIANCE_ADMIN_KEY must be at least 16 characters without whitespace (got ${raw.length} characters)`,
    );
  }
  return raw;
}

export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Config {
  const cores = Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  const ortThreads = int(env, 'ORT_THREADS', 1, 1);
  const workers = int(env, 'WORKERS', Math.max(1, Math.floor(cores / ortThreads)), 1);
  const config: Config = {
    port: int(env, 'PORT', 8080),
    host: env.HOST || '0.0.0.0',
    dataDir: path.resolve(env.DATA_DIR || './data'),
    databaseUrl: env.DATABASE_URL || null,
    embeddedPgPort: int(env, 'EMBEDDED_PG_PORT', 0),
    adminKey: adminKey(env),
    trustProxy: trustProxy(env),
    logLevel: env.LOG_LEVEL || 'info',
    role: oneOf(env, 'ROLE', ['api', 'worker', 'all'] as const, 'all'),
    limits: {
      maxModelBytes: int(env, 'MAX_MODEL_BYTES', GiB, 1),
      maxDatasetBytes: int(env, 'MAX_DATASET_BYTES', 2 * GiB, 1),
      maxDatasetImages: int(env, 'MAX_DATASET_IMAGES', 1_000_000, 1),
      maxUncompressedBytes: int(env, 'MAX_UNCOMPRESSED_BYTES', 4 * GiB, 1),
      maxImagePixels: int(env, 'MAX_IMAGE_PIXELS', 4096 * 4096, 1),
      maxArchiveEntries: int(env, 'MAX_ARCHIVE_ENTRIES', 1_100_000, 1),
      maxRunInferences: int(env, 'MAX_RUN_INFERENCES', 50_000_000, 1),
      maxRunPoints: int(env, 'MAX_RUN_POINTS', 100_000, 1),
    },
    shardInferences: int(env, 'SHARD_INFERENCES', 8_000, 1),
    shardStaleSeconds: int(env, 'SHARD_STALE_SECONDS', 15, 1),
    shardRetries: int(env, 'SHARD_RETRIES', 2, 0),
    webhooks: {
      retryLimit: int(env, 'WEBHOOK_RETRIES', 8, 0),
      retryDelaySeconds: int(env, 'WEBHOOK_RETRY_DELAY_SECONDS', 5, 1),
      timeoutMs: int(env, 'WEBHOOK_TIMEOUT_MS', 10_000, 100),
      pollMs: int(env, 'WEBHOOK_POLL_MS', 1000, 50),
      concurrency: int(env, 'WEBHOOK_CONCURRENCY', 4, 1, 64),
    },
    workers,
    ortThreads,
    ortEp: oneOf(env, 'ORT_EP', ['cpu', 'cuda'] as const, 'cpu'),
    engineNice: int(env, 'ENGINE_NICE', 10, 0, 19),
    overload: {
      rateLimitPerMinute: int(env, 'RATE_LIMIT_PER_MINUTE', 600, 0),
      maxConcurrentUploads: int(env, 'MAX_CONCURRENT_UPLOADS', 4, 1),
      maxEventLoopDelayMs: int(env, 'MAX_EVENT_LOOP_DELAY_MS', 1000, 0),
      pressureSampleMs: int(env, 'PRESSURE_SAMPLE_MS', 1000, 10),
      authFailuresPerMinute: int(env, 'AUTH_FAILURES_PER_MINUTE', 30, 0),
    },
    metricsPublic: bool(env, 'METRICS_PUBLIC', true),
  };
  if (config.workers * config.ortThreads > cores) {
    throw new ConfigError(
      `WORKERS (${config.workers}) x ORT_THREADS (${config.ortThreads}) exceeds the ${cores} available cores`,
    );
  }
  return { ...config, ...overrides, limits: { ...config.limits, ...overrides.limits } };
}
