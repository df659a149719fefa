/**
 * The one retry with backoff: the schedules users rely on (the agent's
 * 250 ms → 5 s, alert deliveries 1 s, 2 s, 4 s … six attempts), giving up,
 * errors not worth a retry, and aborts.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it, mock } from 'node:test';
import pino from 'pino';
import { AGENT_BACKOFF, retry as agentRetry } from '../../src/agent/retry.js';
import { LockstepError } from '../../src/core/errors.js';
import { Backoff, backoffDelay, retry, type RetryPolicy } from '../../src/core/retry.js';
import type { Alert, AlertChannel } from '../../src/server/alerts/alert-channel.js';
import { ALERT_RETRY, AlertDispatcher } from '../../src/server/alerts/alert-dispatcher.js';

const schedule = (policy: RetryPolicy, count: number): number[] => Array.from({ length: count }, (_, index) => backoffDelay(policy, index + 1));

/** Lets pending promise callbacks run (setImmediate is not mocked). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('retry policies', () => {
  it("the agent's pauses double from 250 ms and stay at 5 s; alerts double from 1 s", () => {
    assert.deepEqual(schedule(AGENT_BACKOFF, 8), [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    assert.equal(AGENT_BACKOFF.attempts, undefined, 'the agent never gives up on its own');
    assert.deepEqual(schedule(ALERT_RETRY, 5), [1000, 2000, 4000, 8000, 16000]);
    assert.equal(ALERT_RETRY.attempts, 6);
  });

  it('Backoff starts over after reset', () => {
    const backoff = new Backoff(AGENT_BACKOFF);
    assert.deepEqual([backoff.delay(), backoff.delay(), backoff.delay()], [250, 500, 1000]);
    backoff.reset();
    assert.equal(backoff.delay(), 250);
  });
});

describe('retry', () => {
  it('retries until success, pausing as the policy says', async () => {
    const pauses: number[] = [];
    let calls = 0;
    const value = await retry(
      async () => {
        calls += 1;
        if (calls < 4) throw new Error(`failure ${calls}`);
        return 'done';
      },
      { policy: { firstDelayMs: 1, maxDelayMs: 3 }, onRetry: (_error, attempt, delayMs) => pauses.push(attempt * 100 + delayMs) },
    );
    assert.equal(value, 'done');
    assert.deepEqual(pauses, [101, 202, 303]);
  });

  it("throws the last failure once the policy's attempts are used up", async () => {
    let calls = 0;
    await assert.rejects(
      retry(
        async () => {
          calls += 1;
          throw new Error(`failure ${calls}`);
        },
        { policy: { attempts: 3, firstDelayMs: 1 } },
      ),
      /^Error: failure 3$/,
    );
    assert.equal(calls, 3);
  });

  it('throws a failure that is not retryable at once', async () => {
    let calls = 0;
    const refused = new LockstepError('refused', 'no');
    await assert.rejects(
      retry(
        async () => {
          calls += 1;
          throw refused;
        },
        { policy: { firstDelayMs: 1 }, retryable: () => false, onRetry: () => assert.fail('no pause for a permanent failure') },
      ),
      (error) => error === refused,
    );
    assert.equal(calls, 1);
  });

  it('an abort ends the pause with the signal’s reason and starts no further attempt', async () => {
    const controller = new AbortController();
    let calls = 0;
    const run = retry(
      async () => {
        calls += 1;
        throw new Error('down');
      },
      { policy: { firstDelayMs: 3_600_000 }, signal: controller.signal, onRetry: () => queueMicrotask(() => controller.abort(new Error('stopping'))) },
    );
    await assert.rejects(run, /^Error: stopping$/);
    assert.equal(calls, 1);
  });

  it("the agent's retry retries transient server errors and throws others at once", async () => {
    const signal = new AbortController().signal;
    let calls = 0;
    const value = await agentRetry(
      async () => {
        calls += 1;
        if (calls === 1) throw new LockstepError('unavailable', 'server restarting');
        return calls;
      },
      { signal },
    );
    assert.equal(value, 2);
    calls = 0;
    await assert.rejects(
      agentRetry(async () => {
        calls += 1;
        throw new LockstepError('refused', 'deployment is over');
      }, { signal }),
      /deployment is over/,
    );
    assert.equal(calls, 1);
  });
});

describe('alert delivery schedule', () => {
  afterEach(() => mock.timers.reset());

  it('a failing channel is tried six times, 1 s, 2 s, 4 s, 8 s and 16 s apart, then given up', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    let sends = 0;
    const channel: AlertChannel = {
      name: 'webhook:test',
      send: async () => {
        sends += 1;
        throw new Error('connection refused');
      },
    };
    const alert: Alert = { kind: 'drift.detected', env: 'production', summary: 'x', at: new Date(0).toISOString(), details: {} };
    const dispatcher = new AlertDispatcher(pino({ level: 'silent' }), ALERT_RETRY, () => [channel]);
    dispatcher.dispatch(alert, { webhooks: ['http://127.0.0.1:9/unused'] });
    await settle();
    assert.equal(sends, 1);
    for (const pause of [1000, 2000, 4000, 8000, 16000]) {
      const before: number = sends;
      mock.timers.tick(pause - 1);
      await settle();
      assert.equal(sends, before, `no send ${pause - 1} ms after the last one`);
      mock.timers.tick(1);
      await settle();
      assert.equal(sends, before + 1, `a send ${pause} ms after the last one`);
    }
    mock.timers.tick(3_600_000);
    await settle();
    assert.equal(sends, 6);
    await dispatcher.drain();
  });
});
