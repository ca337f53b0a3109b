// Bearer API keys on every route except the public ones (health, OpenAPI, docs).
// A route states what it needs with `config: { scope }`; the default is `read` for GET/HEAD
// and `write` for everything else.
// Invalid keys are counted per client address (AUTH_FAILURES_PER_MINUTE): the per-key rate limit
// runs after authentication, so without this key guessing would meet no limit at all.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { ApiKeyRecord, ApiKeyRepository, Scope } from '../store/apiKeys.js';
import { AppError } from './problem.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** 'public': no key needed. */
    scope?: Scope | 'public';
  }
  interface FastifyRequest {
    apiKey: ApiKeyRecord | null;
  }
}

const PUBLIC_PREFIXES = ['/healthz', '/readyz', '/openapi.yaml', '/openapi.json', '/docs'];

function requiredScope(req: FastifyRequest): Scope | 'public' {
  const declared = req.routeOptions.config?.scope;
  if (declared) return declared;
  const url = req.routeOptions.url ?? req.url;
  if (PUBLIC_PREFIXES.some((p) => url === p || url.startsWith(`${p}/`))) return 'public';
  return req.method === 'GET' || req.method === 'HEAD' ? 'read' : 'write';
}

/**
 * Invalid keys per client address in fixed windows (as @fastify/rate-limit counts requests).
 * Entries sit in the Map in the order their windows began, so expired ones are dropped from the
 * front as new ones come, and the oldest go first past `maxAddresses`: memory stays bounded
 * when the guesses come from many addresses.
 */
export class AuthFailureCounter {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();

  constructor(
    readonly max: number,
    private readonly windowMs = 60_000,
    private readonly maxAddresses = 100_000,
  ) {}

  /** Milliseconds until `address` may present a key again; 0 while it is under the limit. */
  blockedFor(address: string, now = Date.now()): number {
    const w = this.windows.get(address);
    return w && w.resetAt > now && w.count >= this.max ? w.resetAt - now : 0;
  }

  record(address: string, now = Date.now()): void {
    const w = this.windows.get(address);
    if (w && w.resetAt > now) {
      w.count++;
      return;
    }
    this.windows.delete(address);
    for (const [oldest, o] of this.windows) {
      if (o.resetAt > now && this.windows.size < this.maxAddresses) break;
      this.windows.delete(oldest);
    }
    this.windows.set(address, { count: 1, resetAt: now + this.windowMs });
  }

  get size(): number {
    return this.windows.size;
  }
}

/** admin implies write implies read. */
export function grants(scopes: readonly Scope[], needed: Scope): boolean {
  if (scopes.includes('admin')) return true;
  if (needed === 'read') return scopes.includes('read') || scopes.includes('write');
  return scopes.includes(needed);
}

export interface AuthOptions {
  keys: ApiKeyRepository;
  /** Invalid keys per minute per client address before 429 TOO_MANY_AUTH_FAILURES; 0: no limit. */
  failuresPerMinute: number;
}

export const authPlugin = fp(async (app: FastifyInstance, opts: AuthOptions) => {
  const failures = opts.failuresPerMinute > 0 ? new AuthFailureCounter(opts.failuresPerMinute) : null;
  app.decorateRequest('apiKey', null);
  app.addHook('onRequest', async (req) => {
    // Unknown routes fall through to the 404 handler without asking for a key.
    if (!req.routeOptions.url) return;
    const needed = requiredScope(req);
    if (needed === 'public') return;
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) throw new AppError(401, 'UNAUTHORIZED', 'missing "Authorization: Bearer <api key>" header');
    // An address over the limit is refused before its key is looked at, valid or not: answering
    // a valid key would tell a guesser which guess was right. Valid keys from other addresses
    // pay one Map lookup.
    const blockedMs = failures?.blockedFor(req.ip) ?? 0;
    if (blockedMs > 0) {
      const retryAfter = Math.max(1, Math.ceil(blockedMs / 1000));
      throw new AppError(
        429,
        'TOO_MANY_AUTH_FAILURES',
        `more than ${failures?.max} invalid API keys per minute from this address; retry in ${retryAfter} s`,
        { retryAfter },
      );
    }
    const key = await opts.keys.authenticate(match[1]);
    if (!key) {
      failures?.record(req.ip);
      throw new AppError(401, 'UNAUTHORIZED', 'the API key is not valid or has been revoked');
    }
    if (!grants(key.scopes, needed)) {
      throw new AppError(403, 'INSUFFICIENT_SCOPE', `this route needs the "${needed}" scope`, {
        requiredScope: needed,
      });
    }
    req.apiKey = key;
  });
});
