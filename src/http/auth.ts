// Bearer API keys on every route except the public ones (health, OpenAPI, docs).
// A route states what it needs with `config: { scope }`; the default is `read` for GET/HEAD
// and `write` for everything else.
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

/** admin implies write implies read. */
export function grants(scopes: readonly Scope[], needed: Scope): boolean {
  if (scopes.includes('admin')) return true;
  if (needed === 'read') return scopes.includes('read') || scopes.includes('write');
  return scopes.includes(needed);
}

export const authPlugin = fp(async (app: FastifyInstance, opts: { keys: ApiKeyRepository }) => {
  app.decorateRequest('apiKey', null);
  app.addHook('onRequest', async (req) => {
    // Unknown routes fall through to the 404 handler without asking for a key.
    if (!req.routeOptions.url) return;
    const needed = requiredScope(req);
    if (needed === 'public') return;
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) throw new AppError(401, 'UNAUTHORIZED', 'missing "Authorization: Bearer <api key>" header');
    const key = await opts.keys.authenticate(match[1]);
    if (!key) throw new AppError(401, 'UNAUTHORIZED', 'the API key is not valid or has been revoked');
    if (!grants(key.scopes, needed)) {
      throw new AppError(403, 'INSUFFICIENT_SCOPE', `this route needs the "${needed}" scope`, {
        requiredScope: needed,
      });
    }
    req.apiKey = key;
  });
});
