import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig, STARTER_CONFIG } from '../../src/core/config.js';
import { evaluatePolicy, type EnvironmentPolicy, type PolicyFacts } from '../../src/core/policy.js';

const config = parseConfig(STARTER_CONFIG); // development -> test -> production
const release = { id: 'abcdef0123456789'.repeat(4), version: '1.4.0' };
const now = new Date('2030-01-07T10:00:00.000Z'); // Monday, 11:00 in Berlin
const MINUTE = 60_000;

const open: EnvironmentPolicy = { approvals: { required: 0, expire_after: 86_400_000 }, windows: [], freezes: [], soak: 0 };

/** A release that succeeded in test and is its current release since `since`. */
function facts(policy: Partial<EnvironmentPolicy>, overrides: Partial<PolicyFacts> = {}): PolicyFacts {
  const since = new Date(now.getTime() - 60 * MINUTE);
  return {
    config,
    environment: 'production',
    release,
    inSource: { succeededAt: since },
    sourceCurrent: release.id,
    sourceCurrentSince: since,
    now,
    policy: { ...open, ...policy },
    ...overrides,
  };
}

function rule(verdict: ReturnType<typeof evaluatePolicy>, name: string) {
  const found = verdict.rules.find((candidate) => candidate.rule === name);
  assert.ok(found, `rule ${name} is listed`);
  return found;
}

