/**
 * Hooks and exec health checks run in the release's directory with the
 * release's variables, during a deployment and between deployments: an exec
 * check that needs a file present only in the release (`./marker`),
 * LOCKSTEP_ENV, LOCKSTEP_RELEASE_DIR and LOCKSTEP_ROOT passes the deployment;
 * between deployments (also after an agent restart) the same check keeps
 * running there and turns the host unhealthy when a flag file appears under
 * the host's root, healthy again when it goes. The agent's own working directory holds no marker.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { until } from '../helpers/until.js';
import { assertExit, releaseIdFrom } from './host-tree.js';

/** Passes only in the release's directory, with the release's variables, while ROOT/tmp/sick does not exist. */
const CHECK = `test -f ./marker && [ "$LOCKSTEP_ENV" = development ] && [ "$(cd "$LOCKSTEP_RELEASE_DIR" && pwd -P)" = "$(pwd -P)" ] && [ ! -e "$LOCKSTEP_ROOT/tmp/sick" ]`;
/** The hook runs in the release too (it always did) and says what it is told. */
const HOOK = `test -f ./marker && echo "hook root=$LOCKSTEP_ROOT dir=$LOCKSTEP_RELEASE_DIR env=$LOCKSTEP_ENV"`;

type HostHealth = { healthy: boolean; detail: string; at: string } | null;

describe('hooks and exec health checks run in the release', () => {
  let fleet: Fleet;
  let agent: AgentHandle;

  const health = async (): Promise<HostHealth> => {
    const status = JSON.parse(await fleet.ok(['status', 'development', '--json'])) as { environments: { hosts: { name: string; health: HostHealth }[] }[] };
    return status.environments[0]?.hosts.find((host) => host.name === 'dev-1')?.health ?? null;
  };

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(`app: app
deploy_to: /srv/app
environments:
  development:
    host_timeout: 60s
    health:
      interval: 200ms
      timeout: 20s
      watch_interval: 1s
      checks:
        - exec: '${CHECK}'
          timeout: 10s
    hooks:
      after_activate: '${HOOK}'
`);
    agent = await fleet.addAgent('dev-1', 'development');
  });

  after(async () => {
    await fleet?.stop();
  });

  it('a deployment passes an exec check and a hook that need the release directory and its variables', async () => {
    const dir = await writeApp(join(fleet.dir, 'build-1'), '1.0.0');
    await writeFile(join(dir, 'marker'), 'only in the release\n');
    const created = await fleet.cli(['release', 'create', dir, '--version', '1.0.0']);
    assertExit(created, 0, 'release create');
    const releaseId = releaseIdFrom(created.stdout);
    const deployed = await fleet.cli(['deploy', releaseId, '--to', 'development']);
    assertExit(deployed, 0, 'deploy with the exec check and the hook');
    const [last] = JSON.parse(await fleet.ok(['history', 'development', '--json'])) as { id: number }[];
    const logs = await fleet.ok(['logs', String(last?.id)]);
    assert.match(logs, /pass: 1 check passed/);
    assert.ok(logs.includes(`hook root=${agent.root} dir=${agent.path(`/srv/app/releases/${releaseId}`)} env=development`), logs);
  });

  it('between deployments the check keeps running in the current release: unhealthy while ROOT/tmp/sick exists, healthy again after', async () => {
    // Restarted, the agent heartbeats at the remembered watch_interval (1 s) from the start.
    await agent.restart();
    await until('a healthy continuous check', async () => ((await health())?.healthy === true ? true : undefined), 60_000);
    await mkdir(agent.path('/tmp'), { recursive: true });
    await writeFile(agent.path('/tmp/sick'), '');
    const sick = await until('the host to turn unhealthy', async () => {
      const now = await health();
      return now?.healthy === false ? now : undefined;
    }, 60_000);
    assert.match(sick?.detail ?? '', /^exec test -f \.\/marker .*: exited with status 1$/);
    await rm(agent.path('/tmp/sick'));
    await until('the host to be healthy again', async () => ((await health())?.healthy === true ? true : undefined), 60_000);
  });
});
