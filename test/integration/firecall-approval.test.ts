/**
 * Fire-call requests awaiting approval, in-process with a clock the test
 * moves: a request nobody approves expires after approvals.expire_after,
 * signs nothing, cannot be approved any more and keeps no deployment out;
 * an approved one is valid for its ttl counted from the approval.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { closeExpiredFirecalls } from '../../src/server/firecall/firecall-service.js';
import { startInProcessApp, type InProcessApp } from '../helpers/in-process-app.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const CONFIG = `app: app
deploy_to: /srv/app
environments:
  production:
    approvals: { expire_after: 1h }
    firecall: { max_ttl: 30m, principals: [root], require_approval: true }
  test:
    allow_override: false
    firecall: { max_ttl: 30m, principals: [root], require_approval: true }
`;

describe('fire-call requests awaiting approval', () => {
  let server: InProcessApp;
  let temp: TempDir;
  let clock = Date.parse('2030-01-01T10:00:00.000Z');
  let publicKey = '';
  let approver = '';

  before(async () => {
    temp = await makeTempDir('lockstep-firecall-approval-');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(temp.path, 'key')]);
    publicKey = readFileSync(join(temp.path, 'key.pub'), 'utf8');
    server = await startInProcessApp(CONFIG, { now: () => new Date(clock) });
    approver = await server.token('erin', 'approver');
  });

  after(async () => {
    await server.close();
    await temp.remove();
  });

  const request = (reason: string) => server.call('POST', '/api/v1/firecalls', server.adminToken, { env: 'production', reason, publicKey, ttl: '10m' });
  const show = async (id: number) => (await server.call('GET', `/api/v1/firecalls/${id}`, server.adminToken)).json;

  it('a request nobody approved within approvals.expire_after expires: no certificate, no approval later, no deployment kept out', async () => {
    const requested = await request('disk full');
    assert.equal(requested.status, 201);
    assert.equal(requested.json.certificate, null);
    assert.equal(requested.json.firecall.state, 'awaiting_approval');
    assert.equal(requested.json.firecall.expiresAt, '2030-01-01T11:00:00.000Z', 'the request waits approvals.expire_after');
    const id = requested.json.firecall.id as number;

    clock += 59 * 60_000;
    await closeExpiredFirecalls(server.firecalls);
    assert.equal((await show(id)).firecall.state, 'awaiting_approval', 'not yet expired');
    clock += 60_000;
    await closeExpiredFirecalls(server.firecalls);
    const expired = await show(id);
    assert.deepEqual([expired.firecall.state, expired.firecall.approval, expired.certificate, expired.firecall.closeNote], ['expired', 'expired', null, 'the request expired without approval']);

    const late = await server.call('POST', `/api/v1/firecalls/${id}/approve`, approver, {});
    assert.equal(late.status, 409);
    assert.equal(late.json.error.message, `fire call ${id} is not awaiting approval (it is expired)`);
    const status = await server.call('GET', '/api/v1/status?env=production', server.adminToken);
    assert.deepEqual([status.json.environments[0].name, status.json.environments[0].firecall], ['production', null], 'an expired request keeps no deployment out');
    const audit = await server.call('GET', '/api/v1/audit', server.adminToken);
    assert.deepEqual(
      (audit.json.events as { action: string; details: { firecall?: number } }[]).filter((event) => event.details.firecall === id).map((event) => event.action),
      ['firecall.requested', 'firecall.request_expired'],
    );
  });

  it('an approved request is valid for its ttl counted from the approval, not from the request', async () => {
    const requested = await request('oom');
    const id = requested.json.firecall.id as number;
    clock += 20 * 60_000;
    const approved = await server.call('POST', `/api/v1/firecalls/${id}/approve`, approver, {});
    assert.equal(approved.status, 200, JSON.stringify(approved.json));
    assert.match(approved.json.certificate, /^ssh-ed25519-cert-v01@openssh\.com /);
    assert.deepEqual([approved.json.firecall.openedAt, approved.json.firecall.expiresAt], [new Date(clock).toISOString(), new Date(clock + 10 * 60_000).toISOString()]);
    assert.equal(approved.json.firecall.requestedAt, new Date(clock - 20 * 60_000).toISOString());
    assert.equal((await show(id)).certificate, approved.json.certificate);
  });

  it('a request awaiting approval cannot be closed (nothing to revoke); an override is refused where allow_override is false, and audited', async () => {
    const requested = await request('look around');
    const id = requested.json.firecall.id as number;
    const close = await server.call('POST', `/api/v1/firecalls/${id}/close`, server.adminToken, { note: 'never mind' });
    assert.equal(close.status, 409);
    assert.match(close.json.error.message, new RegExp(`^fire call ${id} awaits approval and has no certificate to revoke`));
    assert.equal((await show(id)).firecall.state, 'awaiting_approval');

    const deployer = await server.token('dave', 'deployer');
    const notAdmin = await server.call('POST', '/api/v1/firecalls', deployer, { env: 'production', reason: 'now', publicKey, override: true });
    assert.deepEqual([notAdmin.status, notAdmin.json.error.message], [403, 'only the admin role may override policy; token dave has the deployer role']);
    const before = (await server.call('GET', '/api/v1/firecalls', server.adminToken)).json.firecalls.length as number;
    const forbidden = await server.call('POST', '/api/v1/firecalls', server.adminToken, { env: 'test', reason: 'now', publicKey, override: true });
    assert.deepEqual([forbidden.status, forbidden.json.error.message], [409, 'test forbids overrides (allow_override: false)']);
    assert.equal((await server.call('GET', '/api/v1/firecalls', server.adminToken)).json.firecalls.length, before, 'nothing recorded');
    const audit = await server.call('GET', '/api/v1/audit', server.adminToken);
    assert.equal((audit.json.events as { action: string }[]).at(-1)?.action, 'firecall.override_refused');
  });

  it('two approvers at once: one certificate, one approval recorded (5 times)', async () => {
    const second = await server.token('frank', 'approver');
    for (let round = 0; round < 5; round += 1) {
      const id = (await request(`race ${round}`)).json.firecall.id as number;
      const answers = await Promise.all([approver, second].map((token) => server.call('POST', `/api/v1/firecalls/${id}/approve`, token, {})));
      assert.deepEqual(answers.map((answer) => answer.status).sort(), [200, 409], JSON.stringify(answers.map((answer) => answer.json)));
      const audit = await server.call('GET', '/api/v1/audit', server.adminToken);
      const events = (audit.json.events as { action: string; details: { firecall?: number } }[]).filter((event) => event.details.firecall === id).map((event) => event.action);
      assert.deepEqual(events, ['firecall.requested', 'firecall.approved', 'firecall.opened']);
    }
  });

  it('a key ssh-keygen cannot load is refused at the request, not left for the approver, and the error names no server path', async () => {
    const before = (await server.call('GET', '/api/v1/firecalls', server.adminToken)).json.firecalls.length as number;
    const refused = await server.call('POST', '/api/v1/firecalls', server.adminToken, { env: 'production', reason: 'x', publicKey: 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAAQ==' });
    assert.deepEqual([refused.status, refused.json.error.message], [400, 'the public key could not be signed: ssh-keygen cannot load it; check it with: ssh-keygen -l -f FILE']);
    assert.equal((await server.call('GET', '/api/v1/firecalls', server.adminToken)).json.firecalls.length, before, 'no request recorded');
  });
});