describe('policy verdict', () => {
  it('allows a promoted release with no soak, windows, freezes or approvals, listing every rule', () => {
    const verdict = evaluatePolicy(facts({}));
    assert.equal(verdict.kind, 'allowed');
    assert.deepEqual(
      verdict.rules.map((r) => [r.rule, r.passed]),
      [
        ['promotion-gate', true],
        ['not-rejected', true],
        ['firecall', true],
        ['soak', true],
        ['window', true],
        ['freeze', true],
        ['approvals', true],
      ],
    );
    assert.equal(rule(verdict, 'soak').detail, 'no soak time');
    assert.equal(rule(verdict, 'window').detail, 'no change windows (any time)');
    assert.equal(rule(verdict, 'freeze').detail, 'no freeze in force');
    assert.equal(rule(verdict, 'approvals').detail, 'no approvals required');
  });

  it('firecall: an unreconciled fire call refuses the deployment, naming it and both ways out', () => {
    const refused = evaluatePolicy(facts({}, { unreconciledFirecall: { id: 3 } }));
    assert.equal(refused.kind, 'refused');
    assert.equal(
      refused.kind === 'refused' && refused.reason,
      'firecall: fire call 3 on production is not reconciled: run `lockstep firecall reconcile 3 --revert` or `--adopt --version V`',
    );
  });

  it('soak: refuses "12m of 30m" and says when it is ready; passes once soaked', () => {
    const since = new Date(now.getTime() - 12 * MINUTE);
    const refused = evaluatePolicy(facts({ soak: 30 * MINUTE }, { sourceCurrentSince: since, inSource: { succeededAt: since } }));
    assert.equal(refused.kind, 'refused');
    assert.equal(rule(refused, 'soak').detail, '12m of 30m in test; ready in 18m');
    assert.equal(refused.kind === 'refused' && refused.reason, 'soak: 12m of 30m in test; ready in 18m');

    const soaked = evaluatePolicy(facts({ soak: 30 * MINUTE }));
    assert.equal(soaked.kind, 'allowed');
    assert.equal(rule(soaked, 'soak').detail, '1h of 30m in test');
  });

  it('soak: refuses a release that is no longer the current release of the source, and one whose source hosts are unhealthy', () => {
    const replaced = evaluatePolicy(facts({ soak: 30 * MINUTE }, { sourceCurrent: 'f'.repeat(64), sourceCurrentSince: undefined }));
    assert.equal(replaced.kind, 'refused');
    assert.match(rule(replaced, 'soak').detail, /^the release is not the current release of test; it must run there for 30m first$/);
    const sick = evaluatePolicy(facts({ soak: 30 * MINUTE }, { sourceUnhealthyHosts: ['test-1', 'test-3'] }));
    assert.equal(sick.kind, 'refused');
    assert.equal(rule(sick, 'soak').detail, 'hosts of test are unhealthy: test-1, test-3');
  });

  it('window: passes inside, and when closed names the next opening in the first window\'s zone', () => {
    const office = { days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: '09:00-17:00', timezone: 'Europe/Berlin' };
    const inside = evaluatePolicy(facts({ windows: [office] }));
    assert.equal(inside.kind, 'allowed');
    assert.equal(rule(inside, 'window').detail, 'inside window mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin');

    const evening = new Date('2030-01-07T18:30:00.000Z'); // Monday 19:30 Berlin
    const closed = evaluatePolicy(facts({ windows: [office] }, { now: evening }));
    assert.equal(closed.kind, 'refused');
    assert.equal(rule(closed, 'window').detail, 'closed; opens Tue 2030-01-08 09:00 Europe/Berlin, in 13h30m');
    assert.equal(closed.kind === 'refused' && closed.reason, 'window: closed; opens Tue 2030-01-08 09:00 Europe/Berlin, in 13h30m');
  });

  it('freeze: refuses naming the reason, the end, and the next opening after it', () => {
    const freezes = [{ from: '2030-01-07T00:00:00.000Z', to: '2030-01-09T00:00:00.000Z', reason: 'year-end close' }];
    const frozen = evaluatePolicy(facts({ freezes }));
    assert.equal(frozen.kind, 'refused');
    assert.equal(rule(frozen, 'freeze').detail, 'frozen until 2030-01-09T00:00:00.000Z (year-end close); opens Wed 2030-01-09 00:00 UTC, in 38h');
    assert.equal(rule(frozen, 'window').passed, true, 'no windows: the window rule passes');
    assert.equal(frozen.kind === 'refused' && frozen.reason.startsWith('freeze: frozen until 2030-01-09T00:00:00.000Z (year-end close)'), true);

    // With a window, the opening after the freeze is the window's next start.
    const office = { days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: '09:00-17:00', timezone: 'Europe/Berlin' };
    const withWindow = evaluatePolicy(facts({ freezes, windows: [office] }));
    assert.match(rule(withWindow, 'freeze').detail, /\(year-end close\); opens Wed 2030-01-09 09:00 Europe\/Berlin, in 46h$/);
  });

  it('approvals: a request without enough approvals is waiting (not refused), naming who may not approve', () => {
    const waiting = evaluatePolicy(facts({ approvals: { required: 2, expire_after: 3_600_000 } }, { approvals: { granted: 1, excluded: ['ci', 'alice'] } }));
    assert.equal(waiting.kind, 'waiting');
    const approvals = rule(waiting, 'approvals');
    assert.equal(approvals.passed, false);
    assert.equal(approvals.waiting, true);
    assert.equal(approvals.detail, '1 of 2 approvals (tokens with the approver role, not ci or alice)');
    assert.equal(waiting.kind === 'waiting' && waiting.reason, 'approvals: 1 of 2 approvals (tokens with the approver role, not ci or alice)');

    const approved = evaluatePolicy(facts({ approvals: { required: 2, expire_after: 3_600_000 } }, { approvals: { granted: 2, excluded: ['ci'] } }));
    assert.equal(approved.kind, 'allowed');
    assert.equal(rule(approved, 'approvals').detail, '2 of 2 approvals');
  });

  it('a refused rule beats waiting for approvals', () => {
    const since = new Date(now.getTime() - 12 * MINUTE);
    const verdict = evaluatePolicy(facts({ approvals: { required: 1, expire_after: 3_600_000 }, soak: 30 * MINUTE }, { sourceCurrentSince: since, approvals: { granted: 0, excluded: [] } }));
    assert.equal(verdict.kind, 'refused');
    assert.match(verdict.kind === 'refused' ? verdict.reason : '', /^soak: 12m of 30m/);
    assert.equal(rule(verdict, 'approvals').waiting, true, 'the approvals rule still says it waits');

    const frozen = evaluatePolicy(
      facts({ approvals: { required: 1, expire_after: 3_600_000 }, freezes: [{ from: '2030-01-01T00:00:00.000Z', to: '2030-02-01T00:00:00.000Z', reason: 'launch' }] }),
    );
    assert.equal(frozen.kind, 'refused');
    assert.match(frozen.kind === 'refused' ? frozen.reason : '', /^freeze: .*\(launch\)/);
  });

  it('the promotion gate still refuses first, with its fix', () => {
    const verdict = evaluatePolicy(facts({ soak: 30 * MINUTE }, { inSource: {}, sourceCurrent: undefined, sourceCurrentSince: undefined }));
    assert.equal(verdict.kind, 'refused');
    assert.match(verdict.kind === 'refused' ? verdict.reason : '', /^promotion-gate: release 1\.4\.0 \(\w+\) has not succeeded in test.*; run: lockstep deploy \w+ --to test$/);
  });
});
