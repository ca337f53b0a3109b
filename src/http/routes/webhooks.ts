import { randomUUID } from 'node:crypto';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../../app.js';
import { WEBHOOK_EVENTS } from '../../jobs/webhooks.js';
import { isUuid } from '../../store/ids.js';
import { afterCursor, decodeCursor, pageOrder, toPage } from '../../store/pagination.js';
import { AppError, notFound } from '../problem.js';

const CreateBody = Type.Object(
  {
    url: Type.String({ minLength: 8, maxLength: 2000 }),
    secret: Type.String({ minLength: 8, maxLength: 500 }),
    events: Type.Array(Type.Union(WEBHOOK_EVENTS.map((e) => Type.Literal(e))), {
      minItems: 1,
      maxItems: WEBHOOK_EVENTS.length,
      uniqueItems: true,
    }),
  },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ maxLength: 100 }) });
const PageQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

interface WebhookRow {
  id: string;
  url: string;
  events: string[];
  createdAt: Date;
}

const present = (w: WebhookRow) => ({
  id: w.id,
  url: w.url,
  events: w.events,
  createdAt: w.createdAt.toISOString(),
});

function checkUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new AppError(422, 'INVALID_WEBHOOK_URL', `"${raw.slice(0, 100)}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AppError(422, 'INVALID_WEBHOOK_URL', 'webhook URLs must be http or https');
  }
  if (url.username || url.password) {
    throw new AppError(422, 'INVALID_WEBHOOK_URL', 'put credentials in the secret, not in the URL');
  }
  return url.toString();
}

export async function webhookRoutes(app: FastifyInstance, deps: AppDeps) {
  const { prisma } = deps.db;
  const admin = { config: { scope: 'admin' as const } };

  async function find(id: string) {
    const hook = isUuid(id) ? await prisma.webhook.findFirst({ where: { id, deletedAt: null } }) : null;
    if (!hook) throw notFound('webhook', id);
    return hook;
  }

  app.post('/v1/webhooks', { ...admin, schema: { body: CreateBody } }, async (req, reply) => {
    const body = req.body as Static<typeof CreateBody>;
    const hook = await prisma.webhook.create({
      data: { id: randomUUID(), url: checkUrl(body.url), secret: body.secret, events: body.events },
    });
    return reply.status(201).header('location', `/v1/webhooks/${hook.id}`).send(present(hook));
  });

  app.get('/v1/webhooks', admin, async () => ({
    items: (await prisma.webhook.findMany({ where: { deletedAt: null }, orderBy: pageOrder })).map(present),
  }));

  app.get('/v1/webhooks/:id', { ...admin, schema: { params: IdParams } }, async (req) =>
    present(await find((req.params as Static<typeof IdParams>).id)),
  );

  app.delete('/v1/webhooks/:id', { ...admin, schema: { params: IdParams } }, async (req, reply) => {
    const hook = await find((req.params as Static<typeof IdParams>).id);
    await prisma.webhook.update({ where: { id: hook.id }, data: { deletedAt: new Date() } });
    return reply.status(204).send();
  });

  app.get(
    '/v1/webhooks/:id/deliveries',
    { ...admin, schema: { params: IdParams, querystring: PageQuery } },
    async (req) => {
      const hook = await find((req.params as Static<typeof IdParams>).id);
      const q = req.query as Static<typeof PageQuery>;
      const rows = await prisma.webhookDelivery.findMany({
        where: { AND: [{ webhookId: hook.id }, afterCursor(decodeCursor(q.cursor))] },
        orderBy: pageOrder,
        take: q.limit + 1,
      });
      return toPage(rows, q.limit, (d) => ({
        id: d.id,
        event: d.event,
        status: d.status,
        attempts: d.attempts,
        lastStatusCode: d.lastStatusCode,
        lastError: d.lastError,
        lastDurationMs: d.lastDurationMs,
        createdAt: d.createdAt.toISOString(),
        updatedAt: d.updatedAt.toISOString(),
        deliveredAt: d.deliveredAt?.toISOString() ?? null,
        body: JSON.parse(d.body) as unknown,
      }));
    },
  );
}
