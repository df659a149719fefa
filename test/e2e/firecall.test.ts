/**
 * Fire call end to end with a real OpenSSH server: the agent installs the
 * trust in its sandbox root, a real sshd on a free loopback port includes the
 * drop-in it wrote, and the real ssh client logs in with the certificate
 * `lockstep firecall open` issued. Checks refusal without a certificate, a
 * terminal login, sshd's log and the transcript in `firecall show`, expiry,
 * revocation and the ending of an open session on close, the refusal of
 * deployments until reconciled (rollbacks allowed), a file edited under the
 * fire call reported as drift attributed to it and restored by `reconcile
 * --revert`, the agent's own sshd files never reported as drift, and bad input.
 * The test stops only the sshd it started, by its pid.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { assertExit, releaseIdFrom } from './host-tree.js';
import { until } from '../helpers/until.js';

const SSHD = '/usr/sbin/sshd';
const SSHD_LOG = '/var/log/lockstep-test-sshd.log';
const DROP_IN = '/etc/ssh/sshd_config.d/lockstep-firecall.conf';

interface FirecallJson {
  id: number;
  state: string;
  keyId: string;
  expiresAt: string;
}
interface ShowJson {
  firecall: FirecallJson;
  logins: { host: string; user: string; from: string; at: string }[];
  events: { kind: string; line: string }[];
  transcripts: { host: string; name: string; text: string }[];
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createTcpServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function keygen(file: string, type = 'ed25519'): void {
  const result = spawnSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', file]);
  assert.equal(result.status, 0, String(result.stderr));
}

describe('fire call: emergency access through a real sshd', () => {
  let fleet: Fleet;
  let agent: AgentHandle;
  let sshd: ChildProcess | undefined;
  let port = 0;
  let keys = '';
  let webhook: Server;
  const alerts: { kind: string; summary: string }[] = [];
  /** A release file of the active release, as it was deployed. */
  const EDITED = '/srv/app/current/public/page-0.html';
  let deployedPage = '';
  let v1 = '';
  let v2 = '';
  /** The lockstep.yaml of the tests, applied in before(). */
  let baseConfig = '';

  /** ssh as root to the test sshd with a terminal; stdin stays open so the remote side sees no EOF. */
  function ssh(key: string, command: string): { child: ChildProcess; done: Promise<{ code: number; stdout: string; stderr: string }>; output: () => string } {
    const child = spawn('ssh', [
      '-tt', '-p', String(port), '-i', key, '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR', 'root@127.0.0.1', command,
    ], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const done = new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr })));
    return { child, done, output: () => stdout };
  }

  async function showJson(id: number): Promise<ShowJson> {
    return JSON.parse(await fleet.ok(['firecall', 'show', String(id), '--json'])) as ShowJson;
  }

  before(async () => {
    fleet = await startFleet();
    keys = join(fleet.dir, 'keys');
    await mkdir(keys);
    alerts.length = 0;
    webhook = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        alerts.push(JSON.parse(body) as { kind: string; summary: string });
        response.end('ok');
      });
    });
    await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(webhook.address() as { port: number }).port}/hook`;
    port = await freePort();
    const sshdDir = join(fleet.dir, 'sshd');
    await mkdir(sshdDir);
    const pidFile = join(sshdDir, 'sshd.pid');
    baseConfig = `app: app
deploy_to: /srv/app
watch:
  - path: /etc/ssh
drift:
  scan_interval: 2s
environments:
  production:
    host_timeout: 20s
    alerts: { webhooks: ["${hook}"] }
    firecall:
      max_ttl: 10m
      principals: [root]
      sshd_reload: kill -HUP "$(cat ${pidFile})" 2>/dev/null || true
  staging:
    host_timeout: 20s
