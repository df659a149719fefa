/**
 * The one loop behind every "ask the server again and again" of Lockstep: a
 * long poll (the server holds each request until there is news), or a
 * periodic round with a pause between. Failures back off by a `RetryPolicy`
 * (a success starts the pauses over), a permanent failure ends the loop, and
 * an abort ends it quietly at the next await.
 */
import { Backoff, sleep, type RetryPolicy } from './retry.js';

/** Options of `longPoll`. */
export interface LongPollOptions<T> {
  /** Ends the loop: `longPoll` then resolves, also in the middle of a pause. */
  readonly signal: AbortSignal;
  /** One request (or round); its failures are retried after a pause unless permanent. */
  readonly poll: (signal: AbortSignal) => Promise<T>;
  /** What to do with each answer; not retried: a failure here ends the loop with it. */
  readonly handle?: ((answer: T) => Promise<void> | void) | undefined;
  /** Pauses after failed polls; with `attempts`, that many failures in a row end the loop with the last one. */
  readonly backoff: RetryPolicy;
  /** The pause after a successful round (default none: a long poll asks again at once, the server does the waiting). */
  readonly pauseMs?: (() => number) | undefined;
  /** A failure retrying cannot fix (a rejected credential): the loop ends with it. */
  readonly isPermanent?: ((error: unknown) => boolean) | undefined;
  /** Whether a failure backs off (default: every one); another waits `pauseMs` like a success, since a quick retry cannot help it. */
  readonly backsOffOn?: ((error: unknown) => boolean) | undefined;
  /** Told of each retried failure with the pause before the next poll (for the log). */
  readonly onError?: ((error: unknown, delayMs: number) => void) | undefined;
}

/**
 * Polls until the signal aborts (then resolves); rejects only with a
 * permanent failure, a failure of `handle`, or the last failure once the
 * policy's attempts ran out.
 */
export async function longPoll<T>(options: LongPollOptions<T>): Promise<void> {
  const { signal } = options;
  const backoff = new Backoff(options.backoff);
  let failures = 0;
  while (!signal.aborted) {
    let answer: T;
    try {
      answer = await options.poll(signal);
    } catch (error) {
      if (signal.aborted) return;
      if (options.isPermanent?.(error) === true) throw error;
      failures += 1;
      if (options.backoff.attempts !== undefined && failures >= options.backoff.attempts) throw error;
      const backsOff = options.backsOffOn?.(error) ?? true;
      const delayMs = backsOff ? backoff.delay() : (options.pauseMs?.() ?? 0);
      options.onError?.(error, delayMs);
      if (!(await pause(delayMs, signal))) return;
      continue;
    }
    failures = 0;
    backoff.reset();
    await options.handle?.(answer);
    const pauseMs = options.pauseMs?.() ?? 0;
    if (pauseMs > 0 && !(await pause(pauseMs, signal))) return;
  }
}

/** Waits `ms`; false when the signal aborted first. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, signal);
    return true;
  } catch {
    return false;
  }
}
