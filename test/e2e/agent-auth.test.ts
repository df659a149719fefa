/**
 * What an agent's credential may do: work, reports and content of its own
 * host and environment only, never user routes. Enrollment tokens work once;
 * secrets on disk are readable by their owner only.
 */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { assertExit, releaseIdFrom, showRelease } from './host-tree.js';

interface ErrorJson {
  error: { kind: string; message: string };
}

async function credentialOf(agent: AgentHandle): Promise<string> {
  const file = JSON.parse(await readFile(join(agent.stateDir, 'credential.json'), 'utf8')) as { credential: string; host: string };
  assert.equal(file.host, agent.name);
  return file.credential;
}

describe('agent credentials and enrollment', () => {
  let fleet: Fleet;
  let dev: AgentHandle;
  let tst: AgentHandle;
  let devCredential = '';
  let testCredential = '';
  let releaseId = '';
  let blob = '';

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig());
    dev = await fleet.addAgent('dev-1', 'development');
    tst = await fleet.addAgent('test-1', 'test');
    devCredential = await credentialOf(dev);
    testCredential = await credentialOf(tst);
    const dir = await writeApp(join(fleet.dir, 'build'), 'only in development');
    const created = await fleet.cli(['release', 'create', dir, '--version', '1.0.0']);
    assertExit(created, 0, 'release create');
    releaseId = releaseIdFrom(created.stdout);
    assertExit(await fleet.cli(['deploy', releaseId, '--to', 'development']), 0, 'deploy to development');
    const release = await showRelease(fleet, releaseId);
    const file = release.manifest.entries.find((entry) => entry.type === 'file' && entry.path === 'VERSION');
    assert.ok(file?.type === 'file');
    blob = file.sha256;
  });

  after(async () => {
    await fleet?.stop();
  });

  it('credential.json and admin.token are readable by their owner only (0600)', async () => {
    assert.equal((await stat(join(dev.stateDir, 'credential.json'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(tst.stateDir, 'credential.json'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(fleet.dataDir, 'admin.token'))).mode & 0o777, 0o600);
  });

  it("an agent may ask for its own work but not another host's (403)", async () => {
    const own = await fleet.http('GET', '/api/v1/agent/work?host=dev-1&wait=0', undefined, devCredential);
    assert.equal(own.status, 200, JSON.stringify(own.json));
    const work = own.json as { task: unknown; command: unknown; settingsRevision: unknown };
    assert.deepEqual({ task: work.task, command: work.command }, { task: null, command: null });
    assert.match(String(work.settingsRevision), /^[0-9a-f]{16}$/);
    const other = await fleet.http('GET', '/api/v1/agent/work?host=test-1&wait=0', undefined, devCredential);
    assert.equal(other.status, 403, JSON.stringify(other.json));
    assert.match((other.json as ErrorJson).error.message, /belongs to host dev-1, not test-1/);
  });

  it('an agent may not report or send heartbeats for another host (403), and the record is unchanged', async () => {
    const [deployment] = JSON.parse(await fleet.ok(['history', '--json'])) as { id: number; state: string }[];
    assert.equal(deployment?.state, 'succeeded');
    const report = await fleet.http('POST', '/api/v1/agent/report', { host: 'test-1', deploymentId: deployment.id, state: 'failed', error: 'forged', currentReleaseId: null }, devCredential);
    assert.equal(report.status, 403, JSON.stringify(report.json));
    // A host with no step in the deployment cannot report on it either.
    const noStep = await fleet.http('POST', '/api/v1/agent/report', { host: 'test-1', deploymentId: deployment.id, state: 'failed', error: 'forged', currentReleaseId: null }, testCredential);
    assert.equal(noStep.status, 403, JSON.stringify(noStep.json));
    const heartbeat = await fleet.http('POST', '/api/v1/agent/heartbeat', { host: 'dev-1', currentReleaseId: null }, testCredential);
    assert.equal(heartbeat.status, 403, JSON.stringify(heartbeat.json));

    const [after] = JSON.parse(await fleet.ok(['history', '--json'])) as { id: number; state: string; error: string | null }[];
    assert.equal(after?.state, 'succeeded');
    assert.equal(after?.error, null);
    const hosts = JSON.parse(await fleet.ok(['host', 'list', '--json'])) as { name: string; releaseId: string | null }[];
    assert.equal(hosts.find((host) => host.name === 'dev-1')?.releaseId, releaseId, 'dev-1 still runs the release');
  });

  it('an agent may fetch only releases and blobs deployed to its environment (403 otherwise)', async () => {
    const own = await fleet.http('GET', `/api/v1/agent/releases/${releaseId}?host=dev-1`, undefined, devCredential);
    assert.equal(own.status, 200, JSON.stringify(own.json));
    const ownBlob = await fleet.fetch(`${fleet.url}/api/v1/agent/blobs/${blob}?host=dev-1`, { headers: { authorization: `Bearer ${devCredential}` } });
    assert.equal(ownBlob.status, 200);
    assert.equal(await ownBlob.text(), 'only in development\n');

    const release = await fleet.http('GET', `/api/v1/agent/releases/${releaseId}?host=test-1`, undefined, testCredential);
    assert.equal(release.status, 403, JSON.stringify(release.json));
    assert.match((release.json as ErrorJson).error.message, /was never deployed to test/);
    const blobResponse = await fleet.fetch(`${fleet.url}/api/v1/agent/blobs/${blob}?host=test-1`, { headers: { authorization: `Bearer ${testCredential}` } });
    assert.equal(blobResponse.status, 403);
    assert.doesNotMatch(await blobResponse.text(), /only in development/);
    // Naming the other host does not help.
    const borrowed = await fleet.http('GET', `/api/v1/agent/releases/${releaseId}?host=dev-1`, undefined, testCredential);
    assert.equal(borrowed.status, 403, JSON.stringify(borrowed.json));
  });

  it('an agent credential cannot call user routes (403)', async () => {
    for (const [method, path, body] of [
      ['GET', '/api/v1/status', undefined],
      ['GET', '/api/v1/releases', undefined],
      ['POST', '/api/v1/deployments', { release: releaseId, env: 'development' }],
      ['POST', '/api/v1/hosts', { name: 'sneaky', env: 'production' }],
    ] as const) {
      const result = await fleet.http(method, path, body, devCredential);
      assert.equal(result.status, 403, `${method} ${path}: ${JSON.stringify(result.json)}`);
    }
    const cli = await fleet.cli(['status'], { env: { LOCKSTEP_TOKEN: devCredential } });
    assertExit(cli, 5, 'lockstep status with an agent credential');
    const hosts = JSON.parse(await fleet.ok(['host', 'list', '--json'])) as { name: string }[];
    assert.ok(!hosts.some((host) => host.name === 'sneaky'));
  });

  it('no token, or a wrong one, is 401', async () => {
    for (const path of ['/api/v1/status', '/api/v1/agent/work?host=dev-1&wait=0']) {
      const response = await fleet.fetch(`${fleet.url}${path}`);
      assert.equal(response.status, 401, path);
      const wrong = await fleet.http('GET', path, undefined, 'not-a-token');
      assert.equal(wrong.status, 401, path);
    }
    const cli = await fleet.cli(['status'], { env: { LOCKSTEP_TOKEN: 'not-a-token' } });
    assertExit(cli, 5, 'lockstep status with a wrong token');
  });

  it('an enrollment token works once only', async () => {
    const added = JSON.parse(await fleet.ok(['host', 'add', 'prod-1', '--env', 'production', '--json'])) as { enrollToken: string };
    const first = await fleet.http('POST', '/api/v1/agent/enroll', { token: added.enrollToken });
    assert.equal(first.status, 200, JSON.stringify(first.json));
    const enrolled = first.json as { host: string; env: string; credential: string };
    assert.equal(enrolled.host, 'prod-1');
    assert.equal(enrolled.env, 'production');
    const second = await fleet.http('POST', '/api/v1/agent/enroll', { token: added.enrollToken });
    assert.equal(second.status, 401, JSON.stringify(second.json));
    // Nor is the enrollment token a bearer token for anything.
    const asBearer = await fleet.http('GET', '/api/v1/agent/work?host=prod-1&wait=0', undefined, added.enrollToken);
    assert.equal(asBearer.status, 401, JSON.stringify(asBearer.json));
    // The credential from the first enrollment works for its own host.
    const work = await fleet.http('GET', '/api/v1/agent/work?host=prod-1&wait=0', undefined, enrolled.credential);
    assert.equal(work.status, 200, JSON.stringify(work.json));
  });
});

