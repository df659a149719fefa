/**
 * Splitting sized items into batches, for work that pays per batch (a request,
 * a worker message, a sync pass): each batch holds at most `limits.count`
 * items and `limits.bytes` bytes, except that an item larger than the byte
 * limit travels alone. Order is kept.
 */

/** The most a batch may hold. */
export interface BatchLimits {
  readonly count: number;
  readonly bytes: number;
}

/** `items` in order, cut into batches within `limits`. */
export function sizeBatches<T extends { readonly size: number }>(items: readonly T[], limits: BatchLimits): T[][] {
  const batches: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    if (current.length > 0 && (current.length >= limits.count || bytes + item.size > limits.bytes)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += item.size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}
