// Process entry: read config, bring up the database (embedded unless DATABASE_URL is set),
// migrate, make sure an admin key exists, listen; on SIGTERM/SIGINT close in reverse order.
import path from 'node:path';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { startQueue } from './jobs/queue.js';
import { startWebhooks, type WebhookRuntime } from './jobs/webhooks.js';
import { startWorkers, type Workers } from './jobs/workers.js';
import { ensureAdminKey } from './store/adminKey.js';
import { apiKeyRepository } from './store/apiKeys.js';
import { BlobStore } from './store/blobStore.js';
import { isConnectionLoss, openDatabase } from './store/database.js';
import type { EmbeddedDatabase } from './store/embeddedPostgres.js';
import { loadEmbeddedPostgres } from './store/loadEmbeddedPostgres.js';
import { migrate } from './store/migrator.js';

function parseArgs(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=', 2);
      out[k] = v ?? argv[++i] ?? '';
    }
  }
  return out;
}

/**
 * pg-boss does not await some of its own queries (completing or failing a job): while the database
 * restarts, those reject with nobody to catch them, and Node would exit. Connection losses are
 * transient (pg-boss retries the job after its expiry, our janitor re-issues shards), so they are
 * logged and survived (isConnectionLoss); any other unhandled rejection is a bug and still ends
 * the process.
 */
process.on('unhandledRejection', (err) => {
  if (isConnectionLoss(err)) {
    process.stderr.write(`database connection lost (${(err as Error).message}); carrying on\n`);
    return;
  }
  process.stderr.write(
    `unhandled rejection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});

async function main() {
  // A signal during start-up (a deploy that changes its mind) is held until the service is up,
  // then shuts it down like any other: nothing is left half-started. A second signal, or a
  // start-up that does not finish within 30 s, exits at once.
  let pendingSignal: string | null = null;
  let startupTimer: NodeJS.Timeout | undefined;
  let onSignal: (signal: string) => void = (signal) => {
    if (pendingSignal) process.exit(1);
    pendingSignal = signal;
    startupTimer = setTimeout(() => process.exit(1), 30_000);
    startupTimer.unref();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  const args = parseArgs(process.argv.slice(2));
  const env = {
    ...process.env,
    ...(args.role ? { ROLE: args.role } : {}),
    ...(args.port ? { PORT: args.port } : {}),
  };
  const config = loadConfig(env);
  const log = (msg: string) => process.stdout.write(`${msg}\n`);

  let embedded: EmbeddedDatabase | null = null;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    const dir = path.join(config.dataDir, 'pg');
    log(`no DATABASE_URL: starting embedded PostgreSQL in ${dir}`);
    const { startEmbeddedPostgres } = await loadEmbeddedPostgres();
    embedded = await startEmbeddedPostgres({ dir, port: config.embeddedPgPort });
    databaseUrl = embedded.url;
  }
  const db = openDatabase(databaseUrl);
  const applied = await migrate(db.pool);
  if (applied.length) log(`applied migrations: ${applied.join(', ')}`);

  const blobs = new BlobStore(config.dataDir);
  await blobs.init();
  const admin = await ensureAdminKey(apiKeyRepository(db.prisma), {
    dataDir: config.dataDir,
    fromEnv: config.adminKey,
  });
  if (admin.generated) {
    const why = admin.replacedRevoked ? ' (the key in it had been revoked)' : '';
    log(`generated an admin API key${why} (shown once; also saved to ${admin.file}):\n  ${admin.key}`);
  }
  if (admin.retired) log(`revoked ${admin.retired} earlier INVARIANCE_ADMIN_KEY value(s)`);
  if (admin.envKeyRevoked) {
    log('warning: INVARIANCE_ADMIN_KEY has been revoked and grants nothing; give it a new value');
  }

  const queue = await startQueue(databaseUrl, { retryLimit: config.shardRetries, retryDelaySeconds: 2 });
  const app = await buildApp({ config, db, blobs, queue });
  let workers: Workers | null = null;
  let webhooks: WebhookRuntime | null = null;
  if (config.role !== 'api') {
    webhooks = await startWebhooks(db.pool, queue, config.webhooks);
    workers = await startWorkers(config, { db, blobs, queue, log: (obj, msg) => app.log.info(obj, msg) });
    log(
      `worker ${workers.workerId}: ${config.workers} engine thread(s) x ${config.ortThreads} ORT thread(s) on ${config.ortEp}`,
    );
  }
  if (config.role !== 'worker') {
    await app.listen({ port: config.port, host: config.host });
    const shown = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
    log(
      `invariance service listening on http://${shown}:${config.port} (docs: http://${shown}:${config.port}/docs)`,
    );
  }

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    log(`${signal}: shutting down`);
    const force = setTimeout(() => process.exit(1), 30_000);
    force.unref();
    try {
      // At once, not one after the other: in-flight shards are handed back right away instead of
      // running on (and finishing) while in-flight requests and webhook pollers wind down.
      await Promise.all([
        app.close(), // stops accepting, waits for in-flight requests
        webhooks?.stop(),
        workers?.stop(), // in-flight shards go back to the queue
      ]);
      await queue.stop({ graceful: true, wait: true, close: true, timeout: 10_000 });
      await db.close();
      if (embedded) await embedded.stop();
      process.exit(0);
    } catch (err) {
      process.stderr.write(`shutdown failed: ${String(err)}\n`);
      process.exit(1);
    }
  };
  onSignal = (signal) => void shutdown(signal);
  clearTimeout(startupTimer);
  if (pendingSignal) onSignal(pendingSignal);
}

main().catch((err) => {
  if (err instanceof ConfigError) process.stderr.write(`configuration error: ${err.message}\n`);
  else
    process.stderr.write(
      `failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
  process.exit(1);
});
