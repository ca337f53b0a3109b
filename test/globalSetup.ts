// One PostgreSQL server for the whole run: DATABASE_URL when set (CI's server), otherwise an
// embedded one started here. Each test file then creates its own database on it.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { loadEmbeddedPostgres } from '../src/store/loadEmbeddedPostgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
  }
}

export default async function setup(project: TestProject) {
  if (process.env.DATABASE_URL) {
    project.provide('databaseUrl', process.env.DATABASE_URL);
    return;
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'invariance-test-pg-'));
  // Loaded lazily and unhooked: its exit hooks would turn vitest's exit code 1 into 0.
  const { startEmbeddedPostgres } = await loadEmbeddedPostgres();
  const pg = await startEmbeddedPostgres({ dir: path.join(dir, 'data'), database: 'postgres' });
  project.provide('databaseUrl', pg.url);
  return async () => {
    await pg.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
