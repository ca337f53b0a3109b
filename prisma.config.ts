import { defineConfig } from 'prisma/config';

// Used by the Prisma CLI only (generate; migrate deploy where it can run). The service
// itself connects through @prisma/adapter-pg with DATABASE_URL or its embedded Postgres.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/invariance' },
});
