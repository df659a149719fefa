import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { failureBudget, planBatches, resolveCount } from '../../src/core/rollout-plan.js';

const hosts = (count: number) => Array.from({ length: count }, (_, index) => `web-${String(index + 1).padStart(2, '0')}`);

describe('planBatches', () => {
  it('puts one canary first, then batches of 25% of all hosts (the safe default)', () => {
    const batches = planBatches(hosts(8), { canary: 1, batch: '25%', pause: 0, max_failures: 0 });
    assert.deepEqual(batches.map((batch) => batch.length), [1, 2, 2, 2, 1]);
    assert.deepEqual(batches[0], ['web-01']);
    assert.deepEqual(batches.flat(), hosts(8));
  });

  it('takes fixed batch sizes and no canary', () => {
    assert.deepEqual(planBatches(hosts(5), { canary: 0, batch: 2, pause: 0, max_failures: 0 }).map((b) => b.length), [2, 2, 1]);
  });

  it('orders hosts by name whatever order they come in', () => {
    assert.deepEqual(planBatches(['c', 'a', 'b'], { canary: 1, batch: 5, pause: 0, max_failures: 0 }), [['a'], ['b', 'c']]);
  });

  it('never plans more canaries than hosts, nor empty batches', () => {
    assert.deepEqual(planBatches(['a'], { canary: 3, batch: '25%', pause: 0, max_failures: 0 }), [['a']]);
    assert.deepEqual(planBatches([], { canary: 1, batch: 1, pause: 0, max_failures: 0 }), []);
  });

  it('deploys 50 hosts as 1 canary and batches of 13', () => {
    const batches = planBatches(hosts(50), { canary: 1, batch: '25%', pause: 0, max_failures: 0 });
    assert.deepEqual(batches.map((batch) => batch.length), [1, 13, 13, 13, 10]);
  });
});

describe('failureBudget and resolveCount', () => {
  it('rounds shares up and keeps counts', () => {
    assert.equal(resolveCount('25%', 10), 3);
    assert.equal(resolveCount('100%', 7), 7);
    assert.equal(resolveCount(4, 100), 4);
    assert.equal(failureBudget({ canary: 1, batch: 1, pause: 0, max_failures: '10%' }, 20), 2);
    assert.equal(failureBudget({ canary: 1, batch: 1, pause: 0, max_failures: 0 }, 20), 0);
  });
});
