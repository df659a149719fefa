/**
 * A host that is down when a deployment reaches it: its step fails once
 * host_timeout passes, the rollout stops, the canary that already switched
 * is returned to the release it had, the deployment fails naming the host,
 * and history says so; once the host is back, the next deployment succeeds.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { assertExit, assertHostRuns, releaseIdFrom, releaseInode, showRelease } from './host-tree.js';
import type { DeploymentView } from '../../src/api/schemas.js';

/** What `--json` prints for a deployment: the API's view of it. */
type DeploymentJson = DeploymentView;

describe('a host offline during a deployment', () => {
  let fleet: Fleet;
  let up: AgentHandle;
  let down: AgentHandle;
  const ids: string[] = [];

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig({ hostTimeout: '3s' }));
    // Batches go in host-name order: dev-1-up is the canary, dev-2-down the next batch.
    up = await fleet.addAgent('dev-1-up', 'development');
    down = await fleet.addAgent('dev-2-down', 'development');
    for (const version of ['1.0.0', '2.0.0', '3.0.0']) {
      const dir = await writeApp(join(fleet.dir, `build-${version}`), version);
      const created = await fleet.cli(['release', 'create', dir, '--version', version]);
      assertExit(created, 0, `release create ${version}`);
      ids.push(releaseIdFrom(created.stdout));
    }
    assertExit(await fleet.cli(['deploy', ids[0] ?? '', '--to', 'development']), 0, 'first deployment with every host up');
  });

  after(async () => {
    await fleet?.stop();
  });

  it('deploy exits 4 after host_timeout, naming the offline host, and returns the canary to the release it had', async () => {
    const v1 = await showRelease(fleet, ids[0] ?? '');
    const inode = await releaseInode(up, v1.id);
    await down.kill('SIGKILL');
    const result = await fleet.cli(['deploy', ids[1] ?? '', '--to', 'development', '--reason', 'with a host down']);
    assertExit(result, 4, 'deploy with a host offline');
    assert.match(result.stderr, /deployment #\d+ failed: dev-2-down: did not finish within 3s/);
    assert.match(result.stdout, /dev-1-up: ok/, 'the canary succeeded first');
    assert.match(result.stdout, /dev-2-down: failed did not finish within 3s/);
    assert.match(result.stdout, /dev-1-up: reverted/);
    await assertHostRuns(up, v1);
    assert.equal(await releaseInode(up, v1.id), inode, 'the canary went back to the tree still on disk');
  });

  it('history shows the deployment failed, with each host step; the release is marked rolled back', async () => {
    const [last] = JSON.parse(await fleet.ok(['history', 'development', '--json'])) as DeploymentJson[];
    assert.equal(last?.state, 'failed');
    assert.equal(last.releaseId, ids[1]);
    assert.match(last.error ?? '', /^dev-2-down: did not finish within 3s/);
    assert.deepEqual(
      last.hosts.map((host) => [host.host, host.batch, host.state]),
      [
        ['dev-1-up', 0, 'reverted'],
        ['dev-2-down', 1, 'failed'],
      ],
    );
    const human = await fleet.cli(['history', 'development']);
    assertExit(human, 0, 'history');
    assert.match(human.stdout, /failed: dev-2-down: did not finish within 3s/);
    assert.match(human.stdout, /with a host down/);

    const status = JSON.parse(await fleet.ok(['status', 'development', '--json'])) as { environments: { current: { id: string } | null; lastDeployment: { state: string } | null }[] };
    assert.equal(status.environments[0]?.current?.id, ids[0], 'the failed release never became current');
    assert.equal(status.environments[0]?.lastDeployment?.state, 'failed');
    const audit = JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as { action: string; details: { failedHosts?: string[] } }[];
    const failed = audit.filter((event) => event.action === 'deployment.failed');
    assert.equal(failed.length, 1);
    assert.deepEqual(failed[0]?.details.failedHosts, ['dev-2-down']);
    assert.equal(audit.filter((event) => event.action === 'deployment.rolling_back').length, 1);

    const shown = JSON.parse(await fleet.ok(['release', 'show', ids[1] ?? '', '--json'])) as { environments: { env: string; rolledBackAt: string | null }[] };
    assert.ok(shown.environments.find((env) => env.env === 'development')?.rolledBackAt, 'a failed release is marked rolled back where it failed');
  });

  it('deploy --json prints NDJSON events ending with the failed deployment, and exits 4', async () => {
    const result = await fleet.cli(['deploy', ids[2] ?? '', '--to', 'development', '--json']);
    assertExit(result, 4, 'deploy --json with a host offline');
    const events = result.stdout.trim().split('\n').map((text) => JSON.parse(text) as { event: string; host?: string; state?: string; deployment?: DeploymentJson });
    assert.ok(events.some((event) => event.event === 'host' && event.host === 'dev-1-up' && event.state === 'succeeded'));
    assert.ok(events.some((event) => event.event === 'deployment' && event.state === 'rolling_back'));
    const last = events.at(-1);
    assert.equal(last?.event, 'finished');
    assert.equal(last.deployment?.state, 'failed');
    assert.equal(last.deployment?.hosts.find((host) => host.host === 'dev-2-down')?.state, 'failed');
  });

  it('once the host is back, the next deployment reaches every host', async () => {
    await down.restart();
    const result = await fleet.cli(['deploy', ids[1] ?? '', '--to', 'development']);
    assertExit(result, 0, 'deploy with every host online');
    const release = await showRelease(fleet, ids[1] ?? '');
    await assertHostRuns(up, release);
    await assertHostRuns(down, release);
  });
});
