/**
 * Rollouts end to end, with a real HTTP health endpoint per sandbox host: the
 * release's after_activate hook starts a tiny server on the host's APP_PORT
 * whose /healthz fails when the release holds a BAD marker. A good release
 * rolls out canary, then batch by batch, each batch only after the one before
 * is healthy; a bad release fails at the canary, which goes back, while no
 * other host ever runs it, and an alert reaches the webhook; a release that
 * failed or was rejected in test cannot be promoted to production; plan
 * changes nothing; logs show hook and health output; continuous health turns
 * a host whose service died unhealthy and alerts.
 */
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { assertExit, assertHostRuns, DEPLOY_TO, releaseIdFrom, showRelease, type ShownRelease } from './host-tree.js';
import {
  addServedAgent,
  deployStreaming,
  eventually,
  getApp,
  killServer,
  servedEnvironment,
  START_HOOK,
  startWebhookReceiver,
  stopServedFleet,
  versionsServed,
  writeServedApp,
  type DeployEvent,
  type WebhookReceiver,
} from './rollout-app.js';
import type { DeploymentView } from '../../src/api/schemas.js';

/** What `--json` prints for a deployment: the API's view of it. */
type DeploymentJson = DeploymentView;

interface PlanJson {
  env: string;
  verdict: { kind: string };
  batches: string[][];
  hosts: { host: string; currentReleaseId: string | null; added: { count: number; paths: string[] }; changed: { count: number; paths: string[] }; removed: { count: number; paths: string[] }; fetchBytes: number; fetchBlobs: number }[];
}

interface StatusJson {
  environments: { name: string; current: { id: string } | null; hosts: { name: string; health: { healthy: boolean; detail: string; at: string } | null }[] }[];
}

const TEST_HOSTS = ['test-1', 'test-2', 'test-3', 'test-4'];
/** canary: 1, batch: 2 over four hosts, in host-name order. */
const BATCHES = [['test-1'], ['test-2', 'test-3'], ['test-4']];

