/**
 * The whole path of one change, as a user sees it: init and apply a config,
 * create releases (uploading only what changed), the promotion gate refusing
 * a shortcut, deployments through development, test and production, the
 * files on every host, and what status, history and the audit log record.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { assertExit, assertHostRuns, DEPLOY_TO, releaseIdFrom, showRelease } from './host-tree.js';

interface UploadJson {
  id: string;
  created: boolean;
  files: number;
  uploaded: { blobs: number; bytes: number };
}

interface AuditJson {
  seq: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

/** JSON with sorted keys and no whitespace, written here independently of the product's. */
function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record)
    .filter((key) => record[key] !== undefined)
    .sort();
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical(record[key])}`).join(',')}}`;
}

describe('pipeline: development -> test -> production', () => {
  let fleet: Fleet;
  const hosts: Record<string, AgentHandle[]> = { development: [], test: [], production: [] };
  let app1: string;
  let app2: string;
  let v1 = '';
  let v2 = '';

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig());
    const layout: [string, string][] = [
      ['dev-1', 'development'],
      ['test-1', 'test'],
      ['test-2', 'test'],
      ['prod-1', 'production'],
      ['prod-2', 'production'],
    ];
    for (const [name, env] of layout) hosts[env]?.push(await fleet.addAgent(name, env));
    app1 = await writeApp(join(fleet.dir, 'build-1'), 'v1');
    await symlink('page-0.html', join(app1, 'public/index.html'));
    await writeFile(join(app1, 'config.ini'), 'secret=1\n', { mode: 0o600 });
    app2 = join(fleet.dir, 'build-2');
    await cp(app1, app2, { recursive: true, verbatimSymlinks: true });
    await writeFile(join(app2, 'VERSION'), 'v2\n');
  });

  after(async () => {
    await fleet?.stop();
  });

  it('lockstep init writes a lockstep.yaml that apply accepts', async () => {
    const before = (await fleet.http('GET', '/api/v1/config')).json as { version: number };
    const project = join(fleet.dir, 'project');
    await mkdir(project);
    const init = await fleet.cli(['init'], { cwd: project });
    assertExit(init, 0, 'lockstep init');
    assert.match(init.stdout, /wrote lockstep\.yaml/);
    const again = await fleet.cli(['init'], { cwd: project });
    assertExit(again, 2, 'lockstep init over an existing file');
    assert.match(again.stderr, /already exists/);
    const applied = await fleet.cli(['apply', '-f', 'lockstep.yaml', '--json'], { cwd: project });
    assertExit(applied, 0, 'lockstep apply of the starter file');
    const result = JSON.parse(applied.stdout) as { version: number; changed: boolean };
    assert.equal(result.changed, true);
    assert.equal(result.version, before.version + 1);
    const stored = (await fleet.http('GET', '/api/v1/config')).json as { version: number; yaml: string };
    assert.equal(stored.yaml, await readFile(join(project, 'lockstep.yaml'), 'utf8'));
    // Back to the test config for the rest of the suite.
    await fleet.applyConfig(testConfig());
  });

  it('release create prints a 64-hex id; the same tree twice gives the same id and uploads nothing', async () => {
    const created = await fleet.cli(['release', 'create', app1, '--version', '1.0.0']);
    assertExit(created, 0, 'release create');
    v1 = releaseIdFrom(created.stdout);
    assert.match(created.stderr, /created app@1\.0\.0/);

    const again = await fleet.cli(['release', 'create', app1, '--version', '1.0.0', '--json']);
    assertExit(again, 0, 'release create of the same tree');
    const summary = JSON.parse(again.stdout) as UploadJson;
    assert.equal(summary.id, v1);
    assert.equal(summary.created, false);
    assert.equal(summary.uploaded.blobs, 0);
    assert.equal(summary.uploaded.bytes, 0);
  });

  it('a second version differing in one file uploads exactly one blob', async () => {
    const created = await fleet.cli(['release', 'create', app2, '--version', '2.0.0', '--json']);
    assertExit(created, 0, 'release create v2');
    const summary = JSON.parse(created.stdout) as UploadJson;
    v2 = summary.id;
    assert.match(v2, /^[0-9a-f]{64}$/);
    assert.notEqual(v2, v1);
    assert.equal(summary.created, true);
    assert.equal(summary.uploaded.blobs, 1);
    assert.equal(summary.uploaded.bytes, Buffer.byteLength('v2\n'));
  });

  it('the promotion gate refuses production before test, naming the rule and the command', async () => {
    const refused = await fleet.cli(['deploy', v1, '--to', 'production', '--reason', 'shortcut']);
    assertExit(refused, 3, 'deploy to production before test');
    assert.match(refused.stderr, /promotion-gate/);
    assert.match(refused.stderr, new RegExp(`lockstep deploy ${v1.slice(0, 12)}[0-9a-f]* --to test`));
    const refusedTest = await fleet.cli(['deploy', v1, '--to', 'test']);
    assertExit(refusedTest, 3, 'deploy to test before development');
    assert.match(refusedTest.stderr, new RegExp(`lockstep deploy ${v1.slice(0, 12)}[0-9a-f]* --to development`));
    const plan = await fleet.cli(['plan', v1, '--to', 'production', '--json']);
    assertExit(plan, 3, 'plan of a refused deployment');
    assert.equal((JSON.parse(plan.stdout) as { verdict: { kind: string } }).verdict.kind, 'refused');
    const history = JSON.parse(await fleet.ok(['history', '--json'])) as unknown[];
    assert.equal(history.length, 0, 'a refused deployment starts nothing');
  });

  it('deploys to development, then test, then production', async () => {
    for (const env of ['development', 'test', 'production']) {
      const result = await fleet.cli(['deploy', v1, '--to', env, '--reason', `ship 1.0.0 to ${env}`]);
      assertExit(result, 0, `deploy to ${env}`);
      assert.match(result.stdout, new RegExp(`succeeded .*: ${env} runs 1\\.0\\.0`));
      for (const host of hosts[env] ?? []) assert.match(result.stdout, new RegExp(`${host.name}: ok`));
    }
  });

  it('every host runs the release: current points at it and every file matches the manifest', async () => {
    const release = await showRelease(fleet, v1);
    assert.equal(release.id, v1);
    assert.ok(release.manifest.entries.some((entry) => entry.type === 'symlink' && entry.path === 'public/index.html' && entry.target === 'page-0.html'));
    assert.ok(release.manifest.entries.some((entry) => entry.type === 'file' && entry.path === 'bin/start' && entry.mode === 0o755));
    assert.ok(release.manifest.entries.some((entry) => entry.type === 'file' && entry.path === 'config.ini' && entry.mode === 0o600));
    for (const env of Object.keys(hosts)) {
      for (const host of hosts[env] ?? []) await assertHostRuns(host, release);
    }
  });

  it("shared/lockstep.env holds the environment's vars with mode 0640", async () => {
    const stages: Record<string, string> = { development: 'dev', test: 'test', production: 'prod' };
    for (const env of Object.keys(hosts)) {
      for (const host of hosts[env] ?? []) {
        const file = host.path(`${DEPLOY_TO}/shared/lockstep.env`);
        assert.equal(await readFile(file, 'utf8'), `STAGE=${stages[env]}\n`, `${host.name}: lockstep.env`);
        assert.equal((await stat(file)).mode & 0o777, 0o640, `${host.name}: lockstep.env mode`);
      }
    }
  });

  it('status --json shows every environment on 1.0.0 with its hosts online', async () => {
    const status = JSON.parse(await fleet.ok(['status', '--json'])) as {
      app: string;
      environments: { name: string; promoteFrom: string | null; current: { id: string; version: string } | null; hosts: { name: string; online: boolean; releaseId: string | null }[] }[];
    };
    assert.equal(status.app, 'app');
    assert.deepEqual(
      status.environments.map((env) => [env.name, env.promoteFrom]),
      [
        ['development', null],
        ['test', 'development'],
        ['production', 'test'],
      ],
    );
    for (const env of status.environments) {
      assert.deepEqual(env.current, { id: v1, version: '1.0.0' }, `${env.name} current`);
      assert.deepEqual(env.hosts.map((host) => host.name).sort(), (hosts[env.name] ?? []).map((host) => host.name).sort());
      for (const host of env.hosts) {
        assert.equal(host.online, true, `${host.name} online`);
        assert.equal(host.releaseId, v1, `${host.name} runs v1`);
      }
    }
    const human = await fleet.cli(['status']);
    assertExit(human, 0, 'status');
    assert.match(human.stdout, /production <- test: 1\.0\.0/);
  });

  it('history --json lists the deployments with who and why', async () => {
    const history = JSON.parse(await fleet.ok(['history', '--json'])) as { env: string; kind: string; state: string; releaseId: string; requestedBy: string; reason: string | null; hosts: { host: string; state: string }[] }[];
    assert.deepEqual(
      history.map((d) => d.env),
      ['production', 'test', 'development'],
      'newest first',
    );
    for (const deployment of history) {
      assert.equal(deployment.kind, 'deploy');
      assert.equal(deployment.state, 'succeeded');
      assert.equal(deployment.releaseId, v1);
      assert.equal(deployment.requestedBy, 'admin');
      assert.equal(deployment.reason, `ship 1.0.0 to ${deployment.env}`);
      assert.deepEqual(
        deployment.hosts.map((host) => [host.host, host.state]).sort(),
        (hosts[deployment.env] ?? []).map((host) => [host.name, 'succeeded']).sort(),
      );
    }
  });

  it('audit log --json records every change in an unbroken hash chain', async () => {
    const events = JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as AuditJson[];
    const actions = events.map((event) => event.action);
    for (const action of ['config.applied', 'release.created', 'deployment.started', 'deployment.succeeded', 'deployment.refused']) {
      assert.ok(actions.includes(action), `audit log contains ${action} (has: ${[...new Set(actions)].join(', ')})`);
    }
    assert.equal(actions.filter((action) => action === 'release.created').length, 2, 'creating the same release twice records it once');
    assert.equal(actions.filter((action) => action === 'deployment.succeeded').length, 3);
    const refused = events.filter((event) => event.action === 'deployment.refused');
    assert.deepEqual(
      refused.map((event) => event.target),
      ['env:production', 'env:test'],
    );
    assert.equal(refused[0]?.details.request, 'shortcut');
    const started = events.filter((event) => event.action === 'deployment.started');
    assert.deepEqual(
      started.map((event) => event.details.reason),
      ['ship 1.0.0 to development', 'ship 1.0.0 to test', 'ship 1.0.0 to production'],
    );

    assert.equal(events[0]?.seq, 1, 'the log starts at the first event');
    assert.equal(events[0]?.prevHash, '0'.repeat(64));
    for (const [index, event] of events.entries()) {
      if (index > 0) {
        assert.equal(event.seq, (events[index - 1]?.seq ?? 0) + 1, `seq ${event.seq} follows its predecessor`);
        assert.equal(event.prevHash, events[index - 1]?.hash, `event ${event.seq} (${event.action}) chains to the one before`);
      }
      const body = canonical({ seq: event.seq, at: event.at, actor: event.actor, action: event.action, target: event.target, details: event.details });
      const hash = createHash('sha256').update(event.prevHash).update(body).digest('hex');
      assert.equal(event.hash, hash, `event ${event.seq} (${event.action}) hash covers its content`);
    }
  });
});
