import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { judgeParity, parityCheckDue, undeclaredKeys } from '../../src/core/parity-watch.js';
import type { ParityDifference } from '../../src/core/parity.js';

const difference = (overrides: Partial<ParityDifference>): ParityDifference => ({ category: 'sysctl', name: 'vm.swappiness', values: {}, declared: false, within: null, ...overrides });

describe('scheduled parity decisions', () => {
  it('keys: undeclared differences only, live and within-environment marked, the active release left out', () => {
    assert.deepEqual(
      undeclaredKeys({
        differences: [
          difference({}),
          difference({ live: true }),
          difference({ category: 'package', name: 'curl', within: { env: 'production', host: 'web2', reference: 'web1' } }),
          difference({ category: 'var', name: 'DB_HOST', declared: true }),
          difference({ category: 'release', name: 'release' }),
        ],
      }),
      ['package curl on web2 (production)', 'sysctl vm.swappiness', 'sysctl vm.swappiness (live)'],
    );
  });

  it('due: never checked, period passed, or a deployment to either environment finished since the last check', () => {
    const before = { differences: [], since: null, checkedAt: '2026-01-01T10:00:00.000Z' };
    const at = (iso: string) => Date.parse(iso);
    assert.equal(parityCheckDue(undefined, at('2026-01-01T10:00:01Z'), 3_600_000, []), true);
    assert.equal(parityCheckDue(before, at('2026-01-01T10:30:00Z'), 3_600_000, [null, '2026-01-01T09:00:00Z']), false);
    assert.equal(parityCheckDue(before, at('2026-01-01T11:00:00Z'), 3_600_000, []), true);
    assert.equal(parityCheckDue(before, at('2026-01-01T10:30:00Z'), 3_600_000, [null, '2026-01-01T10:20:00Z']), true);
  });

  it('judge: new differences are added once; since holds while any remains; one that went away and came back is new again', () => {
    const first = judgeParity(undefined, ['sysctl a', 'port 8080/tcp (live)'], 't1');
    assert.deepEqual(first.added, ['sysctl a', 'port 8080/tcp (live)']);
    assert.equal(first.state.since, 't1');
    const same = judgeParity(first.state, ['port 8080/tcp (live)', 'sysctl a'], 't2');
    assert.deepEqual(same.added, []);
    assert.equal(same.state.since, 't1');
    const gone = judgeParity(same.state, ['port 8080/tcp (live)'], 't3');
    assert.deepEqual(gone.added, []);
    const back = judgeParity(gone.state, ['port 8080/tcp (live)', 'sysctl a'], 't4');
    assert.deepEqual(back.added, ['sysctl a']);
    const clean = judgeParity(back.state, [], 't5');
    assert.equal(clean.state.since, null);
    assert.equal(judgeParity(clean.state, ['sysctl a'], 't6').state.since, 't6');
  });
});
