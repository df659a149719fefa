/** Ids: named counters that concurrent transactions never share a value of. */

/** Writes: the next value of a counter. */
export interface CounterWriteRepo {
  /** The next value of a named counter (ids). */
  next(counter: string): Promise<number>;
}
