// Waiting for a run: polls GET /v1/runs/{id} until it has finished or the deadline passes.
import type { ApiClient } from './api/client.js';
import { FINISHED, type Run } from './api/types.js';
import type { Progress } from './progress.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll delays: quick at first (small runs finish in a second), then once a second. */
export function pollDelay(attempt: number): number {
  return [250, 500, 750][attempt] ?? 1000;
}

export interface WaitOptions {
  progress: Progress;
  /** Give up after this long (ms); the run keeps going unless the caller cancels it. */
  timeoutMs?: number;
  /** The run as already known (e.g. the answer of POST /v1/runs). */
  initial?: Run;
}

export async function waitForRun(
  client: ApiClient,
  id: string,
  opts: WaitOptions,
): Promise<{ run: Run; timedOut: boolean }> {
  const deadline = opts.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + opts.timeoutMs;
  const fetchRun = () => client.get<Run>(`/v1/runs/${encodeURIComponent(id)}`, { retry: true });
  let run = opts.initial ?? (await fetchRun());
  try {
    for (let attempt = 0; ; attempt++) {
      opts.progress.update(run);
      if (FINISHED.includes(run.status)) return { run, timedOut: false };
      const remaining = deadline - Date.now();
      if (remaining <= 0) return { run, timedOut: true };
      await sleep(Math.min(pollDelay(attempt), remaining));
      run = await fetchRun();
    }
  } finally {
    opts.progress.end();
  }
}

/**
 * A run submitted with gates carries its verdict once it has succeeded. Should the service set it a
 * moment after the status, this polls briefly (up to `ms`) before concluding there is none.
 */
export async function awaitVerdict(client: ApiClient, run: Run, ms = 5000): Promise<Run> {
  const deadline = Date.now() + ms;
  let current = run;
  while (!current.verdict && Date.now() < deadline) {
    await sleep(250);
    current = await client.get<Run>(`/v1/runs/${encodeURIComponent(run.id)}`, { retry: true });
  }
  return current;
}
