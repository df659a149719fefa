import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig, STARTER_CONFIG } from '../../src/core/config.js';
import { evaluateGate, type GateFacts } from '../../src/core/gate.js';

const config = parseConfig(STARTER_CONFIG); // development -> test -> production
const release = { id: 'abcdef0123456789'.repeat(4), version: '1.4.0' };
const otherId = '0123456789abcdef'.repeat(4);
const succeeded = new Date('2030-01-01T10:00:00.000Z');
const rolledBack = new Date('2030-01-01T11:00:00.000Z');

function facts(overrides: Partial<GateFacts>): GateFacts {
  return { config, environment: 'production', release, inSource: {}, ...overrides };
}

describe('promotion gate', () => {
  it('allows any release into an environment without promote_from', () => {
    const verdict = evaluateGate(facts({ environment: 'development' }));
    assert.equal(verdict.kind, 'allowed');
    assert.deepEqual(
      verdict.rules.map((rule) => [rule.rule, rule.passed]),
      [
        ['promotion-gate', true],
        ['not-rejected', true],
      ],
    );
  });

  it('refuses a release that has not succeeded in the source environment, naming the fix', () => {
    const verdict = evaluateGate(facts({ environment: 'production', inSource: {} }));
    assert.equal(verdict.kind, 'refused');
    assert.ok(verdict.kind === 'refused');
    const rule = verdict.rules[0];
    assert.equal(rule?.passed, false);
    assert.equal(rule?.fix, 'lockstep deploy abcdef012345 --to test');
    assert.equal(
      verdict.reason,
      'promotion-gate: release 1.4.0 (abcdef012345) has not succeeded in test, which production promotes from; run: lockstep deploy abcdef012345 --to test',
    );
  });

  it('looks at the environment named by promote_from, not a fixed order', () => {
    const verdict = evaluateGate(facts({ environment: 'test', inSource: {} }));
    assert.equal(verdict.kind, 'refused');
    assert.ok(verdict.kind === 'refused');
    assert.match(verdict.reason, /has not succeeded in development, which test promotes from; run: lockstep deploy abcdef012345 --to development$/);
  });

  it('allows a release that succeeded in the source environment', () => {
    const verdict = evaluateGate(facts({ inSource: { succeededAt: succeeded }, sourceCurrent: otherId }));
    assert.equal(verdict.kind, 'allowed');
    assert.equal(verdict.rules[0]?.detail, 'succeeded in test at 2030-01-01T10:00:00.000Z');
  });

  it('refuses a release that was rolled back in the source and is no longer current there', () => {
    for (const sourceCurrent of [otherId, undefined]) {
      const verdict = evaluateGate(facts({ inSource: { succeededAt: succeeded, rolledBackAt: rolledBack }, sourceCurrent }));
      assert.equal(verdict.kind, 'refused');
      assert.ok(verdict.kind === 'refused');
      assert.match(verdict.reason, /was rolled back in test at 2030-01-01T11:00:00\.000Z/);
      assert.equal(verdict.rules[0]?.fix, 'lockstep deploy abcdef012345 --to test');
    }
  });

  it('allows a release that was rolled back but is current in the source again', () => {
    const verdict = evaluateGate(facts({ inSource: { succeededAt: succeeded, rolledBackAt: rolledBack }, sourceCurrent: release.id }));
    assert.equal(verdict.kind, 'allowed');
  });
});