/** The answer to a bearer-token GET of `path`, as from a client behind a proxy that names `forwardedFor`. */
async function bearerGet(fleet: Fleet, path: string, token: string, forwardedFor?: string): Promise<{ status: number; retryAfter: string | null; json: ErrorJson }> {
  const response = await fleet.fetch(`${fleet.url}${path}`, { headers: { authorization: `Bearer ${token}`, ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }) } });
  return { status: response.status, retryAfter: response.headers.get('retry-after'), json: (await response.json()) as ErrorJson };
}

/** Sends fresh bad tokens until one is answered 429 (each before it 401); returns that answer and how many were 401. */
async function exhaust(fleet: Fleet, forwardedFor?: string): Promise<{ failuresBefore: number; retryAfter: string | null; json: ErrorJson }> {
  for (let count = 0; count < 40; count++) {
    const result = await bearerGet(fleet, '/api/v1/status', `lsu_not-a-real-token-${count}`, forwardedFor);
    if (result.status === 429) return { failuresBefore: count, retryAfter: result.retryAfter, json: result.json };
    assert.equal(result.status, 401, JSON.stringify(result.json));
  }
  assert.fail('40 bad tokens were never rate-limited');
}

describe('failed authentications are limited per attacker, not per address (server with --trust-proxy)', () => {
  let fleet: Fleet;
  let dev: AgentHandle;
  let devCredential = '';

  before(async () => {
    fleet = await startFleet({ serverArgs: ['--trust-proxy'] });
    await fleet.applyConfig(testConfig());
    dev = await fleet.addAgent('dev-1', 'development');
    devCredential = await credentialOf(dev);
  });

  after(async () => {
    await fleet?.stop();
  });

  it('X-Forwarded-For addresses are limited separately: one client behind the proxy does not block the next or the proxy', async () => {
    const limited = await exhaust(fleet, '203.0.113.7');
    assert.equal(limited.failuresBefore, 20);
    assert.equal(limited.json.error.kind, 'rate-limited');
    assert.equal((await bearerGet(fleet, '/api/v1/status', 'lsu_not-a-real-token', '203.0.113.8')).status, 401, 'another client behind the proxy');
    assert.equal((await bearerGet(fleet, '/api/v1/status', 'lsu_not-a-real-token')).status, 401, 'the proxy address itself');
  });

  it('the lock-out repro: after 20 bad tokens from one address the bad ones get 429, while a valid user token, an agent credential and the running agent are served', async () => {
    const limited = await exhaust(fleet);
    // Twenty failures in all from this address are answered 401 (the test above sent one of them).
    assert.ok(limited.failuresBefore > 0 && limited.failuresBefore <= 20, `${limited.failuresBefore} answered 401 first`);
    assert.equal(limited.json.error.kind, 'rate-limited');
    assert.match(limited.json.error.message, /too many failed authentications/);
    assert.match(String(limited.retryAfter), /^[1-9]\d*$/, 'Retry-After in whole seconds');

    assert.equal((await bearerGet(fleet, '/api/v1/status', fleet.token)).status, 200, 'a valid user token from the same address');
    assertExit(await fleet.cli(['status']), 0, 'lockstep status from the same address');
    assert.equal((await bearerGet(fleet, '/api/v1/agent/work?host=dev-1&wait=0', devCredential)).status, 200, 'a valid agent credential from the same address');
    // The running agent (same address) still takes and finishes a deployment.
    const dir = await writeApp(join(fleet.dir, 'build'), 'served despite the attacker');
    const created = await fleet.cli(['release', 'create', dir, '--version', '1.0.0']);
    assertExit(created, 0, 'release create');
    assertExit(await fleet.cli(['deploy', releaseIdFrom(created.stdout), '--to', 'development']), 0, 'deploy to development');
    assert.equal((await bearerGet(fleet, '/api/v1/status', 'lsu_not-a-real-token-again')).status, 429, 'bad tokens still wait');
  });
});
