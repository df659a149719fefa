/**
 * Waiting and retrying for the agent: exponential backoff (250 ms doubling to
 * 5 s) for as long as a failure is transient and the agent is not stopping.
 */
import { LockstepError } from '../core/errors.js';

/** First and largest pause between attempts, in milliseconds. */
export const BACKOFF_START_MS = 250;
export const BACKOFF_MAX_MS = 5_000;

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Whether an error is worth another attempt: the server could not be reached, answered 5xx, or asked to slow down (429). */
export function isTransient(error: unknown): boolean {
  return error instanceof LockstepError && (error.kind === 'unavailable' || error.kind === 'rate-limited');
}

/** A doubling delay: 250, 500, 1000 … capped at 5000 ms. */
export class Backoff {
  private next = BACKOFF_START_MS;

  /** The pause before the next attempt; doubles each time. */
  delay(): number {
    const current = this.next;
    this.next = Math.min(this.next * 2, BACKOFF_MAX_MS);
    return current;
  }

  /** Back to the shortest pause after a success. */
  reset(): void {
    this.next = BACKOFF_START_MS;
  }
}

/** Options of `retry`. */
export interface RetryOptions {
  readonly signal: AbortSignal;
  /** Give up after this many attempts (default: never, only the signal stops it). */
  readonly maxAttempts?: number;
  /** Called before each pause with the error that caused it. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/** Runs `attempt` until it succeeds; transient failures are retried with backoff, others thrown at once. */
export async function retry<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  const backoff = new Backoff();
  for (let count = 1; ; count++) {
    try {
      return await attempt();
    } catch (error) {
      if (options.signal.aborted || !isTransient(error)) throw error;
      if (options.maxAttempts !== undefined && count >= options.maxAttempts) throw error;
      const delay = backoff.delay();
      options.onRetry?.(error, count, delay);
      await sleep(delay, options.signal);
    }
  }
}