`;
    await fleet.applyConfig(baseConfig);
    agent = await fleet.addAgent('prod-1', 'production', { variables: { LOCKSTEP_SSHD_LOG: SSHD_LOG } });
    const app = join(fleet.dir, 'app');
    v1 = releaseIdFrom(await fleet.ok(['release', 'create', await writeApp(app, 'v1'), '--version', '1.0.0']));
    await fleet.ok(['deploy', v1, '--to', 'production']);
    v2 = releaseIdFrom(await fleet.ok(['release', 'create', await writeApp(app, 'v2'), '--version', '2.0.0']));
    await fleet.ok(['deploy', v2, '--to', 'production']);
    deployedPage = await readFile(agent.path(EDITED), 'utf8');

    // The real sshd: its own host key, pid file and log, and the drop-in the agent wrote into its root.
    const dropIn = agent.path(DROP_IN);
    await until('the agent to install the sshd drop-in', () => access(dropIn).then(() => true, () => undefined));
    keygen(join(sshdDir, 'host_key'));
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    await mkdir(agent.path('/var/log'), { recursive: true });
    const config = join(sshdDir, 'sshd_config');
    await writeFile(config, [
      `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(sshdDir, 'host_key')}`, `PidFile ${pidFile}`,
      'AuthorizedKeysFile none', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no',
      'PermitRootLogin prohibit-password', 'LogLevel VERBOSE', `Include ${dropIn}`, '',
    ].join('\n'));
    const check = spawnSync(SSHD, ['-t', '-f', config]);
    assert.equal(check.status, 0, `sshd -t: ${String(check.stderr)}`);
    sshd = spawn(SSHD, ['-D', '-f', config, '-E', agent.path(SSHD_LOG)], { stdio: 'ignore' });
    await until('sshd to listen', async () => ((await readFile(agent.path(SSHD_LOG), 'utf8').catch(() => '')).includes('Server listening') ? true : undefined));
  });

  after(async () => {
    if (sshd?.pid !== undefined && sshd.exitCode === null) {
      const exited = new Promise((resolve) => sshd?.once('exit', resolve));
      process.kill(sshd.pid, 'SIGTERM');
      await exited;
    }
    webhook?.close();
    await fleet?.stop();
  });

  it('installs the trust under the agent root: CA key, revocation list, recorder, drop-in', async () => {
    const ca = (await fleet.ok(['firecall', 'ca', 'production'])).trim();
    assert.match(ca, /^ssh-ed25519 AAAA\S+ lockstep-firecall-production$/);
    assert.equal((await readFile(agent.path('/etc/ssh/lockstep-firecall-ca.pub'), 'utf8')).trim(), ca);
    const dropIn = await readFile(agent.path(DROP_IN), 'utf8');
    assert.match(dropIn, /^TrustedUserCAKeys ".*\/etc\/ssh\/lockstep-firecall-ca.pub"$/m);
    assert.match(dropIn, /^RevokedKeys ".*\/etc\/ssh\/lockstep-firecall.krl"$/m);
    assert.match(dropIn, /^Match User root$/m);
    assert.match(dropIn, /ForceCommand ".*firecall-session"/);
  });

  it('refuses bad input with a one-line error and issues nothing', async () => {
    keygen(join(keys, 'alice'));
    keygen(join(keys, 'ecdsa'), 'ecdsa');
    await writeFile(join(keys, 'garbage.pub'), 'ssh-ed25519 AAAAnotakey comment\n');
    const cases: [string[], number, RegExp][] = [
      [['firecall', 'open', 'production', '--pubkey', join(keys, 'alice.pub')], 2, /required option '--reason/],
      [['firecall', 'open', 'production', '--reason', ' ', '--pubkey', join(keys, 'alice.pub')], 2, /a reason is required/],
      [['firecall', 'open', 'production', '--reason', 'x', '--pubkey', join(keys, 'alice.pub'), '--ttl', '2h'], 3, /above the maximum of 10m/],
      [['firecall', 'open', 'production', '--reason', 'x', '--pubkey', join(keys, 'garbage.pub')], 2, /malformed/],
      [['firecall', 'open', 'production', '--reason', 'x', '--pubkey', join(keys, 'ecdsa.pub')], 2, /ssh-ed25519 or ssh-rsa/],
      [['firecall', 'open', 'production', '--reason', 'x', '--pubkey', join(keys, 'alice')], 2, /is a private key/],
      [['firecall', 'open', 'nowhere', '--reason', 'x', '--pubkey', join(keys, 'alice.pub')], 2, /environment "nowhere" is not in lockstep.yaml/],
      [['firecall', 'open', 'staging', '--reason', 'x', '--pubkey', join(keys, 'alice.pub')], 3, /staging has no fire-call policy/],
    ];
    for (const [args, code, message] of cases) {
      const result = await fleet.cli(args);
      assertExit(result, code, args.join(' '));
      assert.match(result.stderr, message, args.join(' '));
      assert.equal(result.stderr.trim().split('\n').filter((text) => !text.startsWith('(add --help')).length, 1, `one line: ${result.stderr}`);
    }
    assert.deepEqual(JSON.parse(await fleet.ok(['firecall', 'list', '--json'])), []);
    await assert.rejects(access(join(keys, 'alice-cert.pub')), 'no certificate written');
  });

  it('no login without a certificate', async () => {
    const attempt = await ssh(join(keys, 'alice'), 'echo in').done;
    assert.equal(attempt.code, 255, attempt.stdout);
    assert.match(attempt.stderr, /Permission denied/);
  });

  it('opens a fire call: a certificate that logs in with a terminal, announced, recorded and shown in status', async () => {
    const opened = await fleet.cli(['firecall', 'open', 'production', '--reason', 'disk full on prod-1', '--pubkey', join(keys, 'alice.pub'), '--ttl', '5m']);
    assertExit(opened, 0, 'firecall open');
    assert.match(opened.stdout, /fire call 1 open on production until/);
    assert.match(opened.stdout, /ssh -i \S+alice root@HOST/);
    const certificate = spawnSync('ssh-keygen', ['-L', '-f', join(keys, 'alice-cert.pub')], { encoding: 'utf8' }).stdout;
    assert.match(certificate, /Key ID: "firecall-1-admin"/);
    assert.match(certificate, /Serial: 1\n/);
    assert.match(certificate, /permit-pty/);
    assert.doesNotMatch(certificate, /permit-port-forwarding/);

    const status = await fleet.ok(['status', 'production']);
    assert.match(status, /fire call 1 open until .* by admin: disk full on prod-1/);
    await until('the firecall.opened alert', async () => (alerts.some((alert) => alert.kind === 'firecall.opened' && /disk full/.test(alert.summary)) ? true : undefined));

    // The emergency fix: a release file edited by hand on the host (the sandbox root stands for its /).
    const login = await ssh(join(keys, 'alice'), `echo marker-$((6*7)); tty; echo '<p>hotfix</p>' >> ${agent.path(EDITED)}`).done;
    assert.equal(login.code, 0, login.stderr);
    assert.match(login.stdout, /marker-42/);
    assert.match(login.stdout, /\/dev\/pts\/\d+/, 'a terminal');
  });

  it('a file edited under the fire call is drift attributed to it: a notice, not an intrusion alert', async () => {
    const item = await until('the edit to be listed as drift', async () => {
      const items = JSON.parse(await fleet.ok(['drift', 'production', '--json'])) as { path: string; kinds: string[]; firecall: number | null }[];
      return items.find((candidate) => candidate.path === EDITED);
    });
    assert.deepEqual(item.kinds, ['content']);
    assert.equal(item.firecall, 1);
    assert.match(await fleet.ok(['drift', 'production']), /changed under fire call 1/);
    const notice = await until('the drift notice', async () => alerts.find((alert) => alert.kind === 'drift.firecall'));
    assert.match(notice.summary, /^changed under fire call 1 on prod-1 in production: \/srv\/app\/current\/public\/page-0\.html \(content\)/);
    assert.ok(!alerts.some((alert) => alert.kind === 'drift.detected'), `no intrusion alert: ${JSON.stringify(alerts)}`);
  });

  it("sshd's log names the key id, and firecall show lists the login and the transcript", async () => {
    assert.match(await readFile(agent.path(SSHD_LOG), 'utf8'), /Accepted publickey for root from 127\.0\.0\.1 .*ID firecall-1-admin \(serial 1\)/);
    const shown = await until('the login and transcript in firecall show', async () => {
      const show = await showJson(1);
      return show.logins.length > 0 && show.transcripts.some((t) => t.text.includes('marker-42')) ? show : undefined;
    });
    assert.deepEqual(shown.logins.map((login) => [login.host, login.user, login.from]), [['prod-1', 'root', '127.0.0.1']]);
    assert.equal(shown.transcripts[0]?.host, 'prod-1');
    assert.match(shown.transcripts[0]?.name ?? '', /^firecall-1-admin\./);
    const text = await fleet.ok(['firecall', 'show', '1']);
    assert.match(text, /prod-1\s+root\s+127\.0\.0\.1/);
    assert.match(text, /marker-42/);
  });

  it('a certificate with a short ttl is refused once it expired, and the server closes its fire call', async () => {
    keygen(join(keys, 'bob'));
    const opened = JSON.parse(await fleet.ok(['firecall', 'open', 'production', '--reason', 'quick look', '--pubkey', join(keys, 'bob.pub'), '--ttl', '5s', '--json'])) as { firecall: FirecallJson };
    assert.equal(opened.firecall.id, 2);
    const expiresAt = Date.parse(opened.firecall.expiresAt);
    // With the agent stopped, no revocation list can reach sshd: what refuses the login is the certificate's own expiry.
    const pid = agent.process.pid as number;
    const logBefore = (await readFile(agent.path(SSHD_LOG), 'utf8')).length;
    process.kill(pid, 'SIGSTOP');
    try {
      await new Promise((done) => setTimeout(done, Math.max(0, expiresAt - Date.now()) + 1500));
      const late = await ssh(join(keys, 'bob'), 'echo in').done;
      assert.equal(late.code, 255, late.stdout);
      assert.match(late.stderr, /Permission denied/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.match((await readFile(agent.path(SSHD_LOG), 'utf8')).slice(logBefore), /Certificate invalid: expired/);
    await until('the server to close the expired fire call', async () => {
      const list = JSON.parse(await fleet.ok(['firecall', 'list', '--json'])) as FirecallJson[];
      return list.find((call) => call.id === 2)?.state === 'unreconciled' ? true : undefined;
    });
  });

  it('close: a new login is refused at once and the open session is ended', async () => {
    const session = ssh(join(keys, 'alice'), 'echo session-started; sleep 120; echo never');
    await until('the long session to start', async () => (session.output().includes('session-started') ? true : undefined));
    const closed = await fleet.cli(['firecall', 'close', '1', '--note', 'cleaned /var/tmp']);
    assertExit(closed, 0, 'firecall close');
    assert.match(closed.stdout, /prod-1: revoked; sessions ended/);

    const ended = await Promise.race([session.done, new Promise<undefined>((done) => setTimeout(() => done(undefined), 15_000))]);
    assert.ok(ended !== undefined, 'the open session was ended');
    assert.doesNotMatch(ended.stdout, /never/);

    const again = await ssh(join(keys, 'alice'), 'echo in').done;
    assert.equal(again.code, 255, again.stdout);
    assert.match(again.stderr, /Permission denied/);
    assert.match(await readFile(agent.path(SSHD_LOG), 'utf8'), /revoked/i);
    const repeat = await fleet.cli(['firecall', 'close', '1']);
    assertExit(repeat, 3, 'closing twice');
  });

  it('refuses deployments until every closed fire call is reconciled; rollbacks stay allowed', async () => {
    const refused = await fleet.cli(['deploy', v1, '--to', 'production']);
    assertExit(refused, 3, 'deploy while unreconciled');
    assert.match(refused.stderr, /fire call 1 on production is not reconciled: run `lockstep firecall reconcile 1 --revert` or `--adopt --version V`/);
    assert.match(await fleet.ok(['status', 'production']), /fire call 1 closed, not reconciled/);

    assertExit(await fleet.cli(['firecall', 'reconcile', '1']), 2, 'reconcile without --revert or --adopt');
    assertExit(await fleet.cli(['firecall', 'reconcile', '1', '--adopt']), 2, 'adopt without --version');
    const reverted = await fleet.cli(['firecall', 'reconcile', '1', '--revert']);
    assertExit(reverted, 0, 'reconcile 1');
    assert.match(reverted.stdout, /fire call 1 reconciled: reverted 1 path on 1 host/);
    assert.equal(await readFile(agent.path(EDITED), 'utf8'), deployedPage, 'the edited file is restored byte for byte');
    const items = JSON.parse(await fleet.ok(['drift', 'production', '--all', '--json'])) as { path: string; state: string }[];
    assert.deepEqual(items.filter((item) => item.path === EDITED).map((item) => item.state), ['reverted']);
    // Installing and revoking the sshd trust under the watched /etc/ssh is Lockstep's own change, never drift.
    assert.deepEqual(items.filter((item) => item.path.startsWith('/etc/ssh')), []);

    const still = await fleet.cli(['deploy', v2, '--to', 'production']);
    assertExit(still, 3, 'fire call 2 is still unreconciled');
    assert.match(still.stderr, /fire call 2 on production is not reconciled/);
    const rollback = await fleet.cli(['rollback', 'production', '--reason', 'rollbacks stay allowed']);
    assertExit(rollback, 0, 'rollback while unreconciled');
    const adopted = await fleet.cli(['firecall', 'reconcile', '2', '--adopt', '--version', '2.0.1']);
    assertExit(adopted, 0, 'reconcile 2');
    assert.match(adopted.stdout, /no drift was seen under fire call 2/);
    assertExit(await fleet.cli(['deploy', v2, '--to', 'production']), 0, 'deploy after reconcile');

    const audit = JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as { action: string }[];
    for (const action of ['firecall.ca_created', 'firecall.opened', 'firecall.closed', 'firecall.reconciled']) assert.ok(audit.some((event) => event.action === action), action);
    const list = JSON.parse(await fleet.ok(['firecall', 'list', '--json'])) as FirecallJson[];
    assert.deepEqual(list.map((call) => [call.id, call.state]), [[2, 'reconciled'], [1, 'reconciled']]);
  });

  describe('least privilege: firecall.require_approval and require_note', () => {
    const tokens: Record<string, string> = {};
    const as = (name: string) => ({ env: { LOCKSTEP_TOKEN: tokens[name] ?? '' } });
    interface OpenedJson { firecall: FirecallJson & { approval: string | null; approvedBy: string | null; openedAt: string; requestedAt: string }; certificate: string | null }

    before(async () => {
      await fleet.applyConfig(baseConfig.replace('      principals: [root]\n', '      principals: [root]\n      require_approval: true\n      require_note: true\n'));
      for (const [name, role] of [['erin', 'approver'], ['dave', 'deployer']] as const) {
        tokens[name] = (JSON.parse(await fleet.ok(['token', 'create', name, '--role', role, '--json'])) as { token: string }).token;
      }
      keygen(join(keys, 'ops'));
      keygen(join(keys, 'root-admin'));
    });

    it('a request signs nothing until an approver other than the requester approves it; then the certificate logs in', async () => {
      // The admin may both open and approve fire calls: only separation of duties keeps it from approving its own.
      const requested = await fleet.cli(['firecall', 'open', 'production', '--reason', 'oom on prod-1', '--pubkey', join(keys, 'ops.pub'), '--ttl', '5m']);
      assertExit(requested, 0, 'firecall open with require_approval');
      assert.match(requested.stdout, /fire call 3 awaiting approval on production: oom on prod-1/);
      assert.match(requested.stdout, /lockstep firecall approve 3/);
      await assert.rejects(access(join(keys, 'ops-cert.pub')), 'no certificate written before the approval');
      const pending = JSON.parse(await fleet.ok(['firecall', 'show', '3', '--json'])) as OpenedJson;
      assert.equal(pending.firecall.state, 'awaiting_approval');
      assert.equal(pending.certificate, null);
      const noCert = await fleet.cli(['firecall', 'cert', '3']);
      assertExit(noCert, 3, 'cert before approval');
      assert.match(noCert.stderr, /fire call 3 has no certificate: it is awaiting approval/);
      await until('the firecall.requested alert', async () => (alerts.some((alert) => alert.kind === 'firecall.requested' && /fire call 3 .*requested by admin/.test(alert.summary)) ? true : undefined));

      const self = await fleet.cli(['firecall', 'approve', '3']);
      assertExit(self, 5, 'the requester approving their own fire call');
      assert.equal(self.stderr.trim(), 'lockstep: separation of duties: admin requested fire call 3 and cannot approve it');
      const deployer = await fleet.cli(['firecall', 'approve', '3'], as('dave'));
      assertExit(deployer, 5, 'a deployer approving');
      assert.match(deployer.stderr, /needs the approver role/);
      assert.equal((JSON.parse(await fleet.ok(['firecall', 'show', '3', '--json'])) as OpenedJson).firecall.state, 'awaiting_approval', 'still awaiting after the refusals');

      const approved = await fleet.cli(['firecall', 'approve', '3', '--json'], as('erin'));
      assertExit(approved, 0, 'erin approves');
      const call = (JSON.parse(approved.stdout) as OpenedJson).firecall;
      assert.deepEqual([call.state, call.approval, call.approvedBy], ['open', 'approved', 'erin']);
      assert.equal(Date.parse(call.expiresAt) - Date.parse(call.openedAt), 5 * 60_000, 'the ttl counts from the approval');
      assert.ok(call.openedAt >= call.requestedAt.slice(0, 19));
      assertExit(await fleet.cli(['firecall', 'approve', '3'], as('erin')), 3, 'approving twice');

      const written = await fleet.cli(['firecall', 'cert', '3', '--out', join(keys, 'ops-cert.pub')]);
      assertExit(written, 0, 'firecall cert');
      const certificate = spawnSync('ssh-keygen', ['-L', '-f', join(keys, 'ops-cert.pub')], { encoding: 'utf8' }).stdout;
      assert.match(certificate, /Key ID: "firecall-3-admin"/);
      await until('the firecall.opened alert naming the approver', async () => (alerts.some((alert) => alert.kind === 'firecall.opened' && /fire call 3 .*approved by erin/.test(alert.summary)) ? true : undefined));
      const login = await ssh(join(keys, 'ops'), 'echo approved-$((6*7))').done;
      assert.equal(login.code, 0, login.stderr);
      assert.match(login.stdout, /approved-42/);
    });

    it('close without --note is refused in one line naming --note; the note is stored and shown', async () => {
      const refused = await fleet.cli(['firecall', 'close', '3']);
      assertExit(refused, 2, 'close without a note');
      assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
      assert.match(refused.stderr, /requires a post-mortem note .*--note TEXT/);
      assert.equal((JSON.parse(await fleet.ok(['firecall', 'show', '3', '--json'])) as OpenedJson).firecall.state, 'open', 'still open');
      assertExit(await fleet.cli(['firecall', 'close', '3', '--note', ' ']), 2, 'a blank note');
      const closed = await fleet.cli(['firecall', 'close', '3', '--note', 'killed the runaway worker']);
      assertExit(closed, 0, 'close with a note');
      const shown = await fleet.ok(['firecall', 'show', '3']);
      assert.match(shown, /^note +killed the runaway worker$/m);
      assert.match(shown, /^approved .* by erin$/m);
      const again = await ssh(join(keys, 'ops'), 'echo in').done;
      assert.equal(again.code, 255, 'revoked on close');
    });

    it('--override: only an admin, with a reason; opens at once, alerted and audited as an override', async () => {
      const notAdmin = await fleet.cli(['firecall', 'open', 'production', '--reason', 'now', '--pubkey', join(keys, 'ops.pub'), '--override'], as('dave'));
      assertExit(notAdmin, 5, 'override by a deployer');
      assert.match(notAdmin.stderr, /only the admin role may override policy/);
      const opened = await fleet.cli(['firecall', 'open', 'production', '--reason', 'approvers asleep, site down', '--pubkey', join(keys, 'root-admin.pub'), '--override']);
      assertExit(opened, 0, 'override by the admin');
      assert.match(opened.stdout, /fire call 4 open on production/);
      await access(join(keys, 'root-admin-cert.pub'));
      const alert = await until('the firecall.override alert', async () => alerts.find((candidate) => candidate.kind === 'firecall.override'));
      assert.match(alert.summary, /admin overrode the approval fire calls need on production: fire call 4 opened for 10m: approvers asleep, site down/);
      const login = await ssh(join(keys, 'root-admin'), 'echo override-in').done;
      assert.equal(login.code, 0, login.stderr);
      assert.match(await fleet.ok(['firecall', 'list']), /4 +production +open \(override\)/);
      assertExit(await fleet.cli(['firecall', 'close', '4', '--note', 'site back']), 0, 'close the override');

      const audit = JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as { action: string; actor: string; details: Record<string, unknown> }[];
      const of = (action: string) => audit.filter((event) => event.action === action && [3, 4].includes(event.details.firecall as number)).map((event) => [event.actor, event.details.firecall]);
      assert.deepEqual(of('firecall.requested'), [['admin', 3]]);
      assert.deepEqual(of('firecall.approved'), [['erin', 3]]);
      assert.deepEqual(of('firecall.override'), [['admin', 4]]);
      assert.deepEqual(of('firecall.closed'), [['admin', 3], ['admin', 4]]);
      assert.equal(audit.find((event) => event.action === 'firecall.closed' && event.details.firecall === 3)?.details.note, 'killed the runaway worker');
    });
  });
});
