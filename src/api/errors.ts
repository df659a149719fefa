/**
 * The API's one error model and its one decoder, shared by every client (the
 * CLI and the agent): an error response is `{ error: { kind, message,
 * exitCode, details? } }` with the status of HTTP_STATUS[kind], where
 * exitCode is what the CLI exits with for it (docs/cli.md). No schema library
 * here: the CLI imports this on its start-up path.
 */
import { EXIT_CODES, HTTP_STATUS, LockstepError, type ErrorKind } from '../core/errors.js';

const KINDS: ReadonlySet<string> = new Set(Object.keys(HTTP_STATUS));

/** The body the server sends with every error status. */
export interface ErrorBody {
  readonly error: { readonly kind: ErrorKind | 'internal'; readonly message: string; readonly hint?: string; readonly exitCode: number; readonly details?: unknown };
}

/** The one way an error object is made: the server's answers, and the CLI's `--json` errors on stderr. */
export function errorBody(kind: ErrorKind | 'internal', message: string, extra: { readonly details?: unknown; readonly hint?: string | undefined } = {}): ErrorBody {
  return { error: { kind, message, ...(extra.hint === undefined ? {} : { hint: extra.hint }), exitCode: EXIT_CODES[kind], ...(extra.details === undefined ? {} : { details: extra.details }) } };
}

/** The kind an error status means when the body does not say (a proxy's page, an older server). */
export function kindOfStatus(status: number): ErrorKind {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not-found';
  if (status === 409) return 'conflict';
  if (status === 429) return 'rate-limited';
  if (status === 408 || status >= 500) return 'unavailable';
  if (status >= 400 && status < 500) return 'bad-input';
  return 'failed';
}

/**
 * The LockstepError a non-2xx response stands for: the server's own kind and
 * message when the body is the API's error object (a bug on the server,
 * kind `internal`, counts as `unavailable`: worth another attempt), else a
 * kind from the status and the start of the body, naming `what` was asked.
 */
export function responseError(status: number, text: string, what: string): LockstepError {
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  const error = (body as { error?: { kind?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
  if (typeof error?.message === 'string' && typeof error.kind === 'string') {
    const kind = KINDS.has(error.kind) ? (error.kind as ErrorKind) : 'unavailable';
    return new LockstepError(kind, error.message, error.details);
  }
  return new LockstepError(kindOfStatus(status), `${what} answered ${status}: ${text.slice(0, 300).trim() || 'no body'}`, { status });
}
