import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './helpers/app.js';
import { expectMatchesSpec, specPaths } from './helpers/contract.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

// Fastify route URLs use :param; OpenAPI uses {param}.
const toSpecPath = (url: string) => url.replace(/:(\w+)/g, '{$1}');

describe('openapi.yaml', () => {
  it('documents every registered route', () => {
    const routes = t.app.routeList;
    expect(routes.length).toBeGreaterThan(4);
    const paths = specPaths();
    const missing = routes
      .filter((r) => r.method !== 'HEAD' && !r.url.startsWith('/docs/') && r.url !== '/docs')
      .filter((r) => !paths[toSpecPath(r.url)]?.[r.method.toLowerCase()])
      .map((r) => `${r.method} ${r.url}`);
    expect(missing).toEqual([]);
  });

  it('is served as YAML and JSON, with interactive docs', async () => {
    const yaml = await t.app.inject({ method: 'GET', url: '/openapi.yaml' });
    expect(yaml.statusCode).toBe(200);
    expect(yaml.body).toMatch(/^openapi: 3\.1\.0/);
    const json = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(json.json().openapi).toBe('3.1.0');
    expect(Object.keys(json.json().paths)).toContain('/healthz');
    const docs = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(docs.statusCode).toBe(200);
    expect(docs.body).toMatch(/swagger/i);
  });

  it('health responses match the spec', async () => {
    expectMatchesSpec('GET', '/healthz', await t.app.inject({ method: 'GET', url: '/healthz' }));
    expectMatchesSpec('GET', '/readyz', await t.app.inject({ method: 'GET', url: '/readyz' }));
  });
});
