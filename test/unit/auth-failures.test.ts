import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authDecision, recentFailures, waitFor, type AuthDecision, type CredentialCheck, type FailureRule } from '../../src/core/auth-failures.js';

const rule: FailureRule = { limit: 3, windowMs: 60_000 };

describe('failed-authentication limiter decisions', () => {
  it('keeps only the failures inside the sliding window', () => {
    const table: { times: number[]; now: number; recent: number[] }[] = [
      { times: [], now: 0, recent: [] },
      { times: [0, 10_000, 59_999], now: 59_999, recent: [0, 10_000, 59_999] },
      { times: [0, 10_000, 59_999], now: 60_000, recent: [10_000, 59_999] },
      { times: [0, 10_000, 59_999], now: 200_000, recent: [] },
    ];
    for (const { times, now, recent } of table) assert.deepEqual(recentFailures(times, now, rule), recent, `${JSON.stringify(times)} at ${now}`);
  });

  it('blocks a key at the limit until enough failures leave the window', () => {
    const table: { what: string; times: number[]; now: number; waitMs: number }[] = [
      { what: 'no failures', times: [], now: 0, waitMs: 0 },
      { what: 'below the limit', times: [0, 1000], now: 1000, waitMs: 0 },
      { what: 'at the limit: until the oldest expires', times: [0, 1000, 2000], now: 2000, waitMs: 58_000 },
      { what: 'one ms before the oldest expires', times: [0, 1000, 2000], now: 59_999, waitMs: 1 },
      { what: 'reset: the oldest has expired', times: [0, 1000, 2000], now: 60_000, waitMs: 0 },
      { what: 'over the limit: until enough expire to go below it', times: [0, 1000, 2000, 3000, 4000], now: 4000, waitMs: 58_000 },
      { what: 'long after a burst: nothing left', times: [0, 1000, 2000, 3000], now: 3_600_000, waitMs: 0 },
    ];
    for (const { what, times, now, waitMs } of table) assert.equal(waitFor(times, now, rule), waitMs, what);
  });

  it('serves a valid credential whatever the wait; refuses the others with 429 while waiting, else 401 (counting only bad ones)', () => {
    const table: { check: CredentialCheck; waitMs: number; decision: AuthDecision }[] = [
      { check: 'valid', waitMs: 0, decision: { kind: 'serve' } },
      { check: 'valid', waitMs: 58_000, decision: { kind: 'serve' } },
      { check: 'invalid', waitMs: 0, decision: { kind: 'unauthorized', countFailure: true } },
      { check: 'missing', waitMs: 0, decision: { kind: 'unauthorized', countFailure: false } },
      { check: 'invalid', waitMs: 58_000, decision: { kind: 'rate-limited', retryAfterSeconds: 58 } },
      { check: 'missing', waitMs: 1, decision: { kind: 'rate-limited', retryAfterSeconds: 1 } },
      { check: 'invalid', waitMs: 1500, decision: { kind: 'rate-limited', retryAfterSeconds: 2 } },
    ];
    for (const { check, waitMs, decision } of table) assert.deepEqual(authDecision(check, waitMs), decision, `${check} waiting ${waitMs} ms`);
  });
});
