/** The pure fire-call rules: ttl, public keys, source addresses, key ids, revocations per host, sshd lines, and the policy. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../src/core/config.js';
import { LockstepError } from '../../src/core/errors.js';
import { approvalRefusal } from '../../src/core/policy.js';
import { checkSourceAddress, firecallIssued, firecallKeyId, firecallState, firecallTtl, parsePublicKeyLine, revocationsFor, sshdEventOf, type FirecallFacts } from '../../src/core/firecall.js';
import { makeTempDir } from '../helpers/tmp.js';

function kindOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof LockstepError, String(error));
    return error.kind;
  }
  return undefined;
}

const call = (overrides: Partial<FirecallFacts>): FirecallFacts => ({
  id: 1, env: 'production', keyId: 'firecall-1-alice', serial: 1, hosts: null, expiresAt: '2030-01-01T00:10:00.000Z', closedAt: null, reconciledAt: null, approval: null, ...overrides,
});

describe('fire call rules', () => {
  it('ttl: default 30m capped by max_ttl, minimum 5s, above the maximum refused', () => {
    assert.equal(firecallTtl(undefined, 3_600_000, 'production'), 1_800_000);
    assert.equal(firecallTtl(undefined, 600_000, 'production'), 600_000);
    assert.equal(firecallTtl('15m', 3_600_000, 'production'), 900_000);
    assert.equal(kindOf(() => firecallTtl('2h', 3_600_000, 'production')), 'refused');
    assert.equal(kindOf(() => firecallTtl('1s', 3_600_000, 'production')), 'bad-input');
    assert.equal(kindOf(() => firecallTtl('soon', 3_600_000, 'production')), 'bad-input');
  });

  it('public keys: ed25519 and rsa from ssh-keygen pass; other types, garbage and several lines do not', async () => {
    const temp = await makeTempDir('lockstep-firecall-unit-');
    try {
      for (const type of ['ed25519', 'rsa']) {
        execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', join(temp.path, type)]);
        assert.equal(parsePublicKeyLine(readFileSync(join(temp.path, `${type}.pub`), 'utf8')).type, `ssh-${type}`);
      }
      execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', join(temp.path, 'ecdsa')]);
      assert.equal(kindOf(() => parsePublicKeyLine(readFileSync(join(temp.path, 'ecdsa.pub'), 'utf8'))), 'bad-input');
    } finally {
      await temp.remove();
    }
    assert.equal(kindOf(() => parsePublicKeyLine('ssh-ed25519 AAAAC3NzaC1yc2EAAAADAQAB x')), 'bad-input', 'an rsa body under an ed25519 label');
    assert.equal(kindOf(() => parsePublicKeyLine('ssh-ed25519 !!!')), 'bad-input');
    assert.equal(kindOf(() => parsePublicKeyLine('')), 'bad-input');
  });

  it('source addresses and key ids', () => {
    assert.equal(checkSourceAddress('10.0.0.0/8,203.0.113.7'), '10.0.0.0/8,203.0.113.7');
    assert.equal(checkSourceAddress('2001:db8::/32'), '2001:db8::/32');
    for (const bad of ['10.0.0.0/33', '300.1.1.1', 'example.com', '10.0.0.1/8/2']) assert.equal(kindOf(() => checkSourceAddress(bad)), 'bad-input', bad);
    assert.equal(firecallKeyId(3, 'alice'), 'firecall-3-alice');
    assert.equal(firecallKeyId(4, 'a b"c'), 'firecall-4-a_b_c');
  });

  it('states and per-host revocations: closed ones everywhere, open ones limited to other hosts only there', () => {
    assert.equal(firecallState(call({})), 'open');
    assert.equal(firecallState(call({ closedAt: 'x' })), 'unreconciled');
    assert.equal(firecallState(call({ closedAt: 'x', reconciledAt: 'y' })), 'reconciled');
    const calls = [call({ id: 1, serial: 1, closedAt: 'x' }), call({ id: 2, serial: 2, keyId: 'firecall-2-bob', hosts: ['web-2'] }), call({ id: 3, serial: 3, keyId: 'firecall-3-carol' })];
    assert.deepEqual(revocationsFor('web-1', calls).serials, [1, 2]);
    assert.deepEqual(revocationsFor('web-2', calls).serials, [1]);
    assert.deepEqual(revocationsFor('web-1', calls).endSessions, ['firecall-1-alice', 'firecall-2-bob']);
  });

  it('approval: a request awaiting approval or expired unapproved has its own state and nothing to revoke', () => {
    assert.equal(firecallState(call({ approval: 'awaiting' })), 'awaiting_approval');
    assert.equal(firecallState(call({ approval: 'expired', closedAt: 'x', reconciledAt: 'x' })), 'expired');
    assert.equal(firecallState(call({ approval: 'approved' })), 'open');
    assert.equal(firecallState(call({ approval: 'overridden', closedAt: 'x' })), 'unreconciled');
    assert.equal(firecallIssued({ approval: null }) && firecallIssued({ approval: 'approved' }) && firecallIssued({ approval: 'overridden' }), true);
    assert.equal(firecallIssued({ approval: 'awaiting' }) || firecallIssued({ approval: 'expired' }), false);
    const calls = [call({ id: 1, serial: 1, approval: 'expired', closedAt: 'x' }), call({ id: 2, serial: 2, approval: 'awaiting', hosts: ['web-2'] }), call({ id: 3, serial: 3, approval: 'approved', closedAt: 'x' })];
    assert.deepEqual(revocationsFor('web-1', calls).serials, [3]);
  });

  it('separation of duties: only the roles that approve, never an excluded person', () => {
    const requester = [{ name: 'alice', because: 'alice requested fire call 3 and cannot approve it' }];
    assert.equal(approvalRefusal({ name: 'bob', role: 'approver' }, ['approver', 'admin'], requester), undefined);
    assert.equal(approvalRefusal({ name: 'root', role: 'admin' }, ['approver', 'admin'], requester), undefined);
    assert.equal(approvalRefusal({ name: 'alice', role: 'admin' }, ['approver', 'admin'], requester), 'separation of duties: alice requested fire call 3 and cannot approve it');
    assert.equal(approvalRefusal({ name: 'dave', role: 'deployer' }, ['approver', 'admin'], requester), 'approvals must come from tokens with the approver or admin role; dave has the deployer role');
    assert.equal(approvalRefusal({ name: 'root', role: 'admin' }, ['approver'], []), 'approvals must come from tokens with the approver role; root has the admin role');
  });

  it("reads sshd's lines: logins, refusals, others", () => {
    assert.deepEqual(sshdEventOf('Accepted publickey for root from 127.0.0.1 port 49438 ssh2: ED25519-CERT SHA256:x ID firecall-1-admin (serial 1) CA ED25519 SHA256:y'), { kind: 'login', firecallId: 1, user: 'root', from: '127.0.0.1' });
    assert.equal(sshdEventOf('Failed publickey for root from 127.0.0.1 port 5 ssh2: ED25519-CERT SHA256:x ID firecall-9-admin (serial 9) CA ED25519 SHA256:y')?.kind, 'refused');
    assert.equal(sshdEventOf('Accepted certificate ID "firecall-2-bob" (serial 2) signed by ED25519 CA SHA256:y via /etc/ssh/ca.pub')?.kind, 'other');
    assert.equal(sshdEventOf('Accepted publickey for root from 127.0.0.1 port 5 ssh2: ED25519 SHA256:x'), undefined);
  });

  it('config: firecall policy with defaults; email recipients need alerts.email', () => {
    const config = parseConfig('app: a\ndeploy_to: /srv/a\nenvironments:\n  production:\n    firecall: { principals: [root] }\n');
    assert.deepEqual(config.environments.production?.firecall, { max_ttl: 3_600_000, principals: ['root'], notify: { webhooks: [], email: [] }, sshd_reload: 'systemctl reload ssh', require_approval: false, require_note: false });
    const strict = parseConfig('app: a\ndeploy_to: /srv/a\nenvironments:\n  production:\n    firecall: { principals: [root], require_approval: true, require_note: true }\n');
    assert.deepEqual([strict.environments.production?.firecall?.require_approval, strict.environments.production?.firecall?.require_note], [true, true]);
    assert.throws(
      () => parseConfig('app: a\ndeploy_to: /srv/a\nenvironments:\n  production:\n    firecall:\n      principals: [root]\n      require_approval: yes please\n'),
      (error: unknown) => error instanceof ConfigError && /lockstep\.yaml:7:\d+: .*firecall\.require_approval/.test(error.message),
    );
    assert.throws(
      () => parseConfig('app: a\ndeploy_to: /srv/a\nenvironments:\n  production:\n    firecall: { principals: [root], notify: { email: [oncall@example.com] } }\n'),
      (error: unknown) => error instanceof ConfigError && /firecall\.notify\.email: fire-call email goes through alerts\.email/.test(error.message),
    );
    assert.throws(() => parseConfig('app: a\ndeploy_to: /srv/a\nenvironments:\n  production:\n    firecall: { principals: [] }\n'), ConfigError);
  });
});
