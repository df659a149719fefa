/**
 * The few error classes of Lockstep. Domain code throws these without UI
 * text beyond one sentence; the CLI entry maps them to exit codes and the
 * HTTP error handler maps them to status codes.
 */

/** What kind of failure an error is; decides the exit code and HTTP status. */
export type ErrorKind =
  | 'bad-input' // the user's input is wrong: exit 2, HTTP 400
  | 'not-found' // a named thing does not exist: exit 2, HTTP 404
  | 'refused' // policy refused the operation: exit 3, HTTP 409
  | 'conflict' // the operation collides with state (a running deployment): exit 3, HTTP 409
  | 'failed' // the operation ran and failed (a deployment): exit 4
  | 'unauthorized' // missing or bad credentials: exit 5, HTTP 401
  | 'forbidden' // credentials valid but not allowed: exit 5, HTTP 403
  | 'rate-limited' // too many failed authentications: exit 5, HTTP 429
  | 'unavailable' // the server cannot be reached: exit 6
  | 'mismatch'; // a comparison found undeclared differences (lockstep parity), so a pipeline can gate on it: exit 1

/** An expected failure with a one-line message meant for the person at the keyboard. */
export class LockstepError extends Error {
  readonly kind: ErrorKind;
  /** Optional structured detail (e.g. every validation issue) for --json output and API bodies. */
  readonly details: unknown;

  constructor(kind: ErrorKind, message: string, details?: unknown) {
    super(message);
    this.name = 'LockstepError';
    this.kind = kind;
    this.details = details;
  }
}

/** Shorthand for a bad-input error. */
export function badInput(message: string, details?: unknown): LockstepError {
  return new LockstepError('bad-input', message, details);
}

/** Shorthand for a not-found error. */
export function notFound(message: string): LockstepError {
  return new LockstepError('not-found', message);
}

/** Process exit codes; documented in docs/cli.md. */
export const EXIT_CODES: Readonly<Record<ErrorKind | 'ok' | 'internal', number>> = {
  ok: 0,
  internal: 1,
  'bad-input': 2,
  'not-found': 2,
  refused: 3,
  conflict: 3,
  failed: 4,
  unauthorized: 5,
  forbidden: 5,
  'rate-limited': 5,
  unavailable: 6,
  mismatch: 1,
};

/** HTTP status for each error kind. */
export const HTTP_STATUS: Readonly<Record<ErrorKind, number>> = {
  'bad-input': 400,
  'not-found': 404,
  refused: 409,
  conflict: 409,
  failed: 500,
  unauthorized: 401,
  forbidden: 403,
  'rate-limited': 429,
  unavailable: 503,
  mismatch: 409,
};

/**
 * `await ifMissing(lstat(path))`: the value, or undefined when the path does
 * not exist (ENOENT, or ENOTDIR for a parent that is not a directory). Every
 * other error (permission, I/O) is thrown: in a file-integrity tool
 * "unreadable" must never pass for "absent".
 */
export async function ifMissing<T>(pending: Promise<T>): Promise<T | undefined> {
  try {
    return await pending;
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

/** `ifMissing` for synchronous calls: `ifMissingSync(() => readdirSync(dir))`. */
export function ifMissingSync<T>(call: () => T): T | undefined {
  try {
    return call();
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

/** The bad-input error for a file the user named that exists but cannot be read: `cannot read WHAT: EACCES[; HINT]`. */
export function cannotRead(what: string, error: unknown, hint?: string): LockstepError {
  const why = (error as NodeJS.ErrnoException | undefined)?.code ?? (error instanceof Error ? error.message : String(error));
  return badInput(`cannot read ${what}: ${why}${hint === undefined ? '' : `; ${hint}`}`);
}

/** Whether a filesystem error says the path does not exist (ENOENT, or ENOTDIR for a parent that is not a directory). */
export function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
