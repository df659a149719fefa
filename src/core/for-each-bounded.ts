/**
 * The one bounded-concurrency pool of Lockstep (the FIM hashing workers are
 * threads, a different thing). One failure rule everywhere: the first
 * failure stops new items from starting, the calls already running are
 * waited for (so nothing works on behind the caller's back), then that first
 * failure is thrown. Pure: no I/O and no clock, so every layer may use it.
 */

/**
 * Calls `work` for every item with at most `limit` calls running at once;
 * on the first failure starts no more items, waits for the running ones and
 * rethrows it.
 */
export async function forEachBounded<T>(items: readonly T[], limit: number, work: (item: T) => Promise<unknown>): Promise<void> {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`forEachBounded: limit must be a positive integer, not ${limit}`);
  let next = 0;
  let failure: { error: unknown } | undefined;
  async function worker(): Promise<void> {
    while (failure === undefined && next < items.length) {
      const item = items[next++] as T;
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  }
  const workers = Math.max(1, Math.min(limit, items.length));
  await Promise.all(Array.from({ length: workers }, worker));
  if (failure !== undefined) throw failure.error;
}

/** `forEachBounded` that keeps each call's result, in the order of `items`; same bound and failure rule. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  await forEachBounded(
    items.map((item, index) => ({ item, index })),
    limit,
    async ({ item, index }) => {
      results[index] = await work(item);
    },
  );
  return results;
}
