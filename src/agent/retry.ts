/**
 * The agent's retry policy against its server: exponential backoff (250 ms
 * doubling to 5 s) for as long as a failure is transient and the agent is
 * not stopping. The mechanism is `core/retry.ts`; this file only says which
 * pauses and which failures.
 */
import { LockstepError } from '../core/errors.js';
import { retry as retryWithPolicy, type RetryPolicy } from '../core/retry.js';

export { sleep } from '../core/retry.js';

/** The agent's pauses: 250, 500, 1000 … capped at 5000 ms, with no limit on attempts. */
export const AGENT_BACKOFF: RetryPolicy = { firstDelayMs: 250, maxDelayMs: 5_000 };

/** Whether an error is worth another attempt: the server could not be reached, answered 5xx, or asked to slow down (429). */
export function isTransient(error: unknown): boolean {
  return error instanceof LockstepError && (error.kind === 'unavailable' || error.kind === 'rate-limited');
}

/** Options of `retry`. */
export interface RetryOptions {
  readonly signal: AbortSignal;
  /** Give up after this many attempts (default: never, only the signal stops it). */
  readonly maxAttempts?: number;
  /** Called before each pause with the error that caused it. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/** Runs `attempt` until it succeeds; transient failures are retried with the agent's backoff, others thrown at once. */
export function retry<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  return retryWithPolicy(attempt, { policy: { ...AGENT_BACKOFF, attempts: options.maxAttempts }, signal: options.signal, retryable: isTransient, onRetry: options.onRetry });
}
