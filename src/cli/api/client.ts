// A small JSON client for the service: bearer key, problem+json errors, retries while polling.
// Uploads go through ./upload.ts (node:http), since fetch buffers request bodies (see there).
import { CliError, EXIT, type ProblemBody, ProblemError, UnreachableError, UsageError } from '../errors.js';

export interface ClientOptions {
  server: string;
  apiKey: string;
  userAgent: string;
  /** Per-request limit for JSON requests (ms). */
  requestTimeoutMs?: number;
}

export type Query = Record<string, string | number | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  /** Also retry network errors and 502/503/504 a few times (polling: see withRetries). */
  retry?: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Longest single wait a Retry-After may ask for, and the most "come back later" answers taken. */
const MAX_RETRY_AFTER_MS = 60_000;
const MAX_LATER_ANSWERS = 8;

/** A Retry-After header (seconds or an HTTP date) in ms, within [0, 60 s]; undefined when absent. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value.trim());
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}

/**
 * Runs `attempt` again after the answers that mean "not done, come back later": 429 and 503
 * (rate limits, too many uploads, overload), waiting what their Retry-After asks (1 s without
 * one), at most 8 times, for any request, since the service did not act on it. With `transient`,
 * also after no answer at all and 502/503/504, with growing delays (polling: a server restart is
 * not a failure; not for requests that may have been acted on).
 */
export async function withRetries<T>(attempt: () => Promise<T>, transient = false): Promise<T> {
  const delays = transient ? [500, 1000, 2000, 4000, 8000] : [];
  let later = 0;
  let failures = 0;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      const status = err instanceof ProblemError ? err.problem.status : 0;
      if ((status === 429 || status === 503) && later < MAX_LATER_ANSWERS) {
        later++;
        await sleep((err as ProblemError).retryAfterMs ?? 1000);
        continue;
      }
      const retryable = err instanceof UnreachableError || [502, 503, 504].includes(status);
      if (!retryable || failures >= delays.length) throw err;
      await sleep(delays[failures++]);
    }
  }
}

/** Why a request got no answer, from fetch's or node:http's error. */
export function describeNetworkError(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  if (cause instanceof Error) {
    if (cause.name === 'TimeoutError') return 'no answer in time';
    const code = (cause as NodeJS.ErrnoException).code;
    // undici wraps several connect errors in an AggregateError (IPv4 and IPv6 attempts).
    if (!code && cause instanceof AggregateError && cause.errors[0] instanceof Error) {
      return describeNetworkError(cause.errors[0]);
    }
    return code ? `${code}${cause.message.includes(code) ? '' : ` (${cause.message})`}` : cause.message;
  }
  return String(cause);
}

/** Turns a non-2xx answer into a ProblemError, keeping the service's code and detail. */
export function problemFromResponse(status: number, statusText: string, text: string): ProblemBody {
  try {
    const body = JSON.parse(text) as Partial<ProblemBody>;
    if (body && typeof body === 'object' && typeof body.code === 'string') {
      return { ...body, status, code: body.code, detail: String(body.detail ?? body.title ?? statusText) };
    }
  } catch {
    // not JSON: a proxy's error page, say
  }
  return { status, code: `HTTP_${status}`, detail: text.trim().slice(0, 300) || statusText || 'no detail' };
}

export function parseJsonBody<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CliError(`${what}: the service answered with something that is not JSON`, EXIT.service);
  }
}

export class ApiClient {
  readonly base: URL;
  readonly apiKey: string;
  readonly userAgent: string;
  private readonly requestTimeoutMs: number;

  constructor(opts: ClientOptions) {
    let base: URL;
    try {
      base = new URL(opts.server);
    } catch {
      throw new UsageError(`--server: not a URL: ${opts.server}`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new UsageError(`--server: expected an http:// or https:// URL, got ${opts.server}`);
    }
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.base = base;
    this.apiKey = opts.apiKey;
    this.userAgent = opts.userAgent;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 60_000;
  }

  /** An API path (e.g. `/v1/runs`) resolved against the server URL, which may have a path prefix. */
  url(path: string, query: Query = {}): URL {
    const url = new URL(path.replace(/^\//, ''), this.base);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
    return url;
  }

  headers(): Record<string, string> {
    return {
      authorization: `Bearer ${this.apiKey}`,
      accept: 'application/json, application/problem+json',
      'user-agent': this.userAgent,
    };
  }

  get<T>(path: string, opts: Omit<RequestOptions, 'body'> = {}): Promise<T> {
    return this.request<T>('GET', path, opts).then((r) => r.body);
  }

  post<T>(path: string, body?: unknown): Promise<{ status: number; body: T }> {
    return this.request<T>('POST', path, { body });
  }

  async request<T>(
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<{ status: number; body: T }> {
    return withRetries(() => this.once<T>(method, path, opts), opts.retry === true);
  }

  private async once<T>(
    method: string,
    path: string,
    opts: RequestOptions,
  ): Promise<{ status: number; body: T }> {
    const url = this.url(path, opts.query);
    const what = `${method} ${url.pathname}`;
    const headers = this.headers();
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
      text = await res.text();
    } catch (err) {
      throw new UnreachableError(`cannot reach ${this.base.origin} (${what}): ${describeNetworkError(err)}`);
    }
    if (!res.ok) {
      const problem = problemFromResponse(res.status, res.statusText, text);
      throw new ProblemError(problem, what, parseRetryAfter(res.headers.get('retry-after')));
    }
    return { status: res.status, body: (text ? parseJsonBody<T>(text, what) : undefined) as T };
  }
}
