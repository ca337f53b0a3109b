import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../src/store/apiKeys.js';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec } from './helpers/contract.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

async function createKey(name: string, scopes: string[], headers = t.auth) {
  const res = await t.app.inject({ method: 'POST', url: '/v1/api-keys', headers, payload: { name, scopes } });
  return res;
}

describe('/v1/api-keys', () => {
  it('creates a key, shows the secret once, stores only its hash', async () => {
    const res = await createKey('ci', ['write']);
    expect(res.statusCode).toBe(201);
    expectMatchesSpec('POST', '/v1/api-keys', res);
    const body = res.json();
    expect(body).toMatchObject({ name: 'ci', scopes: ['write'], prefix: body.key.slice(0, 8) });
    expect(body.key).toMatch(/^inv_[\w-]{43}$/);
    const row = await t.db.prisma.apiKey.findUniqueOrThrow({ where: { id: body.id } });
    expect(row.hash).toBe(hashKey(body.key));

    const list = await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: t.auth });
    expectMatchesSpec('GET', '/v1/api-keys', list);
    expect(list.body).not.toContain(body.key);
    expect(list.json().items.map((k: { name: string }) => k.name)).toContain('ci');
  });

  it('scopes: read reads, write uploads and runs, only admin manages keys', async () => {
    const reader = (await createKey('reader', ['read'])).json().key as string;
    const writer = (await createKey('writer', ['write'])).json().key as string;
    expect(
      (await t.app.inject({ method: 'GET', url: '/v1/models', headers: bearer(reader) })).statusCode,
    ).toBe(200);
    const denied = await t.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: bearer(reader),
      payload: {},
    });
    expect(denied.statusCode).toBe(403);
    expect(denied.json()).toMatchObject({ code: 'INSUFFICIENT_SCOPE', requiredScope: 'write' });
    // write implies read
    expect((await t.app.inject({ method: 'GET', url: '/v1/runs', headers: bearer(writer) })).statusCode).toBe(
      200,
    );
    const noAdmin = await createKey('x', ['read'], bearer(writer));
    expect(noAdmin.statusCode).toBe(403);
    expect(noAdmin.json()).toMatchObject({ code: 'INSUFFICIENT_SCOPE', requiredScope: 'admin' });
    const noDelete = await t.app.inject({
      method: 'DELETE',
      url: '/v1/models/00000000-0000-4000-8000-000000000000',
      headers: bearer(writer),
    });
    expect(noDelete.json()).toMatchObject({ code: 'INSUFFICIENT_SCOPE', requiredScope: 'admin' });
  });

  it('revokes at once; unknown ids are 404', async () => {
    const created = (await createKey('temp', ['read'])).json();
    expect(
      (await t.app.inject({ method: 'GET', url: '/v1/runs', headers: bearer(created.key) })).statusCode,
    ).toBe(200);
    const del = await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${created.id}`, headers: t.auth });
    expect(del.statusCode).toBe(204);
    const after = await t.app.inject({ method: 'GET', url: '/v1/runs', headers: bearer(created.key) });
    expect(after.statusCode).toBe(401);
    const again = await t.app.inject({
      method: 'DELETE',
      url: `/v1/api-keys/${created.id}`,
      headers: t.auth,
    });
    expect(again.statusCode).toBe(404);
    expectMatchesSpec('DELETE', '/v1/api-keys/{id}', again);
    const bogus = await t.app.inject({ method: 'DELETE', url: '/v1/api-keys/nope', headers: t.auth });
    expect(bogus.statusCode).toBe(404);
  });

  it('refuses bad bodies with 400', async () => {
    for (const payload of [
      { name: 'x', scopes: ['root'] },
      { name: '', scopes: ['read'] },
      { name: 'x', scopes: [] },
      { name: 'x', scopes: ['read'], extra: 1 },
    ]) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/api-keys', headers: t.auth, payload });
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      expect(res.json().code).toBe('VALIDATION_FAILED');
    }
  });
});
