/** SerialQueue: work runs one at a time in queue order; a failure is its caller's and the queue goes on. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SerialQueue } from '../../src/core/serial-queue.js';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('SerialQueue', () => {
  it('runs queued work one at a time, in order, past a failure', async () => {
    const queue = new SerialQueue();
    const log: string[] = [];
    let running = 0;
    const job = (name: string, fail = false) => async () => {
      running += 1;
      assert.equal(running, 1, 'never two at once');
      log.push(`start ${name}`);
      await turn();
      await turn();
      log.push(`end ${name}`);
      running -= 1;
      if (fail) throw new Error(`${name} failed`);
      return name;
    };
    const a = queue.run(job('a'));
    const b = queue.run(job('b', true));
    const c = queue.run(job('c'));
    assert.equal(await a, 'a');
    await assert.rejects(b, /b failed/);
    assert.equal(await c, 'c');
    assert.deepEqual(log, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  it('idle waits for everything queued so far and never rejects', async () => {
    const queue = new SerialQueue();
    let finished = false;
    const failing = queue.run(async () => {
      await turn();
      finished = true;
      throw new Error('no');
    });
    await queue.idle();
    assert.equal(finished, true);
    await assert.rejects(failing);
  });

  it('idle(busy) also waits for work queued while it waits, and for busy() to say nothing more is coming', async () => {
    const queue = new SerialQueue();
    const log: string[] = [];
    let pending = true;
    void queue.run(async () => {
      await turn();
      log.push('first');
      // Queued while idle() already waits: it must wait for this one too.
      void queue.run(async () => {
        await turn();
        log.push('second');
        pending = false;
      });
    });
    await queue.idle(() => pending);
    assert.deepEqual(log, ['first', 'second']);
  });
});
