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
  /** Retry network errors and 502/503/504 a few times (polling: a server restart is not a failure). */
  retry?: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
    const delays = opts.retry ? [500, 1000, 2000, 4000, 8000] : [];
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once<T>(method, path, opts);
      } catch (err) {
        const transient =
          err instanceof UnreachableError ||
          (err instanceof ProblemError && [502, 503, 504].includes(err.problem.status));
        if (!transient || attempt >= delays.length) throw err;
        await sleep(delays[attempt]);
      }
    }
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
    if (!res.ok) throw new ProblemError(problemFromResponse(res.status, res.statusText, text), what);
    return { status: res.status, body: (text ? parseJsonBody<T>(text, what) : undefined) as T };
  }
}
