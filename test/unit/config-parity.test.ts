import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../src/core/config.js';

const BASE = `app: shop
deploy_to: /srv/shop
environments:
  test: {}
  production: { promote_from: test }
`;

function problems(text: string): string[] {
  try {
    parseConfig(text);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems.map((problem) => `${problem.line}:${problem.column} ${problem.field}: ${problem.message}`);
  }
  return assert.fail('the config was accepted');
}

describe('lockstep.yaml parity:', () => {
  it('pairs and every (default 1h); absent means no scheduled parity', () => {
    assert.equal(parseConfig(BASE).parity, undefined);
    assert.deepEqual(parseConfig(`${BASE}parity:\n  pairs: [[test, production]]\n`).parity, { pairs: [['test', 'production']], every: 3_600_000 });
    assert.equal(parseConfig(`${BASE}parity: { pairs: [[test, production]], every: 15m }\n`).parity?.every, 900_000);
  });

  it('every problem with its line: an unknown environment, a pair of one, a short period, an unknown key', () => {
    const found = problems(`${BASE}parity:\n  pairs:\n    - [test, staging]\n    - [test, test]\n  every: 1s\n`);
    assert.deepEqual(found, ['10:10 parity.every: expected at least 10s; found "1s"']);
    assert.deepEqual(problems(`${BASE}parity:\n  pairs:\n    - [test, staging]\n    - [test, test]\n`), [
      '8:14 parity.pairs.0.1: expected one of test, production; found "staging"',
      '9:7 parity.pairs.1: compare two different environments',
    ]);
    assert.match(problems(`${BASE}parity:\n  pairs: [[test, production]]\n  evry: 1h\n`).join('\n'), /^8:\d+ parity.*evry/);
    assert.match(problems(`${BASE}parity:\n  pairs: []\n`).join('\n'), /parity\.pairs: expected at least one pair such as \[test, production\]/);
  });
});