function parseEvents(stdout: string): DeployEvent[] {
  return stdout
    .trim()
    .split('\n')
    .map((text) => JSON.parse(text) as DeployEvent);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

describe('rollouts with a real health endpoint per host', () => {
  let fleet: Fleet;
  let webhook: WebhookReceiver;
  const test: { agent: AgentHandle; port: number }[] = [];
  let production: AgentHandle;
  /** Release ids by version. */
  const ids: Record<string, string> = {};
  const builds: Record<string, string> = {};
  let good: ShownRelease;
  let better: ShownRelease;
  let goodDeployment = 0;

  /** lockstep.yaml; `hooks` replaces the test environment's hooks. */
  const config = (hooks?: string) => `app: app
deploy_to: ${DEPLOY_TO}
environments:
  development:
    host_timeout: 20s
  test:
${servedEnvironment({ promoteFrom: 'development', webhook: webhook.url, hostTimeout: '8s', ...(hooks ? { hooks } : {}) })}
  production:
    promote_from: test
    host_timeout: 20s
`;

  before(async () => {
    webhook = await startWebhookReceiver();
    fleet = await startFleet();
    await fleet.applyConfig(config());
    // Independent set-up steps run side by side.
    const [, testHosts, prod] = await Promise.all([
      fleet.addAgent('dev-1', 'development'),
      Promise.all(TEST_HOSTS.map((name) => addServedAgent(fleet, name, 'test'))),
      fleet.addAgent('prod-1', 'production'),
    ]);
    test.push(...testHosts);
    production = prod;
    const versions: [string, { bad?: boolean; extra?: string }][] = [
      ['1.0.0', { extra: 'old.html' }],
      ['2.0.0', { extra: 'new.html' }],
      ['3.0.0-bad', { bad: true }],
      ['4.0.0', {}],
      ['5.0.0', {}],
    ];
    await Promise.all(
      versions.map(async ([version, options]) => {
        const dir = await writeServedApp(join(fleet.dir, `build-${version}`), version, options);
        builds[version] = dir;
        const created = await fleet.cli(['release', 'create', dir, '--version', version]);
        assertExit(created, 0, `release create ${version}`);
        ids[version] = releaseIdFrom(created.stdout);
      }),
    );
    good = await showRelease(fleet, ids['1.0.0'] ?? '');
    better = await showRelease(fleet, ids['2.0.0'] ?? '');
    for (const [version] of versions) assertExit(await fleet.cli(['deploy', ids[version] ?? '', '--to', 'development']), 0, `deploy ${version} to development`);
    assertExit(await fleet.cli(['deploy', ids['1.0.0'] ?? '', '--to', 'test']), 0, 'deploy 1.0.0 to test');
  });

  after(async () => {
    await stopServedFleet(fleet);
    await webhook?.close();
  });

  it('the first release serves on every test host, started by its after_activate hook', async () => {
    for (const { agent, port } of test) {
      await assertHostRuns(agent, good);
      assert.deepEqual(await getApp(port, '/healthz'), { status: 200, body: 'ok' }, `${agent.name} is healthy`);
      assert.deepEqual(await getApp(port, '/'), { status: 200, body: '1.0.0' }, `${agent.name} serves 1.0.0`);
    }
  });

  it('plan --json lists the batches in order and per host the changes and bytes to fetch, and changes nothing', async () => {
    const historyBefore = JSON.parse(await fleet.ok(['history', '--json'])) as DeploymentJson[];
    const result = await fleet.cli(['plan', ids['2.0.0'] ?? '', '--to', 'test', '--json']);
    assertExit(result, 0, 'plan 2.0.0 to test');
    const plan = JSON.parse(result.stdout) as PlanJson;
    assert.equal(plan.env, 'test');
    assert.equal(plan.verdict.kind, 'allowed');
    assert.deepEqual(plan.batches, BATCHES);

    // 2.0.0 adds public/new.html, drops public/old.html and changes VERSION and the pages (they carry the version).
    const changed = ['VERSION', 'public/page-0.html', 'public/page-1.html', 'public/page-2.html'];
    const fetched = [...changed, 'public/new.html'];
    let fetchBytes = 0;
    for (const path of fetched) fetchBytes += (await readFile(join(builds['2.0.0'] ?? '', path))).length;
    assert.deepEqual(
      plan.hosts.map((host) => host.host),
      TEST_HOSTS,
    );
    for (const host of plan.hosts) {
      assert.equal(host.currentReleaseId, ids['1.0.0'], `${host.host} runs 1.0.0`);
      assert.deepEqual(host.added, { count: 1, paths: ['public/new.html'] }, `${host.host}: added`);
      assert.deepEqual(host.changed, { count: changed.length, paths: changed }, `${host.host}: changed`);
      assert.deepEqual(host.removed, { count: 1, paths: ['public/old.html'] }, `${host.host}: removed`);
      assert.equal(host.fetchBytes, fetchBytes, `${host.host}: fetches only the new content`);
      assert.equal(host.fetchBlobs, fetched.length, `${host.host}: blobs to fetch`);
    }

    const historyAfter = JSON.parse(await fleet.ok(['history', '--json'])) as DeploymentJson[];
    assert.deepEqual(
      historyAfter.map((deployment) => deployment.id),
      historyBefore.map((deployment) => deployment.id),
      'plan started no deployment',
    );
    for (const { agent } of test) await assertHostRuns(agent, good);
  });

  it('a good release rolls out canary first, then batch by batch, each batch only after the one before is healthy', async () => {
    const result = await fleet.cli(['deploy', ids['2.0.0'] ?? '', '--to', 'test', '--json', '--reason', 'batches']);
    assertExit(result, 0, 'deploy 2.0.0 to test');
    const events = parseEvents(result.stdout);
    const finished = events.at(-1);
    assert.equal(finished?.event, 'finished');
    const deployment = finished.deployment as DeploymentJson;
    assert.equal(deployment.state, 'succeeded');
    goodDeployment = deployment.id;
    assert.deepEqual(
      deployment.hosts.map((host) => [host.host, host.batch, host.state]),
      BATCHES.flatMap((hosts, batch) => hosts.map((host) => [host, batch, 'succeeded'])),
    );

    // In the order the CLI saw them: every host of batch N succeeded before any host of batch N+1 started.
    const hostEvents = events.filter((event) => event.event === 'host');
    const started = (event: DeployEvent) => event.state !== 'waiting' && event.state !== 'pending';
    for (let batch = 1; batch < BATCHES.length; batch++) {
      const previous = BATCHES[batch - 1] ?? [];
      const current = BATCHES[batch] ?? [];
      const firstStart = hostEvents.findIndex((event) => current.includes(event.host ?? '') && started(event));
      assert.ok(firstStart >= 0, `batch ${batch} started`);
      for (const host of previous) {
        const succeeded = hostEvents.findIndex((event) => event.host === host && event.state === 'succeeded');
        assert.ok(succeeded >= 0 && succeeded < firstStart, `${host} (batch ${batch - 1}) succeeded before batch ${batch} started:\n${result.stdout}`);
      }
      // The server's own times agree: nothing of batch N+1 (not even its task being handed out) before batch N was healthy.
      const previousHealthyAt = hostEvents.filter((event) => previous.includes(event.host ?? '') && event.state === 'succeeded').map((event) => event.at ?? '').sort().at(-1) ?? '';
      for (const event of hostEvents.filter((candidate) => current.includes(candidate.host ?? '') && candidate.state !== 'waiting')) {
        assert.ok((event.at ?? '') >= previousHealthyAt, `${event.host} was ${event.state} at ${event.at}, before batch ${batch - 1} was healthy at ${previousHealthyAt}`);
      }
    }
    const finishedAt = (batch: number) => deployment.hosts.filter((host) => host.batch === batch).map((host) => host.updatedAt).sort();
    for (let batch = 1; batch < BATCHES.length; batch++) {
      assert.ok((finishedAt(batch)[0] ?? '') >= (finishedAt(batch - 1).at(-1) ?? ''), `batch ${batch} finished after batch ${batch - 1}`);
    }

    for (const { agent, port } of test) {
      await assertHostRuns(agent, better);
      assert.deepEqual(await getApp(port, '/'), { status: 200, body: '2.0.0' }, `${agent.name} serves 2.0.0`);
      assert.deepEqual(await versionsServed(agent), ['1.0.0', '2.0.0'], `${agent.name}: the new release's server took over`);
    }
  });

  it('logs show the hooks output and the health checks of every host, and --host narrows to one', async () => {
    const result = await fleet.cli(['logs', String(goodDeployment)]);
    assertExit(result, 0, 'logs');
    for (const host of TEST_HOSTS) {
      assert.match(result.stdout, new RegExp(`${host} hook:after_activate started 2\\.0\\.0 on ${host}\\n`), `${host}: the hook's echo`);
      assert.match(result.stdout, new RegExp(`${host} hook:after_activate after_activate done\\n`));
      assert.match(result.stdout, new RegExp(`${host} health pass: 1 check passed\\n`), `${host}: health lines`);
    }
    const one = await fleet.cli(['logs', `#${goodDeployment}`, '--host', 'test-3']);
    assertExit(one, 0, 'logs --host');
    assert.match(one.stdout, /test-3 hook:after_activate started 2\.0\.0 on test-3/);
    const others = one.stdout.split('\n').filter((line) => line && !/ test-3 /.test(line));
    assert.deepEqual(others, [], 'only test-3 lines');
  });

  it('a bad release fails at the canary: exit 4, the canary goes back, no other host ever runs it, an alert is delivered', async () => {
    const bad = ids['3.0.0-bad'] ?? '';
    const result = await fleet.cli(['deploy', bad, '--to', 'test', '--reason', 'bad one']);
    assertExit(result, 4, 'deploy the bad release to test');
    assert.match(result.stderr, /deployment #\d+ failed: test-1: health check failed: .*status 500/);
    assert.match(result.stdout, /^ {2}canary: test-1$/m);
    // The step may go from failed to reverting within one change the CLI sees.
    assert.match(result.stdout, /^ {2}test-1: (failed|reverting) health check failed: not healthy within 3000 ms .*status 500/m);
    assert.match(result.stdout, /^ {2}test-1: reverted( |$)/m);
    assert.doesNotMatch(result.stdout, /batch 1\/2/, 'the next batch never opened');

    const [last] = JSON.parse(await fleet.ok(['history', 'test', '--json'])) as DeploymentJson[];
    assert.equal(last?.releaseId, bad);
    assert.equal(last.state, 'failed');
    assert.deepEqual(
      last.hosts.map((host) => [host.host, host.state]),
      [
        ['test-1', 'reverted'],
        ['test-2', 'skipped'],
        ['test-3', 'skipped'],
        ['test-4', 'skipped'],
      ],
    );
    assert.match(last.hosts[0]?.error ?? '', /^health check failed: .*status 500/, 'the returned canary keeps why it failed');

    const [canary, ...rest] = test;
    assert.ok(canary);
    await assertHostRuns(canary.agent, better);
    assert.deepEqual(await versionsServed(canary.agent), ['1.0.0', '2.0.0', '3.0.0-bad', '2.0.0'], 'the canary ran the bad release, then 2.0.0 again');
    assert.deepEqual(await getApp(canary.port, '/healthz'), { status: 200, body: 'ok' });
    assert.deepEqual(await getApp(canary.port, '/'), { status: 200, body: '2.0.0' });
    for (const { agent, port } of rest) {
      assert.deepEqual(await versionsServed(agent), ['1.0.0', '2.0.0'], `${agent.name} never ran the bad release`);
      assert.equal(await exists(agent.path(`${DEPLOY_TO}/releases/${bad}`)), false, `${agent.name} never even staged it`);
      await assertHostRuns(agent, better);
      assert.deepEqual(await getApp(port, '/'), { status: 200, body: '2.0.0' });
    }

    const canaryLogs = await fleet.cli(['logs', String(last.id), '--host', 'test-1']);
    assertExit(canaryLogs, 0, 'logs of the failed deployment');
    assert.match(canaryLogs.stdout, /test-1 health fail: http http:\/\/127\.0\.0\.1:\S+\/healthz: status 500/);
    assert.match(canaryLogs.stdout, /test-1 hook:after_rollback started 2\.0\.0 on test-1/);

    const alert = await webhook.waitFor('deployment.failed', (candidate) => candidate.kind === 'deployment.failed' && candidate.details.release === bad);
    assert.equal(alert.source, 'lockstep');
    assert.equal(alert.env, 'test');
    assert.deepEqual(alert.details.failedHosts, ['test-1']);
    assert.equal(alert.details.version, '3.0.0-bad');
    assert.match(alert.summary, /test-1: health check failed/);
  });

  it('the release that failed in test is refused when promoted to production (exit 3): it was rolled back there', async () => {
    const bad = ids['3.0.0-bad'] ?? '';
    const [last] = JSON.parse(await fleet.ok(['history', 'test', '--json'])) as DeploymentJson[];
    const result = await fleet.cli(['deploy', bad, '--to', 'production']);
    assertExit(result, 3, 'promote the failed release');
    assert.match(result.stderr, /promotion-gate: release 3\.0\.0-bad \([0-9a-f]+\) failed in test and was rolled back at \S+ \(deployment #\d+ failed\)/);
    assert.match(result.stderr, new RegExp(`deployment #${last?.id} failed`));
    assert.doesNotMatch(result.stderr, /run: lockstep deploy/, 'deploying the failed release again is not suggested as the fix');
    const history = JSON.parse(await fleet.ok(['history', 'production', '--json'])) as DeploymentJson[];
    assert.deepEqual(history, [], 'nothing was deployed to production');
  });

  it('a release rejected in test by hand cannot be promoted (exit 3) until the rejection is lifted', async () => {
    const release = ids['2.0.0'] ?? '';
    assertExit(await fleet.cli(['release', 'reject', release, '--env', 'test', '--reason', 'x: checkout is slow']), 0, 'reject');
    const refused = await fleet.cli(['deploy', release, '--to', 'production']);
    assertExit(refused, 3, 'promote a rejected release');
    assert.match(refused.stderr, /release 2\.0\.0 \([0-9a-f]+\) was rejected in test \(rejected by [^:]+: x: checkout is slow\)/);
    assert.match(refused.stderr, /lockstep release unreject [0-9a-f]+ --env test/);
    assertExit(await fleet.cli(['plan', release, '--to', 'production']), 3, 'plan agrees');

    assertExit(await fleet.cli(['release', 'unreject', release, '--env', 'test', '--reason', 'measured: fine']), 0, 'unreject');
    assertExit(await fleet.cli(['deploy', release, '--to', 'production']), 0, 'promote once the rejection is lifted');
    await assertHostRuns(production, better);
  });

  it('continuous health: a host whose service dies turns unhealthy in status and a host.unhealthy alert arrives', async () => {
    const status = async () => JSON.parse(await fleet.ok(['status', 'test', '--json'])) as StatusJson;
    const hostsOf = (result: StatusJson) => result.environments.find((env) => env.name === 'test')?.hosts ?? [];
    // First every host reports healthy between deployments.
    await eventually('every test host reports healthy', async () => {
      const hosts = hostsOf(await status());
      return hosts.length === TEST_HOSTS.length && hosts.every((host) => host.health?.healthy === true) ? true : undefined;
    });

    const victim = test[2];
    assert.ok(victim);
    assert.equal(victim.agent.name, 'test-3');
    const alertsBefore = webhook.alerts.filter((alert) => alert.kind === 'host.unhealthy' && alert.details.host === 'test-3').length;
    assert.ok(await killServer(victim.agent), 'the service of test-3 was running');
    assert.equal((await getApp(victim.port, '/healthz')).status, 0, 'nothing answers on test-3 any more');

    // watch_interval is 1s: the generous timeout only guards against a hang.
    const health = await eventually('test-3 reported unhealthy', async () => {
      const host = hostsOf(await status()).find((candidate) => candidate.name === 'test-3');
      return host?.health?.healthy === false ? host.health : undefined;
    });
    assert.match(health.detail, /\/healthz: ECONNREFUSED/);
    for (const host of hostsOf(await status()).filter((candidate) => candidate.name !== 'test-3')) assert.equal(host.health?.healthy, true, `${host.name} stays healthy`);

    const alert = await webhook.waitFor('host.unhealthy for test-3', (candidate) => candidate.kind === 'host.unhealthy' && candidate.details.host === 'test-3');
    assert.equal(webhook.alerts.filter((candidate) => candidate.kind === 'host.unhealthy' && candidate.details.host === 'test-3').length, alertsBefore + 1);
    assert.equal(alert.env, 'test');
    assert.equal(alert.details.release, ids['2.0.0']);
    assert.match(alert.summary, /host test-3 in test is unhealthy: .*ECONNREFUSED/);
  });
  it('an after_activate hook that hangs is killed at hooks.timeout: the canary fails and goes back, exit 4', async () => {
    await fleet.applyConfig(
      config(`      after_activate: 'echo "hanging on $LOCKSTEP_HOST"; echo $$ > "$LOCKSTEP_DEPLOY_TO/shared/hang.pid"; exec sleep 30'
      after_rollback: '${START_HOOK}'
      timeout: 3s`),
    );
    try {
      const result = await fleet.cli(['deploy', ids['4.0.0'] ?? '', '--to', 'test']);
      assertExit(result, 4, 'deploy with a hanging hook');
      assert.match(result.stderr, /deployment #\d+ failed: test-1: after_activate hook timed out after 3000 ms/);
      assert.match(result.stdout, /^ {2}test-1: (failed|reverting) after_activate hook timed out after 3000 ms$/m);
      assert.match(result.stdout, /^ {2}test-1: reverted( |$)/m);

      const [last] = JSON.parse(await fleet.ok(['history', 'test', '--json'])) as DeploymentJson[];
      assert.equal(last?.state, 'failed');
      assert.deepEqual(
        last.hosts.map((host) => [host.host, host.state]),
        [
          ['test-1', 'reverted'],
          ['test-2', 'skipped'],
          ['test-3', 'skipped'],
          ['test-4', 'skipped'],
        ],
      );
      const [canary] = test;
      assert.ok(canary);
      await assertHostRuns(canary.agent, better);
      assert.deepEqual(await getApp(canary.port, '/'), { status: 200, body: '2.0.0' }, 'after_rollback started 2.0.0 again');
      assert.ok(!(await versionsServed(canary.agent)).includes('4.0.0'), '4.0.0 never served');

      // The hung command itself is gone, not left running.
      const hungPid = Number(await readFile(canary.agent.path(`${DEPLOY_TO}/shared/hang.pid`), 'utf8'));
      assert.ok(hungPid > 0);
      assert.doesNotMatch(await readFile(`/proc/${hungPid}/cmdline`, 'utf8').catch(() => ''), /sleep/, 'the hung hook was killed');

      const logs = await fleet.cli(['logs', String(last.id), '--host', 'test-1']);
      assertExit(logs, 0, 'logs');
      assert.match(logs.stdout, /test-1 hook:after_activate hanging on test-1/, 'the output of a killed hook is kept');

      const alert = await webhook.waitFor('deployment.failed', (candidate) => candidate.kind === 'deployment.failed' && candidate.details.deployment === last.id);
      assert.deepEqual(alert.details.failedHosts, ['test-1']);
      assert.match(String(alert.details.error), /timed out/);
    } finally {
      await fleet.applyConfig(config());
    }
  });

  it('a host that goes offline mid-rollout fails the deployment with its name (exit 4); the switched hosts go back', async () => {
    const release = ids['5.0.0'] ?? '';
    const offline = test[1];
    assert.ok(offline);
    assert.equal(offline.agent.name, 'test-2', 'test-2 is in the batch after the canary');
    let killed: Promise<void> | undefined;
    const result = await deployStreaming(fleet, [release, '--to', 'test'], (event) => {
      // While the canary works, the agent of a host in the next batch dies.
      if (killed === undefined && event.event === 'host' && event.host === 'test-1' && (event.state === 'staging' || event.state === 'activated')) {
        killed = offline.agent.kill('SIGKILL');
      }
    });
    await killed;
    assert.ok(killed, `the canary was seen working:\n${result.stdout}`);
    assertExit(result, 4, 'deploy with a host going offline');
    const finished = result.events.at(-1);
    assert.equal(finished?.event, 'finished');
    const deployment = finished.deployment;
    assert.ok(deployment, 'the finished event holds the deployment');
    assert.equal(deployment.state, 'failed');
    assert.match(deployment.error ?? '', /^test-2: did not finish within 8s/);
    assert.deepEqual(
      deployment.hosts.map((host) => [host.host, host.state]),
      [
        ['test-1', 'reverted'],
        ['test-2', 'failed'],
        ['test-3', 'reverted'],
        ['test-4', 'skipped'],
      ],
    );
    // As the CLI saw it: the canary succeeded, test-2 was handed its task, never started it, and failed.
    const order = result.events.filter((event) => event.event === 'host').map((event) => `${event.host}:${event.state}`);
    assert.ok(order.indexOf('test-1:succeeded') < order.indexOf('test-2:pending'), order.join(' '));
    assert.ok(order.indexOf('test-2:pending') < order.indexOf('test-2:failed'), order.join(' '));
    assert.ok(!order.includes('test-2:staging'), `the dead agent never started: ${order.join(' ')}`);

    for (const name of ['test-1', 'test-3']) {
      const host = test.find((candidate) => candidate.agent.name === name);
      assert.ok(host);
      await assertHostRuns(host.agent, better);
      assert.deepEqual(await getApp(host.port, '/'), { status: 200, body: '2.0.0' }, `${name} serves 2.0.0 again`);
      const served = await versionsServed(host.agent);
      assert.ok(served.includes('5.0.0'), `${name} had switched to 5.0.0`);
      assert.equal(served.at(-1), '2.0.0');
    }
    const last = test[3];
    assert.ok(last);
    assert.equal(await exists(last.agent.path(`${DEPLOY_TO}/releases/${release}`)), false, 'the last batch never started');

    const human = await fleet.cli(['history', 'test']);
    assert.match(human.stdout, /failed: test-2: did not finish within 8s/);
    const alert = await webhook.waitFor('deployment.failed naming test-2', (candidate) => candidate.kind === 'deployment.failed' && candidate.details.deployment === deployment.id);
    assert.deepEqual(alert.details.failedHosts, ['test-2']);
    assert.match(alert.summary, /test-2: did not finish within 8s/);
  });
});
