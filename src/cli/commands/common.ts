// What the commands share: where output goes, the connection flags, report output.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ApiClient } from '../api/client.js';
import { UsageError } from '../errors.js';
import { HELP } from '../help.js';
import { jsonReport, type Report, type ReportFiles, writeReportFiles } from '../report/outcome.js';
import { renderReport } from '../report/text.js';

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

export function version(): string {
  // package.json is two levels up from both src/cli/commands and dist/cli/commands.
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export function connect(values: { server?: string; 'api-key'?: string }, io: Io, command: string): ApiClient {
  const server = values.server ?? io.env.INVARIANCE_URL;
  const apiKey = values['api-key'] ?? io.env.INVARIANCE_API_KEY;
  if (!server) throw new UsageError('no server: pass --server URL or set INVARIANCE_URL', command);
  if (!apiKey) throw new UsageError('no API key: pass --api-key KEY or set INVARIANCE_API_KEY', command);
  return new ApiClient({ server, apiKey, userAgent: `invariance-cli/${version()}` });
}

export function printHelp(io: Io, topic: keyof typeof HELP): number {
  io.stdout.write(`${HELP[topic]}\n`);
  return 0;
}

/** A line on stderr (never stdout: --json keeps stdout for the JSON alone). */
export function logger(io: Io, quiet = false): (line: string) => void {
  return (line) => {
    if (!quiet) io.stderr.write(`${line}\n`);
  };
}

export function printJson(io: Io, value: unknown) {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Downloads the run's server-rendered charts next to the Markdown file (`<name>-accuracy.svg`, ...).
 * A chart the run has no data for (409) or any failure just leaves that chart out.
 */
async function saveCharts(client: ApiClient, runId: string, markdownFile: string) {
  const dir = path.dirname(markdownFile);
  const stem = path.basename(markdownFile).replace(/\.(md|markdown)$/i, '');
  const saved: Array<{ name: string; file: string; url: string }> = [];
  for (const name of ['accuracy', 'ekld', 'nv']) {
    const url = client.url(`/v1/runs/${encodeURIComponent(runId)}/charts/${name}.svg`);
    try {
      const res = await fetch(url, { headers: { ...client.headers(), accept: 'image/svg+xml' } });
      if (!res.ok) continue;
      const file = `${stem}-${name}.svg`;
      await writeFile(path.join(dir, file), await res.text());
      saved.push({ name, file, url: url.toString() });
    } catch {
      // a chart is a nicety: the report stands without it
    }
  }
  return saved;
}

/** Prints a finished (or abandoned) run's report and writes the report files; returns the exit code. */
export async function emitReport(
  io: Io,
  report: Report,
  opts: { json?: boolean; files: ReportFiles; client?: ApiClient },
): Promise<number> {
  if (opts.files.markdown && opts.client && report.results) {
    report.charts = await saveCharts(opts.client, report.run.id, opts.files.markdown);
  }
  await writeReportFiles(report, opts.files);
  if (opts.json) printJson(io, jsonReport(report));
  else io.stdout.write(renderReport(report));
  if (report.outcome.exitCode !== 0) io.stderr.write(`invariance: ${report.outcome.reason}\n`);
  return report.outcome.exitCode;
}
