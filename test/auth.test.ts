import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
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

  it('a revoked bootstrap key stays revoked across restarts; a new INVARIANCE_ADMIN_KEY retires the old', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'inv-admin-'));
    try {
      const keys = apiKeyRepository(t.db.prisma);
      const idOf = async (secret: string) => (await keys.authenticate(secret))?.id as string;
      // admin.key revoked through the API: the next start writes and shows a new key.
      const first = await ensureAdminKey(keys, { dataDir: dir, fromEnv: null });
      expect(await keys.revoke(await idOf(first.key))).toBe(true);
      const again = await ensureAdminKey(keys, { dataDir: dir, fromEnv: null });
      expect(again).toMatchObject({ generated: true, replacedRevoked: true });
      expect(again.key).not.toBe(first.key);
      expect(await keys.authenticate(first.key)).toBeNull();
      expect((await keys.authenticate(again.key))?.name).toBe('bootstrap-admin (admin.key)');
      expect((await readFile(path.join(dir, 'admin.key'), 'utf8')).trim()).toBe(again.key);
      expect(statSync(path.join(dir, 'admin.key')).mode & 0o777).toBe(0o600);

      // INVARIANCE_ADMIN_KEY: rotating the value revokes the old one; a revoked value stays revoked.
      const one = 'inv_env_key_one_0123456789';
      const two = 'inv_env_key_two_0123456789';
      // (the previous test's INVARIANCE_ADMIN_KEY value is retired here too)
      await ensureAdminKey(keys, { dataDir: dir, fromEnv: one });
      expect(await keys.authenticate('inv_from_env_secret_value_123')).toBeNull();
      expect((await ensureAdminKey(keys, { dataDir: dir, fromEnv: two })).retired).toBe(1);
      expect(await keys.authenticate(one)).toBeNull();
      expect((await keys.authenticate(two))?.scopes).toEqual(['admin']);
      expect(await keys.revoke(await idOf(two))).toBe(true);
      const revoked = await ensureAdminKey(keys, { dataDir: dir, fromEnv: two });
      expect(revoked.envKeyRevoked).toBe(true);
      expect(await keys.authenticate(two)).toBeNull();
      // admin.key is another source: untouched by the rotation.
      expect(await keys.authenticate(again.key)).not.toBeNull();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('INVARIANCE_ADMIN_KEY must be a real credential', () => {
    for (const bad of ['x', 'short-key', 'has a space in it 123']) {
      expect(() => loadConfig({ INVARIANCE_ADMIN_KEY: bad })).toThrow(ConfigError);
    }
    expect(loadConfig({ INVARIANCE_ADMIN_KEY: 'inv_long_enough_key_0001' }).adminKey).toBe(
      'inv_long_enough_key_0001',
    );
  });

  it('records when a key was last used (to the minute)', async () => {
    const keys = apiKeyRepository(t.db.prisma, t.db.pool);
    const { key, record } = await keys.create('used', ['read']);
    expect(record.lastUsedAt).toBeNull();
    const before = Date.now();
    await keys.authenticate(key);
    let stored: Date | null = null;
    for (let i = 0; i < 50 && !stored; i++) {
      await new Promise((r) => setTimeout(r, 20));
      stored = (await t.db.prisma.apiKey.findUnique({ where: { id: record.id } }))?.lastUsedAt ?? null;
    }
    expect(stored?.getTime()).toBeGreaterThanOrEqual(before - 1000);
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
