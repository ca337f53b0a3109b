#!/usr/bin/env node
// The `invariance` CLI (src/cli/). Runs the compiled CLI (dist/cli/main.js, from `npm run build`)
// when there is one that is not older than the sources; otherwise the TypeScript sources through
// tsx (a devDependency), so `npx invariance` works in a dev checkout without a build.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const compiled = path.join(root, 'dist', 'cli', 'main.js');
const sourceDir = path.join(root, 'src', 'cli');
const source = path.join(sourceDir, 'main.ts');

/** Newest modification time (ms) of the .ts files under dir. */
function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

let useCompiled = existsSync(compiled);
// In a checkout with sources, a build older than the sources would run stale code.
if (useCompiled && existsSync(source) && statSync(compiled).mtimeMs < newestSource(sourceDir))
  useCompiled = false;
if (!useCompiled && !existsSync(source)) useCompiled = existsSync(compiled);

let cli;
if (useCompiled) {
  cli = await import(pathToFileURL(compiled).href);
} else {
  let tsImport;
  try {
    ({ tsImport } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write(
      existsSync(source)
        ? 'invariance: no build (dist/cli/main.js) and tsx is not installed: run "npm install" or "npm run build"\n'
        : 'invariance: the CLI is missing (neither dist/cli/main.js nor src/cli/main.ts)\n',
    );
    process.exit(2);
  }
  cli = await tsImport(pathToFileURL(source).href, import.meta.url);
}
if (typeof cli.runCli !== 'function') {
  process.stderr.write(`invariance: ${useCompiled ? compiled : source} does not export runCli\n`);
  process.exit(2);
}
await cli.runCli(process.argv.slice(2));
