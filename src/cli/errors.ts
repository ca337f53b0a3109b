// Errors the CLI turns into exit codes. Every failure path ends in one of these, so main() can
// map it to the documented code and one readable line on stderr.

/** Documented exit codes (README "The CLI"). */
export const EXIT = {
  /** PASS or WARN verdict, or no gates and the run succeeded (or the command did its job). */
  ok: 0,
  /** FAIL or ERROR verdict. */
  failed: 1,
  /** Usage error, or input the service rejected (any 4xx problem). */
  usage: 2,
  /** Service unreachable or broken (5xx), run failed or canceled, timeout. */
  service: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT] | 130 | 143;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Bad flags or arguments: exit 2 with a hint to --help. */
export class UsageError extends CliError {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message, EXIT.usage);
    this.name = 'UsageError';
  }
}

/** An RFC 9457 problem+json answer (or any non-2xx answer, made to look like one). */
export interface ProblemBody {
  type?: string;
  title?: string;
  status: number;
  detail: string;
  code: string;
  [extra: string]: unknown;
}

/** The service answered with an error: 4xx -> exit 2 (input rejected), 5xx -> exit 3. */
export class ProblemError extends CliError {
  constructor(
    readonly problem: ProblemBody,
    readonly request: string,
    /** The answer's Retry-After, in ms (429 and 503 answers carry one). */
    readonly retryAfterMs?: number,
  ) {
    super(
      `${request}: ${problem.status} ${problem.code}: ${problem.detail}`,
      problem.status >= 400 && problem.status < 500 ? EXIT.usage : EXIT.service,
    );
    this.name = 'ProblemError';
  }
}

/** No answer at all (connection refused, DNS, TLS, reset, request timeout): exit 3. */
export class UnreachableError extends CliError {
  constructor(message: string) {
    super(message, EXIT.service);
    this.name = 'UnreachableError';
  }
}
