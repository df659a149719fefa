import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDifference } from '../../src/cli/parity-commands.js';

describe('lockstep parity output', () => {
  it('prints one line per difference, declared or undeclared, absent values named', () => {
    const base = { declared: false, within: null } as const;
    assert.equal(formatDifference({ ...base, category: 'var', name: 'DB_POOL', values: { test: ['10'], production: ['20'] } }, 'test', 'production'), 'undeclared  var DB_POOL: test=10 production=20');
    assert.equal(formatDifference({ ...base, declared: true, category: 'var', name: 'DB_HOST', values: { test: ['a'], production: [] } }, 'test', 'production'), 'declared  var DB_HOST: test=a production=(not set)');
    assert.equal(
      formatDifference({ ...base, category: 'package', name: 'nginx', values: { test: ['1.22.1-9'], production: ['1.22.1-10'] } }, 'test', 'production'),
      'undeclared  package nginx: test=1.22.1-9 production=1.22.1-10',
    );
    assert.equal(formatDifference({ ...base, category: 'fact', name: 'kernel', values: { test: ['6.1'], production: ['6.1', '6.2'] } }, 'test', 'production'), 'undeclared  kernel: test=6.1 production={6.1, 6.2}');
    assert.equal(
      formatDifference({ ...base, category: 'release', name: 'release', values: { test: ['1.1 (abc)'], production: ['1.0 (def)'] }, files: [], fileCount: 3 }, 'test', 'production'),
      'undeclared  release: test=1.1 (abc) production=1.0 (def): 3 files differ',
    );
  });

  it('names the host, the host it differs from and the environment for a difference within one environment', () => {
    const line = formatDifference(
      { category: 'fact', name: 'kernel', declared: false, within: { env: 'production', host: 'web2', reference: 'web1' }, values: { web1: ['6.1.0-18'], web2: ['6.1.0-20'] } },
      'test',
      'production',
    );
    assert.equal(line, 'undeclared  host web2 differs from web1 in production: kernel: web1=6.1.0-18 web2=6.1.0-20');
  });
});
