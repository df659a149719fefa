/**
 * The one bounded-concurrency pool: at most `limit` calls at once, and one
 * failure rule (the first failure starts no more items, the running ones are
 * waited for, then that failure is thrown).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forEachBounded, mapBounded } from '../../src/core/for-each-bounded.js';

/** A promise the test resolves by hand. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const turns = (count: number): Promise<void> => Array.from({ length: count }).reduce<Promise<void>>((chain) => chain.then(() => new Promise((resolve) => setImmediate(resolve))), Promise.resolve());

describe('forEachBounded', () => {
  it('never runs more than `limit` calls at once, and runs every item', async () => {
    for (const [items, limit] of [[20, 3], [5, 8], [1, 1], [0, 4]] as const) {
      let running = 0;
      let most = 0;
      const done: number[] = [];
      await forEachBounded(Array.from({ length: items }, (_, index) => index), limit, async (item) => {
        running += 1;
        most = Math.max(most, running);
        await turns(1 + (item % 3));
        running -= 1;
        done.push(item);
      });
      assert.equal(most, Math.min(items, limit), `${items} items, limit ${limit}`);
      assert.deepEqual([...done].sort((a, b) => a - b), Array.from({ length: items }, (_, index) => index));
    }
  });

  it('after the first failure starts no more items, waits for the running ones, then throws that failure', async () => {
    const slow = gate();
    const started: number[] = [];
    let slowFinished = false;
    let settled = false;
    const run = forEachBounded([0, 1, 2, 3, 4, 5], 2, async (item) => {
      started.push(item);
      if (item === 0) {
        await slow.promise;
        slowFinished = true;
        return;
      }
      if (item === 1) throw new Error('first failure');
      if (item === 2) throw new Error('second failure');
    }).finally(() => (settled = true));
    await turns(5);
    assert.deepEqual(started, [0, 1], 'nothing starts after the failure');
    assert.equal(settled, false, 'the call under way is waited for');
    slow.open();
    await assert.rejects(run, /^Error: first failure$/);
    assert.equal(slowFinished, true);
    assert.deepEqual(started, [0, 1]);
  });

  it('refuses a limit that would run nothing', async () => {
    for (const limit of [0, -1, 1.5, Number.NaN]) await assert.rejects(forEachBounded([1], limit, async () => undefined), RangeError);
  });
});

describe('mapBounded', () => {
  it('returns the results in the order of the items, whatever order they finish in', async () => {
    const results = await mapBounded([5, 1, 4, 2, 3], 2, async (value) => {
      await turns(value);
      return value * 10;
    });
    assert.deepEqual(results, [50, 10, 40, 20, 30]);
  });

  it('follows the same failure rule', async () => {
    const started: number[] = [];
    await assert.rejects(
      mapBounded([1, 2, 3, 4], 1, async (value) => {
        started.push(value);
        if (value === 2) throw new Error('two');
        return value;
      }),
      /two/,
    );
    assert.deepEqual(started, [1, 2]);
  });
});
