/**
 * The server's side of drift, in-process over a real SQLite store: settings,
 * reports reconciled into items (alerted once), validation of report paths,
 * commands handed out through the work poll and answered by their own host
 * only, revert/accept closing items, accept refusing release files, and adopt
 * making an ordinary release that the promotion gate holds back.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Alert } from '../../src/server/alerts/alert-channel.js';
import type { AlertTarget } from '../../src/server/alerts/alert-dispatcher.js';
import { startInProcessApp, type InProcessApp } from '../helpers/in-process-app.js';

const CONFIG = (scanInterval: string) => `app: shop
deploy_to: /srv/shop
watch:
  - path: /etc/shop
    exclude: ["*.tmp"]
drift:
  scan_interval: ${scanInterval}
environments:
  test: {}
  production:
    promote_from: test
`;

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const file = (content: string, mode = 0o644) => ({ type: 'file' as const, mode, size: Buffer.byteLength(content), sha256: sha(content) });
const CURRENT = '/srv/shop/current';

type Finding = { scope: 'release' | 'watch'; path: string; kinds: string[]; expected: unknown; actual: unknown };

function report(host: string, findings: Finding[], cause: unknown = { kind: 'scan' }, releaseId: string | null = null) {
  return { host, releaseId, full: false, cause, findings, truncated: false, stats: { entries: 5, hashedFiles: 1, elapsedMs: 1 } };
}

describe('drift on the server', () => {
  let server: InProcessApp;
  let prod: string;
  let other: string;
  let deployer: string;
  let viewer: string;
  const alerts: Alert[] = [];

  before(async () => {
    server = await startInProcessApp(CONFIG('2s'));
    prod = await server.enroll('prod-1', 'production');
    other = await server.enroll('prod-2', 'production');
    await server.enroll('test-1', 'test');
    deployer = await server.token('dep', 'deployer');
    viewer = await server.token('look', 'viewer');
    // Count what the dispatcher is asked to deliver (the channels themselves are tested elsewhere).
    const dispatch = server.context.alerts.dispatch.bind(server.context.alerts);
    server.context.alerts.dispatch = (alert: Alert, to: AlertTarget) => {
      // Not the audit anchors, which token and config changes send at once, in the background.
      if (alert.kind !== 'audit.checkpoint') alerts.push(alert);
      dispatch(alert, to);
    };
  });
  after(() => server?.close());

  const items = async (target: string, all = false) => (await server.call('GET', `/api/v1/drift?target=${target}${all ? '&all=1' : ''}`, viewer)).json.items as any[];
  const post = (credential: string, body: unknown) => server.call('POST', '/api/v1/agent/drift', credential, body);

  it('gives agents their settings, and the work poll names the revision', async () => {
    const settings = await server.call('GET', '/api/v1/agent/settings?host=prod-1', prod);
    assert.equal(settings.status, 200);
    assert.deepEqual(
      { ...settings.json, revision: undefined },
      { revision: undefined, env: 'production', deployTo: '/srv/shop', watch: [{ path: '/etc/shop', include: [], exclude: ['*.tmp'] }], scan: { periodicMs: 2000, fullMs: 86_400_000, nice: 10, ionice: 'idle', maxReadBytesPerSecond: null } },
    );
    const work = await server.call('GET', '/api/v1/agent/work?host=prod-1&wait=0', prod);
    assert.deepEqual(work.json, { task: null, command: null, settingsRevision: settings.json.revision });
    assert.equal((await server.call('GET', '/api/v1/agent/settings?host=prod-2', prod)).status, 403, 'another host’s settings');

    const applied = await server.call('POST', '/api/v1/config', server.adminToken, { yaml: CONFIG('3s'), file: 'lockstep.yaml' });
    assert.equal(applied.status, 200);
    const changed = await server.call('GET', '/api/v1/agent/work?host=prod-1&wait=0', prod);
    assert.notEqual(changed.json.settingsRevision, settings.json.revision, 'a config change changes the revision');
  });

  it('opens an item once, alerts once, follows it on later scans and resolves it when it goes away', async () => {
    const edited: Finding = { scope: 'release', path: `${CURRENT}/public/index.html`, kinds: ['content'], expected: file('old'), actual: file('new!') };
    const before = alerts.length;
    assert.equal((await post(prod, report('prod-1', [edited]))).status, 200);
    const [item] = await items('prod-1');
    assert.equal(item.path, edited.path);
    assert.equal(item.state, 'open');
    assert.deepEqual(item.kinds, ['content']);
    assert.deepEqual(item.actual, edited.actual);
    assert.equal(alerts.length, before + 1);
    assert.equal(alerts.at(-1)?.kind, 'drift.detected');
    assert.match(alerts.at(-1)?.summary ?? '', /^drift on prod-1 in production: \/srv\/shop\/current\/public\/index\.html \(content\)$/);

    // Seen again, then changed again: the same item, no new alert.
    assert.equal((await post(prod, report('prod-1', [edited]))).status, 200);
    const chmod = { ...edited, kinds: ['content', 'mode'], actual: file('new!', 0o600) };
    assert.equal((await post(prod, report('prod-1', [chmod]))).status, 200);
    const again = await items('prod-1');
    assert.equal(again.length, 1);
    assert.equal(again[0].id, item.id);
    assert.deepEqual(again[0].kinds, ['content', 'mode']);
    assert.equal(again[0].firstSeenAt, item.firstSeenAt);
    assert.equal(alerts.length, before + 1, 'an item is alerted once, not once per scan');

    const status = await server.call('GET', '/api/v1/status?env=production', viewer);
    assert.deepEqual(status.json.environments[0].hosts.map((host: any) => [host.name, host.openDrift]), [['prod-1', 1], ['prod-2', 0]]);

    assert.equal((await post(prod, report('prod-1', []))).status, 200);
    assert.deepEqual(await items('prod-1'), []);
    const [closed] = await items('prod-1', true);
    assert.equal(closed.state, 'resolved');
    assert.equal(closed.closedBy, 'lockstep');
    const audit = (await server.call('GET', '/api/v1/audit?limit=10000', viewer)).json.events.map((event: any) => event.action);
    assert.equal(audit.filter((action: string) => action === 'drift.detected').length, 1);
    assert.equal(audit.filter((action: string) => action === 'drift.closed').length, 1);
  });

  it('refuses report paths that are relative, contain "..", or name release files outside DEPLOY_TO/current', async () => {
    const bad = (path: string, scope: 'release' | 'watch' = 'release') => post(prod, report('prod-1', [{ scope, path, kinds: ['added'], expected: null, actual: file('x') }]));
    for (const path of ['relative/file', `${CURRENT}/../../etc/passwd`, '/srv/shop/releases/x/file', '/etc/shop/app.conf']) {
      const answer = await bad(path);
      assert.equal(answer.status, 400, path);
      assert.match(answer.json.error.message, /^invalid drift report: /);
    }
    assert.equal((await bad('/etc/../etc/shadow', 'watch')).status, 400);
    assert.equal((await post(other, report('prod-1', []))).status, 403, 'a report for another host');
  });

  it('records drift of a kept release tree, named DEPLOY_TO/releases/<release id>/PATH', async () => {
    const path = `/srv/shop/releases/${'a'.repeat(64)}/public/index.html`;
    const answer = await post(prod, report('prod-1', [{ scope: 'release', path, kinds: ['content'], expected: file('old'), actual: file('new') }]));
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    assert.deepEqual((await items('prod-1')).map((item: any) => [item.scope, item.path, item.kinds]), [['release', path, ['content']]]);
    assert.equal((await post(prod, report('prod-1', []))).status, 200);
  });

  it('hands a command to its host through the work poll, woken at once, and takes the answer only from that host', { timeout: 15_000 }, async () => {
    const polling = server.call('GET', '/api/v1/agent/work?host=prod-1&wait=30', prod);
    await new Promise((done) => setTimeout(done, 100));
    const created = await server.call('POST', '/api/v1/drift/scan', deployer, { host: 'prod-1', full: true });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.equal(created.json.state, 'pending');
    const work = await polling;
    assert.deepEqual(work.json.command, { id: created.json.id, kind: 'drift-scan', full: true });
    assert.equal((await server.call('GET', `/api/v1/commands/${created.json.id}`, viewer)).json.state, 'sent');
    assert.equal((await server.call('GET', '/api/v1/agent/work?host=prod-1&wait=0', prod)).json.command, null, 'handed out once');

    const answer = { host: 'prod-2', ok: true, detail: 'scanned' };
    assert.equal((await server.call('POST', `/api/v1/agent/commands/${created.json.id}`, other, answer)).status, 403, 'another host cannot answer it');
    const waiting = server.call('GET', `/api/v1/commands/${created.json.id}?wait=30`, viewer);
    assert.equal((await server.call('POST', `/api/v1/agent/commands/${created.json.id}`, prod, { host: 'prod-1', ok: true, detail: 'scanned 12 entries, 0 drifted' })).status, 200);
    const done = await waiting;
    assert.equal(done.json.state, 'done');
    assert.equal(done.json.ok, true);
    assert.equal(done.json.detail, 'scanned 12 entries, 0 drifted');
    assert.equal((await server.call('POST', '/api/v1/drift/scan', viewer, { host: 'prod-1' })).status, 403, 'viewers cannot ask for scans');
    assert.equal((await server.call('POST', '/api/v1/drift/scan', deployer, { host: 'nope' })).status, 404);
  });

  it('revert closes the items the revert made go as reverted, by whom and why', async () => {
    const added: Finding = { scope: 'release', path: `${CURRENT}/backdoor.php`, kinds: ['added'], expected: null, actual: file('<?php') };
    const watched: Finding = { scope: 'watch', path: '/etc/shop/app.conf', kinds: ['content'], expected: file('a=1'), actual: file('a=2') };
    assert.equal((await post(other, report('prod-2', [added, watched]))).status, 200);
    assert.equal((await server.call('POST', '/api/v1/drift/revert', deployer, { target: 'production', paths: ['/nowhere'] })).status, 400);
    const revert = await server.call('POST', '/api/v1/drift/revert', deployer, { target: 'production', paths: [added.path], reason: 'not ours' });
    assert.equal(revert.status, 201, JSON.stringify(revert.json));
    assert.deepEqual(revert.json.skipped, ['prod-1']);
    const [command] = revert.json.commands;
    assert.equal(command.host, 'prod-2');
    const work = await server.call('GET', '/api/v1/agent/work?host=prod-2&wait=0', other);
    assert.deepEqual(work.json.command, { id: command.id, kind: 'drift-revert', paths: [added.path] });
    assert.equal((await post(other, report('prod-2', [watched], { kind: 'command', commandId: command.id }))).status, 200);
    const all = await items('prod-2', true);
    const reverted = all.find((item) => item.path === added.path);
    assert.equal(reverted.state, 'reverted');
    assert.equal(reverted.closedBy, 'dep');
    assert.equal(reverted.reason, 'not ours');
    assert.equal(all.find((item) => item.path === watched.path).state, 'open');
  });

  it('accept refuses release files up front (adopt them instead) and unknown paths, and closes watched items as accepted', async () => {
    const admin = server.adminToken;
    const release = await server.call('POST', '/api/v1/drift/accept', admin, { host: 'prod-2', paths: [`${CURRENT}/index.html`], reason: 'x' });
    assert.equal(release.status, 409);
    assert.equal(release.json.error.message, `${CURRENT}/index.html is a release file: release files cannot be accepted; adopt it instead with \`lockstep drift adopt prod-2 --version V --reason TEXT\``);
    assert.equal((await server.call('POST', '/api/v1/drift/accept', admin, { host: 'prod-2', paths: ['/etc/shop/other.conf'], reason: 'x' })).status, 400);
    assert.equal((await server.call('POST', '/api/v1/drift/accept', admin, { host: 'prod-2', paths: ['/etc/shop/app.conf'] })).status, 400, 'a reason is required');
    assert.equal((await server.call('POST', '/api/v1/drift/accept', deployer, { host: 'prod-2', paths: ['/etc/shop/app.conf'], reason: 'x' })).status, 403, 'admins only');
    const accept = await server.call('POST', '/api/v1/drift/accept', admin, { host: 'prod-2', paths: ['/etc/shop/app.conf/'], reason: 'tuned pool size' });
    assert.equal(accept.status, 201, JSON.stringify(accept.json));
    assert.deepEqual(accept.json.paths, ['/etc/shop/app.conf']);
    assert.equal((await post(other, report('prod-2', [], { kind: 'command', commandId: accept.json.id }))).status, 200);
    const accepted = (await items('prod-2', true)).find((item) => item.path === '/etc/shop/app.conf');
    assert.equal(accepted.state, 'accepted');
    assert.equal(accepted.reason, 'tuned pool size');
  });

  it('adopt makes a release of the host’s release plus its drifted files, held back by the gate until test has it', async () => {
    // A release on prod-1, as a deployment would have left it.
    const files: Record<string, string> = { 'index.html': '<h1>1.0</h1>', 'old.txt': 'old' };
    for (const content of Object.values(files)) {
      assert.equal((await server.call('PUT', `/api/v1/blobs/${sha(content)}`, deployer, Buffer.from(content))).status, 200);
    }
    const created = await server.call('POST', '/api/v1/releases', deployer, {
      version: '1.0.0',
      entries: [
        { path: 'index.html', ...file(files['index.html'] ?? '') },
        { path: 'old.txt', ...file(files['old.txt'] ?? '') },
      ],
    });
    assert.equal(created.status, 200, JSON.stringify(created.json));
    const base = created.json.release.id as string;
    assert.equal((await server.call('POST', '/api/v1/agent/heartbeat', prod, { host: 'prod-1', currentReleaseId: base })).status, 200);

    const edited = '<h1>1.0 hotfix</h1>';
    const findings: Finding[] = [
      { scope: 'release', path: `${CURRENT}/index.html`, kinds: ['content', 'mode'], expected: file(files['index.html'] ?? ''), actual: file(edited, 0o600) },
      { scope: 'release', path: `${CURRENT}/old.txt`, kinds: ['removed'], expected: file('old'), actual: null },
    ];
    assert.equal((await post(prod, report('prod-1', findings, { kind: 'scan' }, base))).status, 200);
    const missing = await server.call('POST', '/api/v1/drift/adopt', deployer, { host: 'prod-1', version: '1.0.1', reason: 'hotfix' });
    assert.equal(missing.status, 400);
    assert.match(missing.json.error.message, /^cannot adopt \/srv\/shop\/current\/index\.html: its content \(\w{12}\) was never uploaded by the agent of prod-1/);

    // The agent uploads the drifted content; a wrong hash or another host's name is refused.
    assert.equal((await server.call('PUT', `/api/v1/agent/blobs/${sha('other')}?host=prod-1`, prod, Buffer.from(edited))).status, 400);
    assert.equal((await server.call('PUT', `/api/v1/agent/blobs/${sha(edited)}?host=prod-2`, prod, Buffer.from(edited))).status, 403);
    assert.equal((await server.call('PUT', `/api/v1/agent/blobs/${sha(edited)}?host=prod-1`, prod, Buffer.from(edited))).status, 200);

    const adopted = await server.call('POST', '/api/v1/drift/adopt', deployer, { host: 'prod-1', version: '1.0.1', reason: 'hotfix' });
    assert.equal(adopted.status, 201, JSON.stringify(adopted.json));
    assert.equal(adopted.json.items, 2);
    assert.equal(adopted.json.firstEnv, 'test');
    assert.equal(adopted.json.release.createdBy, 'dep');
    const shown = await server.call('GET', `/api/v1/releases/${adopted.json.release.id}`, viewer);
    assert.deepEqual(shown.json.manifest.entries, [{ path: 'index.html', ...file(edited, 0o600) }]);
    const open = await items('prod-1');
    assert.deepEqual(open.map((item) => [item.state, item.adoptedInto?.version]), [['open', '1.0.1'], ['open', '1.0.1']]);

    const refused = await server.call('POST', '/api/v1/deployments', deployer, { release: 'shop@1.0.1', env: 'production' });
    assert.equal(refused.status, 409, JSON.stringify(refused.json));

    // Once the host runs the adopted release, the drift is gone: the items close as adopted.
    assert.equal((await post(prod, report('prod-1', [], { kind: 'deployment', deploymentId: 42 }, adopted.json.release.id))).status, 200);
    const closed = await items('prod-1', true);
    assert.deepEqual(
      closed.filter((item) => item.adoptedInto).map((item) => [item.state, item.closedBy]),
      [
        ['adopted', 'deployment #42'],
        ['adopted', 'deployment #42'],
      ],
    );
  });
});

describe('drift monitoring that went quiet', () => {
  it('a host online but without a drift report for two periodic scans and a minute is "drift unknown"', async () => {
    let now = Date.now();
    const server = await startInProcessApp(CONFIG('2s'), { now: () => new Date(now) });
    try {
      const credentials = { 'prod-1': await server.enroll('prod-1', 'production'), 'prod-2': await server.enroll('prod-2', 'production') };
      const heartbeat = (host: 'prod-1' | 'prod-2') => server.call('POST', '/api/v1/agent/heartbeat', credentials[host], { host, currentReleaseId: null });
      const stale = async () => {
        const { hosts } = (await server.call('GET', '/api/v1/hosts', server.adminToken)).json as { hosts: { name: string; online: boolean; driftStale: boolean }[] };
        return Object.fromEntries(hosts.map((host) => [host.name, [host.online, host.driftStale]]));
      };
      await heartbeat('prod-1');
      await heartbeat('prod-2');
      assert.deepEqual(await stale(), { 'prod-1': [true, false], 'prod-2': [true, false] }, 'just enrolled: not judged yet');

      // Two 2 s scans and a minute later: prod-1 reported meanwhile, prod-2 never did.
      now += 65_000;
      await heartbeat('prod-1');
      await heartbeat('prod-2');
      assert.equal((await server.call('POST', '/api/v1/agent/drift', credentials['prod-1'], report('prod-1', []))).status, 200);
      assert.deepEqual(await stale(), { 'prod-1': [true, false], 'prod-2': [true, true] });

      // Offline is shown as offline, not as drift unknown.
      now += 65_000;
      assert.deepEqual(await stale(), { 'prod-1': [false, false], 'prod-2': [false, false] });
    } finally {
      await server.close();
    }
  });
});
