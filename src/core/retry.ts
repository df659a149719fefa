/**
 * The one retry with exponential backoff of Lockstep, and the one policy
 * shape behind every pause between attempts: the agent against its server
 * (250 ms doubling to 5 s, until it stops), alert deliveries (1 s, 2 s, 4 s …
 * six attempts) and the long-poll loops (`long-poll.ts`). No jitter, as
 * before: both schedules are documented exactly (a policy field can add it
 * when a large fleet needs it). Reads no clock; waiting is a timer.
 */

/** How often to try and how long to pause between tries: `firstDelayMs`, doubling each time, never above `maxDelayMs`. */
export interface RetryPolicy {
  /** Attempts in all, the first included (absent: no limit; only an abort or an error not worth retrying ends it). */
  readonly attempts?: number | undefined;
  /** The pause after the first failure. */
  readonly firstDelayMs: number;
  /** The longest pause (absent: no cap). */
  readonly maxDelayMs?: number | undefined;
}

/** The pause after the `failures`-th failure in a row (1 for the first): `firstDelayMs · 2^(failures-1)`, capped. */
export function backoffDelay(policy: RetryPolicy, failures: number): number {
  const doubled = policy.firstDelayMs * 2 ** Math.max(0, failures - 1);
  return Math.min(doubled, policy.maxDelayMs ?? Number.POSITIVE_INFINITY);
}

/** The pauses of one run of failures under a policy; a success starts over with `reset`. */
export class Backoff {
  #failures = 0;

  constructor(private readonly policy: RetryPolicy) {}

  /** The pause before the next attempt; each call counts one more failure. */
  delay(): number {
    this.#failures += 1;
    return backoffDelay(this.policy, this.#failures);
  }

  /** Back to the shortest pause after a success. */
  reset(): void {
    this.#failures = 0;
  }
}

/** Options of `sleep`. */
export interface SleepOptions {
  /** Whether the pending pause keeps the process alive (default true; false for background work such as alert deliveries). */
  readonly keepAlive?: boolean;
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal, options: SleepOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (options.keepAlive === false) timer.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Options of `retry`. */
export interface RetryOptions {
  readonly policy: RetryPolicy;
  /** Stops the pauses: the pending pause rejects with the signal's reason, and no attempt starts after it aborted. */
  readonly signal?: AbortSignal | undefined;
  /** Whether a failure is worth another attempt (default: every failure); any other is thrown at once. */
  readonly retryable?: ((error: unknown) => boolean) | undefined;
  /** Called before each pause with the failure that caused it, its attempt (1 for the first) and the pause. */
  readonly onRetry?: ((error: unknown, attempt: number, delayMs: number) => void) | undefined;
  /** Whether pauses keep the process alive (default true). */
  readonly keepAlive?: boolean | undefined;
}

/**
 * Runs `attempt` until it succeeds and returns its value. A failure is thrown
 * as it is when it is not retryable, when the signal aborted, or when it was
 * the policy's last attempt; otherwise the next attempt follows the policy's pause.
 */
export async function retry<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  const backoff = new Backoff(options.policy);
  for (let count = 1; ; count++) {
    try {
      return await attempt();
    } catch (error) {
      if (options.signal?.aborted === true) throw error;
      if (options.retryable !== undefined && !options.retryable(error)) throw error;
      if (options.policy.attempts !== undefined && count >= options.policy.attempts) throw error;
      const delayMs = backoff.delay();
      options.onRetry?.(error, count, delayMs);
      await sleep(delayMs, options.signal, { keepAlive: options.keepAlive ?? true });
    }
  }
}
