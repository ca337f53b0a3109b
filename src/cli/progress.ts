// Progress of a run on stderr: a redrawn bar on a terminal, plain lines (at most one every few
// seconds, plus one per status change) in logs, nothing with --quiet.
import type { Run } from './api/types.js';

export interface Progress {
  update(run: Run): void;
  /** Ends the bar's line (a terminal) before anything else is written. */
  end(): void;
}

export interface ProgressOptions {
  quiet?: boolean;
  /** Defaults to: stream is a TTY, and neither CI nor TERM=dumb says otherwise. */
  tty?: boolean;
  /** Least time between two plain lines with the same status (ms). */
  plainIntervalMs?: number;
  now?: () => number;
}

export function isInteractive(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(stream.isTTY) && !env.CI && env.TERM !== 'dumb';
}

export function formatElapsed(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

const percent = (done: number, total: number) => (total > 0 ? Math.min(100, (100 * done) / total) : 0);

export function createProgress(stream: NodeJS.WriteStream, opts: ProgressOptions = {}): Progress {
  if (opts.quiet) return { update() {}, end() {} };
  const now = opts.now ?? Date.now;
  const started = now();
  const tty = opts.tty ?? isInteractive(stream);
  const interval = opts.plainIntervalMs ?? 5000;
  let lastLine = Number.NEGATIVE_INFINITY;
  let lastStatus = '';
  let drawn = false;

  const describe = (run: Run) => {
    const { done, total } = run.progress;
    return `${percent(done, total).toFixed(1)}% (${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')} inferences)`;
  };

  if (tty) {
    return {
      update(run) {
        const { done, total } = run.progress;
        const width = 28;
        const filled = Math.round((percent(done, total) / 100) * width);
        const elapsed = now() - started;
        const eta =
          done > 0 && done < total ? `  eta ${formatElapsed((elapsed * (total - done)) / done)}` : '';
        const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
        stream.write(
          `\r\x1b[2Krun ${run.id.slice(0, 8)} ${run.status.padEnd(9)} ${bar} ${describe(run)}  ${formatElapsed(elapsed)}${eta}`,
        );
        drawn = true;
      },
      end() {
        if (drawn) stream.write('\n');
        drawn = false;
      },
    };
  }
  return {
    update(run) {
      const t = now();
      if (run.status === lastStatus && t - lastLine < interval) return;
      lastStatus = run.status;
      lastLine = t;
      stream.write(`run ${run.id} ${run.status} ${describe(run)} after ${formatElapsed(t - started)}\n`);
    },
    end() {},
  };
}
