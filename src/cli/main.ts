// The `invariance` command: dispatch to a command, turn every failure into its exit code and one
// readable message on stderr. bin/invariance.js runs main() (compiled, or the source through tsx).
import { pathToFileURL } from 'node:url';
import { type Io, printHelp, version } from './commands/common.js';
import { datasetsCommand } from './commands/datasets.js';
import { evalCommand } from './commands/eval.js';
import { modelsCommand } from './commands/models.js';
import { runsCommand } from './commands/runs.js';
import { CliError, EXIT, ProblemError, UnreachableError, UsageError } from './errors.js';

const COMMANDS: Record<string, (argv: string[], io: Io) => Promise<number>> = {
  eval: evalCommand,
  models: modelsCommand,
  datasets: datasetsCommand,
  runs: runsCommand,
};

function describeError(err: unknown): { message: string; code: number } {
  if (err instanceof ProblemError) {
    const p = err.problem;
    const lines = [`${err.request} was rejected: ${p.status} ${p.code}: ${p.detail}`];
    if (Array.isArray(p.errors)) {
      for (const e of p.errors.slice(1, 10) as Array<{ path?: string; message?: string }>) {
        lines.push(`  ${e.path ?? ''}: ${e.message ?? ''}`);
      }
    }
    return { message: lines.join('\n'), code: err.exitCode };
  }
  if (err instanceof UsageError) {
    const help = err.command ? `invariance ${err.command} --help` : 'invariance --help';
    return { message: `${err.message}\n(see "${help}")`, code: err.exitCode };
  }
  if (err instanceof CliError) return { message: err.message, code: err.exitCode };
  // A bug in the CLI itself: show where, and do not pretend it was a verdict.
  return {
    message: `internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    code: EXIT.service,
  };
}

/** With --json, failures are JSON on stdout too (and the readable message on stderr). */
function errorJson(err: unknown, message: string, code: number) {
  let status = 'ERROR';
  if (err instanceof UsageError) status = 'USAGE_ERROR';
  else if (err instanceof ProblemError) status = err.problem.status < 500 ? 'REJECTED' : 'SERVICE_ERROR';
  else if (err instanceof UnreachableError) status = 'UNREACHABLE';
  return {
    outcome: { status, exitCode: code, reason: message.split('\n')[0] },
    ...(err instanceof ProblemError ? { problem: err.problem } : {}),
  };
}

export async function main(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      const topic = rest[0];
      return printHelp(io, command === 'help' && topic && topic in COMMANDS ? (topic as 'eval') : 'main');
    }
    if (command === '--version' || command === '-v') {
      io.stdout.write(`${version()}\n`);
      return 0;
    }
    const run = COMMANDS[command];
    if (!run) throw new UsageError(`unknown command "${command}" (eval, models, datasets, runs)`);
    return await run(rest, io);
  } catch (err) {
    const { message, code } = describeError(err);
    io.stderr.write(`invariance: ${message}\n`);
    if (rest.includes('--json'))
      io.stdout.write(`${JSON.stringify(errorJson(err, message, code), null, 2)}\n`);
    return code;
  }
}

/** Runs main() and exits once stdout and stderr are flushed (pipes may be asynchronous). */
export async function runCli(argv: string[] = process.argv.slice(2)): Promise<never> {
  const code = await main(argv);
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  await new Promise<void>((resolve) => process.stderr.write('', () => resolve()));
  process.exit(code);
}

// `node --import tsx src/cli/main.ts ...` or `node dist/cli/main.js ...` run it directly.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void runCli();
}
