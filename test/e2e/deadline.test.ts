/**
 * A host that missed its deadline never stays on the failed release, end to
 * end: a before_activate hook slower than host_timeout makes the agent drop
 * the task (no switch) and acknowledge it; a switch the server learns of only
 * after the deadline (the server hung while the host switched) is undone and
 * audited, and so is one whose report was lost with its agent (the host's
 * heartbeat names the release); a server SIGKILLed at random points of a
 * 3-host rollout and kept down longer than host_timeout leaves every host on
 * one release; and
 * `lockstep status --exit-code` exits 1 while a host runs another release
 * than its environment.
 *
 * DEADLINE_SEED=N replays the crash trials' kill points; DEADLINE_TRIALS=N changes their count.
 */
import assert from 'node:assert/strict';
import { access, readlink, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuditEventView, DeploymentView, StatusResponse } from '../../src/api/schemas.js';
import { startFleet, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { prng } from '../helpers/prng.js';
import { until } from '../helpers/until.js';
import { assertExit, DEPLOY_TO, releaseIdFrom } from './host-tree.js';

const TRIALS = Number(process.env.DEADLINE_TRIALS ?? 5);
const SEED = Number(process.env.DEADLINE_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** host_timeout of the crash environment, in ms (see CONFIG). */
const CRASH_TIMEOUT_MS = 3000;
/** host_timeout of the late environment, in ms: long enough that the host switches in time by its own clock. */
const LATE_TIMEOUT_MS = 8000;

/**
 * slow: a release holding SLOW sleeps in before_activate far past host_timeout.
 * late: before_activate waits for a go file from the test (the moment to hang the server);
 * heartbeats every second, so a hand-edited `current` reaches the server quickly.
 * crash: three hosts rolled out one by one.
 */
const CONFIG = `app: app
deploy_to: ${DEPLOY_TO}
keep_releases: 10
environments:
  slow:
    host_timeout: 2s
    hooks:
      before_activate: "if [ -f SLOW ]; then sleep 6; fi"
  late:
    host_timeout: ${LATE_TIMEOUT_MS / 1000}s
    health: { watch_interval: 1s }
    hooks:
      timeout: 60s
      before_activate: "touch \\"$LOCKSTEP_DEPLOY_TO/started-$LOCKSTEP_DEPLOYMENT\\"; while [ ! -f \\"$LOCKSTEP_DEPLOY_TO/go-$LOCKSTEP_DEPLOYMENT\\" ]; do sleep 0.05; done"
  crash:
    host_timeout: ${CRASH_TIMEOUT_MS / 1000}s
    rollout: { canary: 1, batch: 1 }
`;

type AuditJson = AuditEventView & { details: Record<string, unknown> };

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

describe('a host that missed its deadline never stays switched', () => {
  let fleet: Fleet;
  let slow: AgentHandle;
  let late: AgentHandle;
  const crash: AgentHandle[] = [];
  let releaseCount = 0;

  /** Creates a release; `slow` adds the SLOW marker the slow environment's hook waits on. */
  const release = async (options: { slow?: boolean } = {}): Promise<string> => {
    const version = `1.0.${releaseCount++}`;
    const dir = await writeApp(join(fleet.dir, `build-${version}`), version);
    if (options.slow) await writeFile(join(dir, 'SLOW'), 'yes\n');
    const created = await fleet.cli(['release', 'create', dir, '--version', version]);
    assertExit(created, 0, `release create ${version}`);
    return releaseIdFrom(created.stdout);
  };
  const currentOf = async (agent: AgentHandle): Promise<string | null> => {
    const target = await readlink(agent.path(`${DEPLOY_TO}/current`)).catch(() => null);
    return target === null ? null : target.replace(/^releases\//, '');
  };
  const status = async (env: string): Promise<StatusResponse['environments'][number]> => {
    const parsed = JSON.parse(await fleet.ok(['status', env, '--json'])) as StatusResponse;
    const environment = parsed.environments[0];
    assert.ok(environment, `status ${env}`);
    return environment;
  };
  const audit = async (): Promise<AuditJson[]> => JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as AuditJson[];
  const history = async (env: string): Promise<DeploymentView[]> => JSON.parse(await fleet.ok(['history', env, '--json'])) as DeploymentView[];
  const deployNoWait = async (id: string, env: string): Promise<DeploymentView> => JSON.parse(await fleet.ok(['deploy', id, '--to', env, '--no-wait', '--json'])) as DeploymentView;
  /** Every host of `env` on the environment's release, no deployment moving them, none diverged. */
  const settledOnOneRelease = async (env: string, agents: readonly AgentHandle[]): Promise<string | undefined> => {
    if ((await history(env)).some((deployment) => deployment.state === 'running' || deployment.state === 'rolling_back')) return undefined;
    const environment = await status(env);
    const current = environment.current?.id ?? null;
    const onDisk = await Promise.all(agents.map(currentOf));
    if (onDisk.some((id) => id !== current)) return undefined;
    // The server has heard every host say so.
    if (environment.hosts.some((host) => host.releaseId !== current || host.diverged)) return undefined;
    return current ?? 'none';
  };

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(CONFIG);
    slow = await fleet.addAgent('slow-1', 'slow');
    late = await fleet.addAgent('late-1', 'late');
    for (const name of ['crash-1', 'crash-2', 'crash-3']) crash.push(await fleet.addAgent(name, 'crash'));
  });

  after(async () => {
    fleet?.server.kill('SIGCONT');
    await fleet?.stop();
  });

  it('a before_activate hook slower than host_timeout: the agent drops the task and acknowledges it; the host stays on the old release', { timeout: 120_000 }, async () => {
    const v1 = await release();
    assertExit(await fleet.cli(['deploy', v1, '--to', 'slow']), 0, 'deploy a release without the slow marker');
    const v2 = await release({ slow: true });
    const result = await fleet.cli(['deploy', v2, '--to', 'slow']);
    assertExit(result, 4, 'deploy a release whose hook outlasts host_timeout');
    assert.match(result.stderr, /did not finish within 2s/);
    const deployment = (await history('slow'))[0];
    assert.ok(deployment);
    // The agent's acknowledgement reaching the server: the drop, audited once.
    const dropped = await until('the agent to acknowledge the dropped task', async () =>
      (await audit()).find((event) => event.action === 'deployment.task_dropped' && event.target === 'host:slow-1' && event.details.deployment === deployment.id),
    );
    assert.equal(dropped.details.currentReleaseId, v1, 'the agent reports it is still on the old release');
    assert.match(String(dropped.details.error), /current was not switched/);
    assert.equal(await currentOf(slow), v1, 'current still points at the old release');
    const environment = await status('slow');
    assert.equal(environment.current?.id, v1);
    assert.deepEqual(environment.hosts.map((host) => [host.name, host.releaseId, host.diverged]), [['slow-1', v1, false]]);
    assertExit(await fleet.cli(['status', 'slow', '--exit-code']), 0, 'status --exit-code with no diverged host');
    const step = (await history('slow'))[0]?.hosts[0];
    assert.match(step?.error ?? '', /the agent dropped the task at its deadline/, 'the step says the host dropped it');
  });

  it('a switch the server hears of only after the deadline is undone and audited', { timeout: 120_000 }, async () => {
    const v1 = await release();
    const first = await deployNoWait(v1, 'late');
    await until('the first hook to start', async () => ((await exists(join(late.path(DEPLOY_TO), `started-${first.id}`))) ? true : undefined));
    await writeFile(join(late.path(DEPLOY_TO), `go-${first.id}`), '');
    await until('the first late deployment to succeed', async () => ((await history('late'))[0]?.state === 'succeeded' ? true : undefined));
    const v2 = await release();
    const started = await deployNoWait(v2, 'late');
    const deadline = Date.parse(started.createdAt) + LATE_TIMEOUT_MS;
    await until('the before_activate hook to start', async () => ((await exists(join(late.path(DEPLOY_TO), `started-${started.id}`))) ? true : undefined));
    // The server hangs: the host switches in time by its own clock, and its report waits in the socket.
    fleet.server.kill('SIGSTOP');
    try {
      await writeFile(join(late.path(DEPLOY_TO), `go-${started.id}`), '');
      await until('the host to switch', async () => ((await currentOf(late)) === v2 ? true : undefined));
      // Past the step's deadline (same machine, same clock), the server wakes up to a report it can no longer take as in time.
      await until('the deadline to pass', async () => (Date.now() > deadline + 500 ? true : undefined), LATE_TIMEOUT_MS + 30_000);
    } finally {
      fleet.server.kill('SIGCONT');
    }
    const event = await until(
      'the late switch to be audited',
      async () => (await audit()).find((entry) => entry.action === 'deployment.late_switch' && entry.target === 'host:late-1' && entry.details.deployment === started.id),
      60_000,
    );
    assert.equal(event.details.release, v2, 'the audit names the release the host switched to late');
    assert.equal(event.details.returnTo, v1, 'and the release it returns to');
    assert.equal(event.details.host, 'late-1');
    const settled = await until('the host to return to the environment\'s release', () => settledOnOneRelease('late', [late]), 60_000);
    assert.equal(settled, v1);
    assert.equal((await history('late')).find((deployment) => deployment.id === started.id)?.state, 'failed');
  });

  it('status --exit-code exits 1 while a host runs another release than its environment, and 0 after', { timeout: 120_000 }, async () => {
    const environment = await status('late');
    const current = environment.current?.id;
    assert.ok(current);
    assertExit(await fleet.cli(['status', 'late', '--exit-code']), 0, 'status --exit-code before');
    // The release that failed in the test before is still on disk: point current at it by hand.
    const other = (await history('late')).find((deployment) => deployment.releaseId !== current && deployment.kind === 'deploy')?.releaseId;
    assert.ok(other);
    const link = late.path(`${DEPLOY_TO}/current`);
    const repoint = async (id: string): Promise<void> => {
      await symlink(`releases/${id}`, `${link}.by-hand`);
      await rename(`${link}.by-hand`, link);
    };
    await repoint(other);
    const diverged = await until('status --exit-code to exit 1', async () => {
      const result = await fleet.cli(['status', 'late', '--exit-code']);
      return result.code === 1 ? result : undefined;
    }, 60_000);
    assert.match(diverged.stdout, /late-1\s+online diverged/, 'status marks the host diverged');
    assert.match(diverged.stderr, /1 host diverged from the environment's release: late-1 \(late\)/);
    const json = await fleet.cli(['status', 'late', '--json', '--exit-code']);
    assertExit(json, 1, 'status --json --exit-code while diverged');
    assert.equal((JSON.parse(json.stdout) as StatusResponse).environments[0]?.hosts[0]?.diverged, true);
    await repoint(current);
    await until('status --exit-code to exit 0 again', async () => ((await fleet.cli(['status', 'late', '--exit-code'])).code === 0 ? true : undefined), 60_000);
  });

  it('a host whose agent died between its switch and its report is returned once its heartbeat names the release', { timeout: 180_000 }, async () => {
    const v1 = (await status('late')).current?.id;
    assert.ok(v1);
    await until('late-1 to be back on its environment\'s release', () => settledOnOneRelease('late', [late]), 60_000);
    const v3 = await release();
    const started = await deployNoWait(v3, 'late');
    const deadline = Date.parse(started.createdAt) + LATE_TIMEOUT_MS;
    await until('the before_activate hook to start', async () => ((await exists(join(late.path(DEPLOY_TO), `started-${started.id}`))) ? true : undefined));
    // The server is gone while the host switches: its report is retried until the agent dies, and is lost.
    await fleet.killServer('SIGKILL');
    await writeFile(join(late.path(DEPLOY_TO), `go-${started.id}`), '');
    await until('the host to switch', async () => ((await currentOf(late)) === v3 ? true : undefined));
    await late.kill('SIGKILL');
    await until('the deadline to pass', async () => (Date.now() > deadline + 500 ? true : undefined), LATE_TIMEOUT_MS + 30_000);
    await fleet.startServer();
    // The server fails the step without knowing the host switched: nothing is reverted.
    const failed = await until('the deployment to fail', async () => {
      const deployment = (await history('late')).find((candidate) => candidate.id === started.id);
      return deployment?.state === 'failed' ? deployment : undefined;
    });
    assert.equal(failed.hosts[0]?.state, 'failed');
    assert.equal(await currentOf(late), v3, 'the host still runs the failed release');
    // The agent comes back; its first heartbeat names the release it runs.
    await late.restart();
    const event = await until(
      'the late switch to be audited',
      async () => (await audit()).find((entry) => entry.action === 'deployment.late_switch' && entry.target === 'host:late-1' && entry.details.deployment === started.id),
      60_000,
    );
    assert.equal(event.details.release, v3);
    assert.equal(event.details.returnTo, v1);
    assert.match(String(event.details.by), /^return #\d+$/);
    assert.equal(await until('the host to return', () => settledOnOneRelease('late', [late]), 60_000), v1);
  });

  it(`a server SIGKILLed at random points of a 3-host rollout and down longer than host_timeout leaves every host on one release (${TRIALS} trials)`, { timeout: 600_000 }, async (t) => {
    t.diagnostic(`seed ${SEED} (replay with DEADLINE_SEED=${SEED})`);
    const random = prng(SEED);
    // A clean rollout first: the starting release, and how long a rollout takes here and now.
    const base = await release();
    const cleanStart = Date.now();
    assertExit(await fleet.cli(['deploy', base, '--to', 'crash']), 0, 'a clean 3-host rollout');
    const rolloutMs = Date.now() - cleanStart;
    t.diagnostic(`a clean rollout took ${rolloutMs} ms`);
    const outcomes: string[] = [];
    for (let trial = 0; trial < TRIALS; trial++) {
      const before = (await status('crash')).current?.id;
      const next = await release();
      const delayMs = Math.round(random() * rolloutMs * 1.2);
      const started = await deployNoWait(next, 'crash');
      await sleep(delayMs);
      await fleet.killServer('SIGKILL');
      const killedAt = Date.now();
      // Down longer than host_timeout: every deadline set before the crash has passed when it is back.
      await until('host_timeout to pass with the server down', async () => (Date.now() > killedAt + CRASH_TIMEOUT_MS + 1000 ? true : undefined), CRASH_TIMEOUT_MS + 30_000);
      await fleet.startServer();
      const settled = await until(`trial ${trial} (kill ${delayMs} ms into deployment #${started.id}): every host on one release`, () => settledOnOneRelease('crash', crash), 120_000);
      const since = (await history('crash')).filter((deployment) => deployment.id >= started.id);
      const ended = since.find((deployment) => deployment.id === started.id);
      // Returns: hosts that switched while the server was down and reported it after their deployment failed.
      const returns = since.filter((deployment) => deployment.kind === 'return').map((deployment) => deployment.hosts.map((host) => host.host).join(','));
      const outcome = `trial ${trial}: killed at ${delayMs} ms, deployment #${started.id} ${ended?.state ?? '?'}, ${returns.length > 0 ? `returned ${returns.join(' ')}, ` : ''}hosts on ${settled === next ? 'the new release' : settled === before ? 'the old release' : settled}`;
      outcomes.push(outcome);
      t.diagnostic(outcome);
      assert.ok(settled === next || settled === before, `${outcome}: neither the old nor the new release`);
      assertExit(await fleet.cli(['status', 'crash', '--exit-code']), 0, `${outcome}: status --exit-code`);
    }
  });
});
