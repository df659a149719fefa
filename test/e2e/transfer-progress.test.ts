/**
 * `host_timeout` counts silence, not size: over a slow link (a proxy that
 * delivers 4 MB/s) a 24 MiB release takes longer to stage than the
 * environment's 4 s host_timeout, yet deploys, because the agent reports its
 * transfer every second and each report gives the step a full host_timeout
 * from then; `deploy --json` shows the transfer with its rate. A host that
 * goes silent mid-transfer (its agent SIGSTOPped) still times out.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DeploymentView, HistoryResponse } from '../../src/api/schemas.js';
import { startFleet, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { startThrottleProxy, type ThrottleProxy } from '../helpers/throttle-proxy.js';
import { until } from '../helpers/until.js';
import { assertExit, assertHostRuns, DEPLOY_TO, releaseIdFrom, showRelease } from './host-tree.js';

const HOST_TIMEOUT_MS = 4000;
/** What the proxy delivers per second: 24 MiB take at least 6 s, longer than host_timeout. */
const LINK_BYTES_PER_SECOND = 4_000_000;
const RELEASE_MIB = 24;

const CONFIG = `app: app
deploy_to: ${DEPLOY_TO}
keep_releases: 5
environments:
  development:
    host_timeout: ${HOST_TIMEOUT_MS / 1000}s
`;

describe('host_timeout counts silence, not size', () => {
  let fleet: Fleet;
  let proxy: ThrottleProxy;
  let host: AgentHandle;
  let builds = 0;

  /** A release of RELEASE_MIB files of 1 MiB of random bytes (nothing the host has). */
  const bigRelease = async (): Promise<string> => {
    const version = `1.0.${builds++}`;
    const dir = await writeApp(join(fleet.dir, `build-${version}`), version);
    await mkdir(join(dir, 'data'), { recursive: true });
    for (let index = 0; index < RELEASE_MIB; index++) await writeFile(join(dir, 'data', `part-${index}.bin`), randomBytes(1 << 20));
    const created = await fleet.cli(['release', 'create', dir, '--version', version]);
    assertExit(created, 0, 'release create');
    return releaseIdFrom(created.stdout);
  };

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(CONFIG);
    proxy = await startThrottleProxy(fleet.url, LINK_BYTES_PER_SECOND);
    host = await fleet.addAgent('dev-1', 'development', { server: proxy.url });
  });

  after(async () => {
    if (host?.process.signalCode === null) host.process.kill('SIGCONT');
    await proxy?.close();
    await fleet?.stop();
  });

  it('a release that takes longer to stage than host_timeout deploys, its transfer shown with its rate', async () => {
    const id = await bigRelease();
    const deploy = await fleet.cli(['deploy', id, '--to', 'development', '--json']);
    assertExit(deploy, 0, 'deploy of a release slower to stage than host_timeout');
    const events = deploy.stdout
      .split('\n')
      .filter((text) => text.trim() !== '')
      .map((text) => JSON.parse(text) as { event: string; host?: string; bytes?: number; totalBytes?: number; files?: number; totalFiles?: number; bytesPerSecond?: number; deployment?: DeploymentView });
    const progress = events.filter((event) => event.event === 'progress' && event.host === 'dev-1');
    assert.ok(progress.length >= 2, `several progress events (got ${progress.length})`);
    for (const event of progress) {
      assert.ok((event.totalBytes ?? 0) >= RELEASE_MIB << 20, 'the total is the bytes the host lacked');
      assert.ok((event.bytes ?? 0) <= (event.totalBytes ?? 0));
      assert.ok((event.bytesPerSecond ?? 0) > 0, 'with a rate');
    }
    assert.ok((progress.at(-1)?.bytes ?? 0) > (progress[0]?.bytes ?? 0), 'the transfer moves on between events');
    // The premise: staging took longer than host_timeout (the link's rate guarantees it), and the step did not time out.
    const finished = events.find((event) => event.event === 'finished')?.deployment;
    assert.equal(finished?.state, 'succeeded');
    assert.ok((finished?.durationMs ?? 0) > HOST_TIMEOUT_MS, `the deployment took ${finished?.durationMs} ms, more than host_timeout`);
    await assertHostRuns(host, await showRelease(fleet, id));
  });

  it('a host that goes silent while staging (agent SIGSTOPped) still times out', async () => {
    const before = await readlink(host.path(`${DEPLOY_TO}/current`));
    const id = await bigRelease();
    const running = fleet.cli(['deploy', id, '--to', 'development']);
    // Stop the agent once the server has heard of its transfer.
    await until('the host reports transfer progress', async () => {
      const history = (await fleet.http('GET', '/api/v1/history?env=development')).json as HistoryResponse;
      const latest = history.deployments.find((deployment) => deployment.releaseId === id);
      return latest?.hosts.find((step) => step.host === 'dev-1' && step.state === 'staging' && (step.progress?.bytes ?? 0) > 0);
    });
    host.process.kill('SIGSTOP');
    try {
      const result = await running;
      assertExit(result, 4, 'deploy to a silent host');
      assert.match(result.stderr, /dev-1: did not finish within 4s/);
    } finally {
      host.process.kill('SIGCONT');
    }
    // The host never switched: its own deadline passed while it was stopped.
    assert.equal(await readlink(host.path(`${DEPLOY_TO}/current`)), before);
  });
});
