/**
 * A host that is down when a deployment runs: the deployment fails once
 * host_timeout passes, names the host, keeps what the other hosts did, and
 * says so in history; once the host is back, the next deployment succeeds.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { assertExit, assertHostRuns, releaseIdFrom, releaseInode, showRelease } from './host-tree.js';

interface DeploymentJson {
  id: number;
  env: string;
  state: string;
  releaseId: string;
  error: string | null;
  hosts: { host: string; state: string; error: string | null }[];
}

describe('a host offline during a deployment', () => {
  let fleet: Fleet;
  let up: AgentHandle;
  let down: AgentHandle;
  const ids: string[] = [];

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig({ hostTimeout: '3s' }));
    up = await fleet.addAgent('dev-up', 'development');
    down = await fleet.addAgent('dev-down', 'development');
    for (const version of ['1.0.0', '2.0.0']) {
      const dir = await writeApp(join(fleet.dir, `build-${version}`), version);
      const created = await fleet.cli(['release', 'create', dir, '--version', version]);
      assertExit(created, 0, `release create ${version}`);
      ids.push(releaseIdFrom(created.stdout));
    }
  });

  after(async () => {
    await fleet?.stop();
  });

  it('deploy exits 4 after host_timeout, naming the offline host; the other host succeeded', async () => {
    await down.kill('SIGKILL');
    const result = await fleet.cli(['deploy', ids[0] ?? '', '--to', 'development', '--reason', 'with a host down']);
    assertExit(result, 4, 'deploy with a host offline');
    assert.match(result.stderr, /deployment #\d+ failed: dev-down: did not finish within 3s/);
    assert.doesNotMatch(result.stderr, /dev-up/, 'only the offline host is blamed');
    assert.match(result.stdout, /dev-up: ok/);
    assert.match(result.stdout, /dev-down: FAILED did not finish within 3s/);
    await assertHostRuns(up, await showRelease(fleet, ids[0] ?? ''));
  });

  it('history shows the deployment failed, with each host step', async () => {
    const [last] = JSON.parse(await fleet.ok(['history', 'development', '--json'])) as DeploymentJson[];
    assert.equal(last?.state, 'failed');
    assert.equal(last.releaseId, ids[0]);
    assert.match(last.error ?? '', /^dev-down: did not finish within 3s/);
    assert.deepEqual(
      last.hosts.map((host) => [host.host, host.state]).sort(),
      [
        ['dev-down', 'failed'],
        ['dev-up', 'succeeded'],
      ],
    );
    const human = await fleet.cli(['history', 'development']);
    assertExit(human, 0, 'history');
    assert.match(human.stdout, /failed: dev-down: did not finish within 3s/);
    assert.match(human.stdout, /with a host down/);

    const status = JSON.parse(await fleet.ok(['status', 'development', '--json'])) as { environments: { current: unknown; lastDeployment: { state: string } | null }[] };
    assert.equal(status.environments[0]?.current, null, 'a failed deployment does not become current');
    assert.equal(status.environments[0]?.lastDeployment?.state, 'failed');
    const audit = JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as { action: string; details: { failedHosts?: string[] } }[];
    const failed = audit.filter((event) => event.action === 'deployment.failed');
    assert.equal(failed.length, 1);
    assert.deepEqual(failed[0]?.details.failedHosts, ['dev-down']);
  });

  it('deploy --json also exits 4 and prints the failed deployment', async () => {
    const result = await fleet.cli(['deploy', ids[1] ?? '', '--to', 'development', '--json']);
    assertExit(result, 4, 'deploy --json with a host offline');
    const view = JSON.parse(result.stdout) as DeploymentJson;
    assert.equal(view.state, 'failed');
    assert.equal(view.hosts.find((host) => host.host === 'dev-down')?.state, 'failed');
    assert.equal(view.hosts.find((host) => host.host === 'dev-up')?.state, 'succeeded');
  });

  it('once the host is back, the next deployment reaches every host', async () => {
    await down.restart();
    const result = await fleet.cli(['deploy', ids[1] ?? '', '--to', 'development']);
    assertExit(result, 0, 'deploy with every host online');
    const release = await showRelease(fleet, ids[1] ?? '');
    await assertHostRuns(up, release);
    await assertHostRuns(down, release);
  });

  it('after a failed deployment, rollback returns the hosts that moved to the current release', async () => {
    const current = await showRelease(fleet, ids[1] ?? '');
    const inode = await releaseInode(up, current.id);
    await down.kill('SIGKILL');
    assertExit(await fleet.cli(['deploy', ids[0] ?? '', '--to', 'development']), 4, 'deploy with a host offline');
    await assertHostRuns(up, await showRelease(fleet, ids[0] ?? ''));
    await down.restart();

    const result = await fleet.cli(['rollback', 'development', '--reason', 'undo the half deployment']);
    assertExit(result, 0, 'rollback after a failed deployment');
    assert.match(result.stdout, /development runs 2\.0\.0/);
    await assertHostRuns(up, current);
    await assertHostRuns(down, current);
    assert.equal(await releaseInode(up, current.id), inode, 'dev-up: 2.0.0 was reused, not staged again');
  });
});
