// Errors of the multipart parser. Busboy reports a malformed body ("Unexpected end of form",
// a missing boundary) as a plain Error: that is the client's fault, a 400, not a 500.
import { AppError } from './problem.js';

export function multipartError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof AppError) return err;
  const { code, statusCode } = err as Error & { code?: unknown; statusCode?: unknown };
  if (code === 'FST_INVALID_JSON_FIELD_ERROR') {
    return new AppError(400, 'VALIDATION_FAILED', 'a field declared as application/json is not valid JSON');
  }
  // Errors with an HTTP status (limits: 413) keep it; system errors (ENOSPC...) stay server errors.
  if (typeof statusCode === 'number') return err;
  if (typeof code === 'string' && /^E[A-Z]/.test(code)) return err;
  return new AppError(400, 'INVALID_MULTIPART', `malformed multipart body: ${err.message}`);
}
