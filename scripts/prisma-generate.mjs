// Runs `prisma generate` without network access. The Prisma CLI wants a schema-engine
// binary it would normally download; generate never uses it, so any existing file will do.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const env = { ...process.env };
if (!env.PRISMA_SCHEMA_ENGINE_BINARY || !existsSync(env.PRISMA_SCHEMA_ENGINE_BINARY)) {
  env.PRISMA_SCHEMA_ENGINE_BINARY = process.execPath;
}
env.PRISMA_HIDE_UPDATE_MESSAGE = '1';
env.CHECKPOINT_DISABLE = '1';
const require = createRequire(import.meta.url);
const cli = require.resolve('prisma/build/index.js');
const res = spawnSync(process.execPath, [cli, 'generate'], { stdio: 'inherit', env });
process.exit(res.status ?? 1);
