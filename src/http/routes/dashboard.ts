// The web dashboard: a static single-page app (public/: hand-written ES modules and CSS, no build
// step, no CDN) served without a key. Every data call it makes goes to the API with the user's key.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { AppError } from '../problem.js';

export const PUBLIC_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'public',
);

/** Everything the page loads comes from this origin; images are fetched with the key (blob: URLs). */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "form-action 'self'",
].join('; ');

const AssetParams = Type.Object({ file: Type.String({ maxLength: 100 }) });
const ASSET = /^[a-z][a-z0-9-]*\.(js|css|svg|png|ico)$/;

function secure(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-cache');
}

export async function dashboardRoutes(app: FastifyInstance) {
  // Encapsulated: sendFile only, no routes of its own.
  await app.register(fastifyStatic, { root: PUBLIC_DIR, serve: false });

  app.get('/', { config: { scope: 'public' } }, async (_req, reply) =>
    secure(reply).type('text/html; charset=utf-8').sendFile('index.html'),
  );

  app.get(
    '/ui/:file',
    { config: { scope: 'public' }, schema: { params: AssetParams } },
    async (req, reply) => {
      const { file } = req.params as Static<typeof AssetParams>;
      if (!ASSET.test(file)) throw new AppError(404, 'NOT_FOUND', `no dashboard asset ${file}`);
      return secure(reply).sendFile(file);
    },
  );
}
