/** Batches by count and bytes, as uploads and hashing requests are cut: order kept, a large item alone, nothing lost. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sizeBatches } from '../../src/core/size-batches.js';

const sized = (...sizes: number[]) => sizes.map((size, index) => ({ id: index, size }));
const shape = (batches: { size: number }[][]) => batches.map((batch) => batch.map((item) => item.size));

describe('sizeBatches', () => {
  it('cuts by count', () => {
    assert.deepEqual(shape(sizeBatches(sized(1, 1, 1, 1, 1), { count: 2, bytes: 100 })), [[1, 1], [1, 1], [1]]);
  });
  it('cuts by bytes, and an item larger than the limit travels alone', () => {
    assert.deepEqual(shape(sizeBatches(sized(4, 4, 30, 1, 9, 2), { count: 100, bytes: 10 })), [[4, 4], [30], [1, 9], [2]]);
  });
  it('keeps order and every item, and makes no batch of nothing', () => {
    const items = sized(3, 0, 7, 7, 0, 1, 12);
    const batches = sizeBatches(items, { count: 3, bytes: 8 });
    assert.deepEqual(batches.flat(), items);
    assert.ok(batches.every((batch) => batch.length > 0 && batch.length <= 3));
    assert.deepEqual(sizeBatches([], { count: 3, bytes: 8 }), []);
  });
});
