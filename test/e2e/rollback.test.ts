/**
 * Rollback and the life of a running deployment, as a user sees it: a
 * rollback is one rename to a tree still on disk, only known-good releases
 * are rollback targets, a rolled-back release cannot be promoted, and one
 * environment runs one deployment at a time (--no-wait, --follow).
 */
import assert from 'node:assert/strict';
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { assertExit, assertHostRuns, DEPLOY_TO, releaseIdFrom, releaseInode, showRelease } from './host-tree.js';
import type { DeploymentView } from '../../src/api/schemas.js';

/** What `--json` prints for a deployment: the API's view of it. */
type DeploymentJson = DeploymentView;

describe('rollback and running deployments', () => {
  let fleet: Fleet;
  let development: AgentHandle[] = [];
  let test: AgentHandle[] = [];
  const ids: Record<string, string> = {};

  async function create(version: string): Promise<string> {
    const dir = await writeApp(join(fleet.dir, `build-${version}`), `release ${version}`);
    const result = await fleet.cli(['release', 'create', dir, '--version', version]);
    assertExit(result, 0, `release create ${version}`);
    return releaseIdFrom(result.stdout);
  }

  async function deploy(version: string, env: string): Promise<void> {
    assertExit(await fleet.cli(['deploy', ids[version] ?? '', '--to', env]), 0, `deploy ${version} to ${env}`);
  }

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig());
    development = [await fleet.addAgent('dev-1', 'development'), await fleet.addAgent('dev-2', 'development')];
    test = [await fleet.addAgent('test-1', 'test')];
    for (const version of ['1.0.0', '2.0.0', '3.0.0', '4.0.0']) ids[version] = await create(version);
  });

  after(async () => {
    await fleet?.stop();
  });

  it('rollback with nothing known-good before the current release is refused', async () => {
    await deploy('1.0.0', 'development');
    const onlyOne = await fleet.cli(['rollback', 'development']);
    assertExit(onlyOne, 3, 'rollback of development with only one release');
    assert.match(onlyOne.stderr, /development has no known-good release to roll back to/);
    const nothing = await fleet.cli(['rollback', 'production']);
    assertExit(nothing, 3, 'rollback of production with nothing deployed');
    assert.match(nothing.stderr, /production has no known-good release to roll back to/);
    for (const host of development) assert.equal(await readLinkOf(host), `releases/${ids['1.0.0']}`, `${host.name} still on 1.0.0`);
  });

  it('rollback returns every host to the previous release using the tree still on disk', async () => {
    await deploy('1.0.0', 'test');
    await deploy('2.0.0', 'development');
    await deploy('2.0.0', 'test');
    const v1 = await showRelease(fleet, ids['1.0.0'] ?? '');
    const inodes = new Map<string, number>();
    for (const host of development) inodes.set(host.name, await releaseInode(host, v1.id));

    const result = await fleet.cli(['rollback', 'development', '--reason', 'bad 2.0.0']);
    assertExit(result, 0, 'rollback development');
    assert.match(result.stdout, /rollback #\d+ succeeded .*: development runs 1\.0\.0/);
    for (const host of development) {
      await assertHostRuns(host, v1);
      assert.equal(await releaseInode(host, v1.id), inodes.get(host.name), `${host.name}: 1.0.0 was reused, not staged again`);
    }

    const status = JSON.parse(await fleet.ok(['status', 'development', '--json'])) as { environments: { current: { id: string } | null }[] };
    assert.equal(status.environments[0]?.current?.id, v1.id);
    const [last] = JSON.parse(await fleet.ok(['history', 'development', '--json'])) as DeploymentJson[];
    assert.equal(last?.kind, 'rollback');
    assert.equal(last?.state, 'succeeded');
    assert.equal(last?.releaseId, v1.id);
    assert.equal(last?.fromReleaseId, ids['2.0.0']);
    assert.equal(last?.reason, 'bad 2.0.0');
    const v2 = await showRelease(fleet, ids['2.0.0'] ?? '');
    const inDevelopment = v2.environments.find((env) => env.env === 'development');
    assert.ok(inDevelopment?.rolledBackAt, '2.0.0 is marked rolled back in development');
    assert.equal(inDevelopment.current, false);
  });

  it('rollback --to a release that is not known-good is refused', async () => {
    const result = await fleet.cli(['rollback', 'development', '--to', ids['3.0.0'] ?? '']);
    assertExit(result, 3, 'rollback --to a never-deployed release');
    assert.match(result.stderr, /3\.0\.0 .* is not known-good in development/);
    for (const host of development) assert.equal(await readLinkOf(host), `releases/${ids['1.0.0']}`, `${host.name} unchanged`);
  });

  it('a release rolled back in test and no longer current there cannot be promoted to production', async () => {
    const inode = await releaseInode(test[0] as AgentHandle, ids['1.0.0'] ?? '');
    assertExit(await fleet.cli(['rollback', 'test']), 0, 'rollback test');
    assert.equal(await readLinkOf(test[0] as AgentHandle), `releases/${ids['1.0.0']}`);
    assert.equal(await releaseInode(test[0] as AgentHandle, ids['1.0.0'] ?? ''), inode, 'test-1: 1.0.0 reused');

    const refused = await fleet.cli(['deploy', ids['2.0.0'] ?? '', '--to', 'production']);
    assertExit(refused, 3, 'deploy a rolled-back release to production');
    assert.match(refused.stderr, /promotion-gate: release 2\.0\.0 .* was rolled back in test/);
    // The release test went back to is the one that may go on.
    const plan = await fleet.cli(['plan', ids['1.0.0'] ?? '', '--to', 'production']);
    assertExit(plan, 0, 'plan of the current test release to production');
    assert.match(plan.stdout, /-> production: allowed/);
  });

  it('deploy --no-wait returns once started, and deploy --follow reattaches until it succeeds', async () => {
    const started = await fleet.cli(['deploy', ids['3.0.0'] ?? '', '--to', 'development', '--no-wait']);
    assertExit(started, 0, 'deploy --no-wait');
    const match = /started; follow it with: lockstep deploy --follow (\d+)/.exec(started.stdout);
    assert.ok(match?.[1], `--no-wait names the command to follow: ${started.stdout}`);
    assert.doesNotMatch(started.stdout, /succeeded/);

    const followed = await fleet.cli(['deploy', '--follow', match[1]]);
    assertExit(followed, 0, 'deploy --follow');
    assert.match(followed.stdout, new RegExp(`deployment #${match[1]} succeeded .*: development runs 3\\.0\\.0`));
    const v3 = await showRelease(fleet, ids['3.0.0'] ?? '');
    for (const host of development) await assertHostRuns(host, v3);
  });

  it('a second deployment to an environment with one running is refused, naming the running one', async () => {
    const offline = development[1] as AgentHandle;
    await offline.kill();
    const started = await fleet.cli(['deploy', ids['4.0.0'] ?? '', '--to', 'development', '--no-wait', '--json']);
    assertExit(started, 0, 'deploy --no-wait with a host offline');
    const running = JSON.parse(started.stdout) as DeploymentJson;
    assert.equal(running.state, 'running');

    const second = await fleet.cli(['deploy', ids['4.0.0'] ?? '', '--to', 'development']);
    assertExit(second, 3, 'a second deployment while one runs');
    assert.match(second.stderr, new RegExp(`deployment #${running.id} to development is still running`));
    assert.match(second.stderr, new RegExp(`lockstep deploy --follow ${running.id}`));
    const rollback = await fleet.cli(['rollback', 'development']);
    assertExit(rollback, 3, 'a rollback while a deployment runs');
    assert.match(rollback.stderr, new RegExp(`deployment #${running.id} to development is still running`));

    await offline.restart();
    const followed = await fleet.cli(['deploy', '--follow', String(running.id)]);
    assertExit(followed, 0, 'deploy --follow after the host came back');
    const v4 = await showRelease(fleet, ids['4.0.0'] ?? '');
    for (const host of development) await assertHostRuns(host, v4);
    const history = JSON.parse(await fleet.ok(['history', 'development', '--json'])) as DeploymentJson[];
    assert.equal(history.filter((d) => d.releaseId === v4.id).length, 1, 'the refused second deployment left no record');
  });
});

/** Where a host's DEPLOY_TO/current points. */
function readLinkOf(host: AgentHandle): Promise<string> {
  return readlink(host.path(`${DEPLOY_TO}/current`));
}
