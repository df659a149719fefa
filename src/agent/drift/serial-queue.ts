/**
 * The drift monitor's one-at-a-time queue: every scan, command and baseline
 * change runs after everything queued before it, so none of them sees the
 * snapshots or baselines half-updated by another.
 */

/** Runs queued work one at a time, in order. */
export class SerialQueue {
  #chain: Promise<unknown> = Promise.resolve();

  /** Runs `work` after everything queued before it; its result or error is the caller's. */
  run<T>(work: () => Promise<T>): Promise<T> {
    // A failed earlier item was reported by its own caller; it must not stop the ones after it.
    const run = this.#chain.catch(() => undefined).then(work);
    this.#chain = run;
    return run;
  }

  /** Resolves when everything queued so far has run (whatever its outcome). */
  async drained(): Promise<void> {
    await this.#chain.catch(() => undefined);
  }

  /** Resolves when nothing is running or queued and `busy` says nothing is about to be queued. */
  async idle(busy: () => boolean): Promise<void> {
    for (;;) {
      const chain = this.#chain;
      await chain.catch(() => undefined);
      if (chain === this.#chain && !busy()) return;
    }
  }
}
