/**
 * One-at-a-time execution: work queued here runs after everything queued
 * before it has settled, whatever the outcome. Used where two async callers
 * must not interleave (a release verification and a repair of the same
 * tree; two checkpoint signings).
 */

/** A queue of async work run strictly one after another; a failure belongs to its caller and does not stop the queue. */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `work` once everything queued before it has settled; resolves or rejects as `work` does. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(work, work);
    this.#tail = result;
    return result;
  }

  /**
   * Resolves once everything queued so far has settled (never rejects); with `busy`, once nothing is running or
   * queued any more and `busy()` says nothing is about to be queued either.
   */
  async idle(busy: () => boolean = () => false): Promise<void> {
    for (;;) {
      const tail = this.#tail;
      await tail.then(
        () => undefined,
        () => undefined,
      );
      if (tail === this.#tail && !busy()) return;
    }
  }
}
