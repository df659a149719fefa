/** One task end to end on the filesystem: the reports it sends, redelivery, rollback and failure. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import type { AgentReport, AgentTask } from '../../src/api/schemas.js';
import { BlobCache } from '../../src/content/blob-cache.js';
import { removeTree } from '../../src/content/remove-tree.js';
import { releaseIdOf, type Manifest } from '../../src/core/manifest.js';
import type { ReleaseSource, UntrustedManifest } from '../../src/agent/release/release-stager.js';
import { runTask, taskDeadline, type TaskContext } from '../../src/agent/release/task-runner.js';
import { createServer, type AddressInfo } from 'node:net';

const logger = pino({ level: 'silent' });

function sha(content: string): string {
  return createHash('sha256').update(content).digest('hex');
}

function releaseOf(version: string): { manifest: Manifest; id: string; content: string } {
  const content = `app ${version}\n`;
  const manifest: Manifest = {
    app: 'shop',
    version,
    entries: [{ path: 'app.txt', type: 'file', mode: 0o644, size: Buffer.byteLength(content), sha256: sha(content) }],
  };
  return { manifest, id: releaseIdOf(manifest), content };
}

const v1 = releaseOf('1.0.0');
const v2 = releaseOf('2.0.0');

class MemorySource implements ReleaseSource {
  manifestRequests = 0;
  async fetchManifest(releaseId: string): Promise<UntrustedManifest> {
    this.manifestRequests++;
    const release = [v1, v2].find((candidate) => candidate.id === releaseId);
    if (!release) throw new Error(`no release ${releaseId}`);
    return release.manifest;
  }
  async fetchBlob(hash: string): Promise<AsyncIterable<Uint8Array>> {
    const release = [v1, v2].find((candidate) => sha(candidate.content) === hash);
    if (!release) throw new Error(`no blob ${hash}`);
    return (async function* () {
      yield Buffer.from(release.content);
    })();
  }
}

function task(deploymentId: number, releaseId: string, overrides: Partial<AgentTask> = {}): AgentTask {
  return {
    deploymentId,
    kind: 'deploy',
    env: 'test',
    releaseId,
    version: 'x',
    deployTo: '/srv/shop',
    keepReleases: 5,
    vars: { PORT: '8080' },
    secrets: {},
    health: { checks: [], interval: 1000, healthy_after: 1, timeout: 60_000, watch_interval: 30_000 },
    hooks: { timeout: 60_000 },
    ...overrides,
  };
}

describe('task runner', () => {
  let root: string;
  let reports: AgentReport[];
  let source: MemorySource;
  let context: TaskContext;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'lockstep-agent-task-'));
    reports = [];
    source = new MemorySource();
    const cache = new BlobCache(join(root, 'var/lib/lockstep-agent/blobs'));
    await cache.open();
    context = {
      host: 'web-1',
      root,
      cache,
      source,
      report: async (report) => {
        reports.push(report);
      },
      logger,
      signal: new AbortController().signal,
    };
  });
  afterEach(async () => {
    await removeTree(root);
  });

  const current = (): Promise<string> => readFile(join(root, 'srv/shop/current/app.txt'), 'utf8');

  it('reports staging then succeeded, and the host runs the release', async () => {
    const outcome = await runTask(task(1, v1.id), context);
    assert.equal(outcome.kind, 'succeeded');
    assert.deepEqual(reports, [
      { host: 'web-1', deploymentId: 1, state: 'staging', taskKind: 'deploy', currentReleaseId: null },
      { host: 'web-1', deploymentId: 1, state: 'succeeded', taskKind: 'deploy', currentReleaseId: v1.id },
    ]);
    assert.equal(await current(), v1.content);
    assert.equal(await readFile(join(root, 'srv/shop/shared/lockstep.env'), 'utf8'), 'PORT=8080\n');
  });

  it('drops a task whose deadline passes in before_activate: the hook is killed, current stays, the drop is reported', async () => {
    await runTask(task(1, v1.id), context);
    const marker = join(root, 'hook-finished');
    const deploy = task(2, v2.id, { remainingMs: 300, deadlineAt: new Date(Date.now() + 300).toISOString(), hooks: { timeout: 60_000, before_activate: `sleep 30; touch ${marker}` } });
    const outcome = await runTask(deploy, { ...context, deadline: taskDeadline(deploy) });
    assert.equal(outcome.kind, 'cancelled');
    assert.equal(await current(), v1.content, 'current was not switched');
    const last = reports.at(-1);
    assert.equal(last?.state, 'cancelled');
    assert.equal(last.currentReleaseId, v1.id);
    assert.match(last.error ?? '', /the deadline passed during the before_activate hook; current was not switched/);
    assert.ok(last.logs?.some((log) => log.source === 'agent' && /task dropped/.test(log.text)));
  });

  it('drops a task whose deadline passed before it started, without reporting staging', async () => {
    await runTask(task(1, v1.id), context);
    const before = reports.length;
    const deploy = task(2, v2.id, { remainingMs: 0 });
    const deadline = taskDeadline(deploy);
    await new Promise((done) => setTimeout(done, 5));
    const outcome = await runTask(deploy, { ...context, deadline });
    assert.equal(outcome.kind, 'cancelled');
    assert.equal(await current(), v1.content);
    assert.deepEqual(reports.slice(before).map((report) => [report.state, report.currentReleaseId]), [['cancelled', v1.id]]);
  });

  it('finishes a redelivered task the same way, and rolls back without fetching anything', async () => {
    await runTask(task(1, v1.id), context);
    await runTask(task(2, v2.id), context);
    const before = reports.length;
    await runTask(task(2, v2.id), context);
    assert.equal(await current(), v2.content);
    // The release is on disk: no staging to report, only the outcome.
    assert.deepEqual(reports.slice(before).map((report) => [report.deploymentId, report.state, report.currentReleaseId]), [[2, 'succeeded', v2.id]]);

    const requestsBefore = source.manifestRequests;
    const reportsBefore = reports.length;
    const rollback = await runTask(task(3, v1.id, { kind: 'rollback' }), context);
    assert.equal(rollback.kind, 'succeeded');
    assert.equal(source.manifestRequests, requestsBefore);
    assert.equal(await current(), v1.content);
    assert.deepEqual(reports.slice(reportsBefore).map((report) => [report.deploymentId, report.state, report.currentReleaseId]), [[3, 'succeeded', v1.id]]);
  });

  it('prunes to keepReleases after activation but keeps the previous release', async () => {
    await runTask(task(1, v1.id), context);
    await runTask(task(2, v2.id, { keepReleases: 1 }), context);
    assert.deepEqual((await readdir(join(root, 'srv/shop/releases'))).sort(), [v1.id, v2.id].sort());
  });

  it('checks the release against its manifest while the health checks run', async () => {
    const server = createServer((socket) => socket.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    let connected: () => void = () => undefined;
    const healthChecked = new Promise<void>((resolve) => (connected = resolve));
    server.on('connection', () => connected());
    const port = (server.address() as AddressInfo).port;
    const health = { checks: [{ tcp: `127.0.0.1:${port}`, timeout: 2000 }], interval: 100, healthy_after: 1, timeout: 60_000, watch_interval: 30_000 };
    let checkedFirst = false;
    try {
      const outcome = await runTask(task(1, v1.id, { health }), {
        ...context,
        // Finishes only once a health check reached the application (or after 10 s): the two run side by side.
        verify: async () => {
          checkedFirst = await Promise.race([healthChecked.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000))]);
          return null;
        },
      });
      assert.equal(outcome.kind, 'succeeded');
      assert.ok(checkedFirst, 'a health check ran while the release was being checked');
    } finally {
      server.close();
    }
  });

  it('a release that differs from its manifest fails the step at once, without waiting for the health checks', async () => {
    // A check that can never pass (nothing listens on port 1) with a long timeout: only the mismatch ends the wait.
    const health = { checks: [{ tcp: '127.0.0.1:1', timeout: 200 }], interval: 200, healthy_after: 1, timeout: 600_000, watch_interval: 30_000 };
    const outcome = await runTask(task(1, v1.id, { health }), {
      ...context,
      verify: async () => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        return 'host web-1 does not run what was deployed: 1 file differs (e.g. /srv/shop/current/app.txt: content)';
      },
    });
    assert.equal(outcome.kind, 'failed');
    assert.equal(reports.at(-1)?.error, 'host web-1 does not run what was deployed: 1 file differs (e.g. /srv/shop/current/app.txt: content)');
  });

  it('reports a failure in one line with what current still points at', async () => {
    await runTask(task(1, v1.id), context);
    const unknown = 'f'.repeat(64);
    const outcome = await runTask(task(2, unknown), context);
    assert.equal(outcome.kind, 'failed');
    const last = reports.at(-1);
    assert.equal(last?.state, 'failed');
    assert.equal(last?.currentReleaseId, v1.id);
    assert.match(last?.error ?? '', /^no release f+$/);
    assert.equal(await current(), v1.content);
  });

  it('refuses a deploy_to outside the root', async () => {
    const outcome = await runTask(task(1, v1.id, { deployTo: '/srv/../../../etc' }), context);
    assert.equal(outcome.kind, 'failed');
    assert.deepEqual(reports.map((report) => report.state), ['failed']);
  });
});
