/**
 * The one long-poll loop of the agent: failures back off and a success starts
 * the pauses over, a permanent failure or a failed handler ends the loop with
 * it, and an abort ends it quietly, also in the middle of a pause.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { longPoll } from '../../src/core/long-poll.js';

describe('longPoll', () => {
  it('backs off on failures, starts over after a success, and hands every answer to the handler', async () => {
    const controller = new AbortController();
    const script: (number | Error)[] = [new Error('a'), new Error('b'), 1, new Error('c'), 2, 3];
    const pauses: number[] = [];
    const handled: number[] = [];
    await longPoll({
      signal: controller.signal,
      backoff: { firstDelayMs: 1, maxDelayMs: 100 },
      poll: async () => {
        const next = script.shift();
        if (next instanceof Error) throw next;
        return next ?? 0;
      },
      onError: (_error, delayMs) => pauses.push(delayMs),
      handle: (answer) => {
        handled.push(answer);
        if (script.length === 0) controller.abort();
      },
    });
    assert.deepEqual(handled, [1, 2, 3]);
    assert.deepEqual(pauses, [1, 2, 1]);
  });

  it('ends with a permanent failure, without a pause or a log line for it', async () => {
    const rejected = new Error('credential rejected');
    let polls = 0;
    await assert.rejects(
      longPoll({
        signal: new AbortController().signal,
        backoff: { firstDelayMs: 1 },
        poll: async () => {
          polls += 1;
          throw polls === 1 ? new Error('server restarting') : rejected;
        },
        isPermanent: (error) => error === rejected,
        onError: (error) => assert.notEqual(error, rejected),
      }),
      (error) => error === rejected,
    );
    assert.equal(polls, 2);
  });

  it("ends with the handler's failure: what is done with an answer is not retried", async () => {
    let polls = 0;
    await assert.rejects(
      longPoll({
        signal: new AbortController().signal,
        backoff: { firstDelayMs: 1 },
        poll: async () => ++polls,
        handle: () => {
          throw new Error('task crashed');
        },
      }),
      /task crashed/,
    );
    assert.equal(polls, 1);
  });

  it("ends with the last failure once the policy's attempts in a row are used up", async () => {
    let polls = 0;
    await assert.rejects(
      longPoll({
        signal: new AbortController().signal,
        backoff: { firstDelayMs: 1, attempts: 3 },
        poll: async () => {
          polls += 1;
          throw new Error(`failure ${polls}`);
        },
      }),
      /^Error: failure 3$/,
    );
  });

  it('an abort during a long pause or a hanging poll ends the loop quietly', async () => {
    const inPause = new AbortController();
    let polls = 0;
    await longPoll({
      signal: inPause.signal,
      backoff: { firstDelayMs: 3_600_000 },
      poll: async () => {
        polls += 1;
        throw new Error('down');
      },
      onError: () => queueMicrotask(() => inPause.abort()),
    });
    assert.equal(polls, 1);

    const inPoll = new AbortController();
    await longPoll({
      signal: inPoll.signal,
      backoff: { firstDelayMs: 1 },
      poll: (signal) => {
        queueMicrotask(() => inPoll.abort());
        return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
      },
      onError: () => assert.fail('an abort is not a failure'),
    });
  });

  it('a periodic round pauses between successes, and a failure it does not back off on waits the same', async () => {
    const controller = new AbortController();
    const pauses: number[] = [];
    let polls = 0;
    await longPoll({
      signal: controller.signal,
      backoff: { firstDelayMs: 1 },
      pauseMs: () => 7,
      backsOffOn: (error) => (error as Error).message === 'transient',
      poll: async () => {
        polls += 1;
        if (polls === 4) controller.abort();
        if (polls === 1) throw new Error('transient');
        if (polls === 2) throw new Error('refused');
      },
      onError: (_error, delayMs) => pauses.push(delayMs),
    });
    assert.deepEqual(pauses, [1, 7]);
    assert.equal(polls, 4);
  });
});
