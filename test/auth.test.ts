import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grants } from '../src/http/auth.js';
import { ensureAdminKey } from '../src/store/adminKey.js';
import { apiKeyRepository, hashKey } from '../src/store/apiKeys.js';
import { createTestApp, type TestApp } from './helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

describe('API keys', () => {
  it('are stored only as hashes', async () => {
    const rows = await t.db.prisma.apiKey.findMany();
    expect(rows).toHaveLength(1);
    expect(rows[0].hash).toBe(hashKey(t.adminKey));
    expect(JSON.stringify(rows)).not.toContain(t.adminKey);
  });

  it('bootstrap admin key: generated once into DATA_DIR/admin.key with mode 0600, then reused', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'inv-admin-'));
    try {
      const keys = apiKeyRepository(t.db.prisma);
      const first = await ensureAdminKey(keys, { dataDir: dir, fromEnv: null });
      expect(first.generated).toBe(true);
      const file = path.join(dir, 'admin.key');
      expect(existsSync(file)).toBe(true);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect((await readFile(file, 'utf8')).trim()).toBe(first.key);
      const second = await ensureAdminKey(keys, { dataDir: dir, fromEnv: null });
      expect(second).toMatchObject({ generated: false, key: first.key });
      expect((await keys.authenticate(first.key))?.scopes).toEqual(['admin']);

      const fromEnv = await ensureAdminKey(keys, { dataDir: dir, fromEnv: 'inv_from_env_secret_value_123' });
      expect(fromEnv.generated).toBe(false);
      expect((await keys.authenticate('inv_from_env_secret_value_123'))?.scopes).toEqual(['admin']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('revoked keys stop working at once', async () => {
    const keys = apiKeyRepository(t.db.prisma);
    const { key, record } = await keys.create('temp', ['read']);
    expect(await keys.authenticate(key)).not.toBeNull();
    expect(await keys.revoke(record.id)).toBe(true);
    expect(await keys.authenticate(key)).toBeNull();
    expect(await keys.authenticate('inv_not-a-key')).toBeNull();
  });

  it('scopes: admin implies write implies read', () => {
    expect(grants(['admin'], 'write')).toBe(true);
    expect(grants(['write'], 'read')).toBe(true);
    expect(grants(['read'], 'write')).toBe(false);
    expect(grants(['write'], 'admin')).toBe(false);
  });
});

describe('HTTP auth', () => {
  const protectedUrl = '/v1/models';

  it('401 problem+json without a key, with a malformed header, or with a wrong key', async () => {
    for (const headers of [{}, { authorization: 'Basic abc' }, { authorization: 'Bearer inv_wrong' }]) {
      const res = await t.app.inject({ method: 'GET', url: protectedUrl, headers });
      expect(res.statusCode).toBe(401);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(res.json()).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
    }
  });

  it('403 INSUFFICIENT_SCOPE names the missing scope', async () => {
    const { key } = await apiKeyRepository(t.db.prisma).create('reader', ['read']);
    const res = await t.app.inject({
      method: 'POST',
      url: protectedUrl,
      headers: { authorization: `Bearer ${key}` },
    });
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ code: 'INSUFFICIENT_SCOPE', requiredScope: 'write' });
  });

  it('public routes need no key', async () => {
    for (const url of ['/healthz', '/readyz', '/openapi.yaml', '/openapi.json']) {
      expect((await t.app.inject({ method: 'GET', url })).statusCode).toBe(200);
    }
  });
});
