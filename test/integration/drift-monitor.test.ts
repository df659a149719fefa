/**
 * The agent's drift monitor on real trees: a release staged by the real task
 * runner under a sandbox root, a watched /etc/shop, and an in-process
 * collector in place of the server. Every finding kind, detection through
 * the watcher, revert, accept, the pause during a deployment and the check
 * after one.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, chown, lstat, mkdir, readFile, readlink, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import type { AgentCommand, DriftFinding, DriftReport, HostSettings } from '../../src/api/schemas.js';
import { BlobCache } from '../../src/content/blob-cache.js';
import { releaseIdOf, type Manifest } from '../../src/core/manifest.js';
import { createDriftMonitor } from '../../src/agent/drift/create-drift-monitor.js';
import type { DriftMonitor } from '../../src/agent/drift/drift-monitor.js';
import type { DriftSink } from '../../src/agent/drift/drift-reporter.js';
import { ManifestStore } from '../../src/agent/release/manifest-store.js';
import type { ReleaseSource, UntrustedManifest } from '../../src/agent/release/release-stager.js';
import { runTask, type TaskContext } from '../../src/agent/release/task-runner.js';
import type { AgentTask } from '../../src/api/schemas.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const logger = pino({ level: 'silent' });
/** A command as the test writes it; the helper numbers it. */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
const sha = (content: string | Buffer): string => createHash('sha256').update(content).digest('hex');

interface Release {
  readonly id: string;
  readonly manifest: Manifest;
  readonly blobs: Map<string, string>;
}

function releaseOf(version: string): Release {
  const files = { 'app.txt': `app ${version}\n`, 'conf/app.conf': `port=80\nversion=${version}\n` };
  const blobs = new Map(Object.values(files).map((content) => [sha(content), content]));
  const manifest: Manifest = {
    app: 'shop',
    version,
    entries: [
      { path: 'app.txt', type: 'file', mode: 0o644, size: Buffer.byteLength(files['app.txt']), sha256: sha(files['app.txt']) },
      { path: 'conf', type: 'dir', mode: 0o755 },
      { path: 'conf/app.conf', type: 'file', mode: 0o640, size: Buffer.byteLength(files['conf/app.conf']), sha256: sha(files['conf/app.conf']) },
      { path: 'latest', type: 'symlink', target: 'app.txt' },
    ],
  };
  return { id: releaseIdOf(manifest), manifest, blobs };
}

const v1 = releaseOf('1.0.0');
const v2 = releaseOf('2.0.0');
const v3 = releaseOf('3.0.0');

class MemorySource implements ReleaseSource {
  async fetchManifest(releaseId: string): Promise<UntrustedManifest> {
    const release = [v1, v2, v3].find((candidate) => candidate.id === releaseId);
    if (!release) throw new Error(`no release ${releaseId}`);
    return release.manifest;
  }
  async fetchBlob(hash: string): Promise<AsyncIterable<Uint8Array>> {
    const content = v1.blobs.get(hash) ?? v2.blobs.get(hash) ?? v3.blobs.get(hash);
    if (content === undefined) throw new Error(`no blob ${hash}`);
    return (async function* () {
      yield Buffer.from(content);
    })();
  }
}

/** Stands in for the server: keeps every report and upload. */
class Collector implements DriftSink {
  readonly reports: DriftReport[] = [];
  readonly uploads = new Map<string, Buffer>();
  async driftReport(report: DriftReport): Promise<void> {
    this.reports.push(report);
  }
  async uploadBlob(hash: string, content: Uint8Array): Promise<unknown> {
    this.uploads.set(hash, Buffer.from(content));
    return { size: content.byteLength, created: true };
  }
}

function task(deploymentId: number, release: Release, overrides: Partial<AgentTask> = {}): AgentTask {
  return {
    deploymentId,
    kind: 'deploy',
    env: 'production',
    releaseId: release.id,
    version: release.manifest.version,
    deployTo: '/srv/app',
    keepReleases: 5,
    vars: {},
    secrets: {},
    secretsInEnv: false,
    health: { checks: [], interval: 1000, healthy_after: 1, timeout: 60_000, watch_interval: 30_000 },
    hooks: { timeout: 60_000 },
    ...overrides,
  };
}

describe('drift monitor', () => {
  let temp: TempDir;
  let root: string;
  let collector: Collector;
  let monitor: DriftMonitor;
  let settings: HostSettings;
  let taskContext: TaskContext;
  let controller: AbortController;
  let nextCommand = 1;

  const host = (path: string): string => join(root, path);
  const findingsOf = (report: DriftReport | undefined): Record<string, string[]> =>
    Object.fromEntries((report?.findings ?? []).map((finding) => [finding.path, finding.kinds]));
  const latest = (): DriftReport | undefined => collector.reports.at(-1);

  /** Waits for a report satisfying `predicate` (reports are asynchronous); fails after a generous 30 s. */
  async function waitForReport(predicate: (report: DriftReport) => boolean, what: string): Promise<DriftReport> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const found = [...collector.reports].reverse().find(predicate);
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.fail(`no report ${what} within 30 s; last: ${JSON.stringify(latest()?.findings)}`);
  }
  const waitForFinding = (path: string, kinds: string[]): Promise<DriftReport> =>
    waitForReport((report) => JSON.stringify(findingsOf(report)[path]) === JSON.stringify(kinds), `with ${path}: ${kinds.join(',')}`);

  async function startMonitor(): Promise<void> {
    monitor = createDriftMonitor({
      host: 'web1',
      root,
      stateDir: host('var/lib/lockstep-agent'),
      cache: taskContext.cache,
      manifests: taskContext.manifests as ManifestStore,
      settings: () => settings,
      deployTo: () => '/srv/app',
      sink: collector,
      fetchBlob: (hash) => new MemorySource().fetchBlob(hash),
      logger,
      signal: controller.signal,
      workers: 2,
    });
    monitor.start();
    await waitForReport(() => true, 'after start');
    await monitor.idle();
  }

  const command = (body: WithoutId<AgentCommand>) => monitor.runCommand({ ...body, id: nextCommand++ } as AgentCommand);

  beforeEach(async () => {
    temp = await makeTempDir('lockstep-drift-monitor-');
    root = temp.path;
    controller = new AbortController();
    collector = new Collector();
    const cache = new BlobCache(host('var/lib/lockstep-agent/blobs'));
    await cache.open();
    taskContext = {
      host: 'web1',
      root,
      cache,
      source: new MemorySource(),
      manifests: new ManifestStore(host('var/lib/lockstep-agent/manifests')),
      report: async () => undefined,
      logger,
      signal: controller.signal,
    };
    assert.equal((await runTask(task(1, v1), taskContext)).kind, 'succeeded');
    await mkdir(host('etc/shop/conf.d'), { recursive: true });
    await writeFile(host('etc/shop/shop.conf'), 'listen 80\n', { mode: 0o644 });
    await writeFile(host('etc/shop/conf.d/extra.conf'), 'gzip on\n', { mode: 0o600 });
    await symlink('shop.conf', host('etc/shop/default'));
    settings = {
      revision: 'r1',
      env: 'production',
      deployTo: '/srv/app',
      watch: [{ path: '/etc/shop', include: [], exclude: ['*.swp'] }],
      scan: { periodicMs: 60_000, fullMs: 3_600_000, nice: 10, ionice: 'idle', maxReadBytesPerSecond: null },
    };
    await startMonitor();
  });

  afterEach(async () => {
    controller.abort();
    await monitor.close();
    await temp.remove();
  });

  it('takes the baseline on first start without reporting drift, and keeps it across a restart', async () => {
    const first = collector.reports[0];
    assert.equal(first?.cause.kind, 'scan');
    assert.equal(first?.releaseId, v1.id);
    assert.deepEqual(first?.findings, []);
    assert.ok((first?.stats.entries ?? 0) >= 8, `entries: ${first?.stats.entries}`);
    await writeFile(host('etc/shop/shop.conf'), 'listen 8080\n');
    await waitForFinding('/etc/shop/shop.conf', ['content']);
    await monitor.close();
    // A restarted agent compares with the stored baseline: the edit is still drift.
    collector.reports.length = 0;
    await startMonitor();
    assert.deepEqual(findingsOf(latest()), { '/etc/shop/shop.conf': ['content'] });
  });

  it('reports a hand edit of a release file through the watcher, with its content uploaded, and revert restores it byte for byte', async () => {
    const before = await readFile(host('srv/app/current/app.txt'));
    // In place (O_TRUNC): the release file is a hard link into the blob cache, so this also hits the cached copy.
    await writeFile(host('srv/app/current/app.txt'), 'hacked\n');
    const report = await waitForFinding('/srv/app/current/app.txt', ['content']);
    // Found by the watcher, not by a periodic scan (those run once a minute here).
    assert.equal(report.cause.kind, 'watch');
    const finding = report.findings[0] as DriftFinding;
    assert.equal(finding.scope, 'release');
    assert.equal(finding.expected?.sha256, sha(before));
    assert.equal(finding.actual?.sha256, sha('hacked\n'));
    assert.equal(collector.uploads.get(sha('hacked\n'))?.toString(), 'hacked\n');
    // The edited content shared the cached copy's inode: the cache drops that copy, so no later deployment links it.
    const cachedCopy = async (): Promise<string | undefined> => {
      const path = taskContext.cache.readyFileWithMode(sha(before), 0o644);
      return path === undefined ? undefined : readFile(path, 'utf8').catch(() => undefined);
    };
    for (let tries = 0; (await cachedCopy()) === 'hacked\n' && tries < 100; tries++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.notEqual(await cachedCopy(), 'hacked\n', 'the blob cache no longer serves the edited content');

    const result = await command({ kind: 'drift-revert', paths: null });
    assert.equal(result.ok, true, result.error);
    assert.deepEqual(await readFile(host('srv/app/current/app.txt')), before);
    assert.equal((await lstat(host('srv/app/current/app.txt'))).mode & 0o7777, 0o644);
    const confirming = latest();
    assert.deepEqual(confirming?.cause, { kind: 'command', commandId: nextCommand - 1 });
    assert.deepEqual(confirming?.findings, []);
  });

  it('reports every kind of change to release files and reverts them all', async () => {
    await chmod(host('srv/app/current/conf/app.conf'), 0o666);
    await writeFile(host('srv/app/current/conf/added.txt'), 'new\n');
    await unlink(host('srv/app/current/latest'));
    await symlink('conf', host('srv/app/current/latest'));
    await rm(host('srv/app/current/app.txt'));
    await mkdir(host('srv/app/current/app.txt'));
    await waitForReport((report) => report.findings.length === 4, 'with four findings');
    await monitor.idle();
    assert.deepEqual(findingsOf(latest()), {
      '/srv/app/current/app.txt': ['type'],
      '/srv/app/current/conf/added.txt': ['added'],
      '/srv/app/current/conf/app.conf': ['mode'],
      '/srv/app/current/latest': ['target'],
    });
    const result = await command({ kind: 'drift-revert', paths: null });
    assert.equal(result.ok, true, result.error);
    assert.equal(await readFile(host('srv/app/current/app.txt'), 'utf8'), 'app 1.0.0\n');
    assert.equal(await readlink(host('srv/app/current/latest')), 'app.txt');
    assert.equal((await lstat(host('srv/app/current/conf/app.conf'))).mode & 0o7777, 0o640);
    await assert.rejects(lstat(host('srv/app/current/conf/added.txt')), { code: 'ENOENT' });
    assert.deepEqual(latest()?.findings, []);
  });

  it('reports content, mode, owner, group, added, removed and retargeted watched entries, and revert restores them with their metadata', async () => {
    await writeFile(host('etc/shop/shop.conf'), 'listen 8080\n');
    await chmod(host('etc/shop/conf.d/extra.conf'), 0o644);
    await chown(host('etc/shop/conf.d/extra.conf'), 1234, 2345);
    await writeFile(host('etc/shop/rogue.conf'), 'x\n');
    await writeFile(host('etc/shop/editor.swp'), 'excluded\n');
    await unlink(host('etc/shop/default'));
    await symlink('rogue.conf', host('etc/shop/default'));
    await waitForReport((report) => report.findings.length === 4, 'with four findings');
    await monitor.idle();
    assert.deepEqual(findingsOf(latest()), {
      '/etc/shop/conf.d/extra.conf': ['mode', 'owner', 'group'],
      '/etc/shop/default': ['target'],
      '/etc/shop/rogue.conf': ['added'],
      '/etc/shop/shop.conf': ['content'],
    });
    const owner = latest()?.findings.find((finding) => finding.path === '/etc/shop/conf.d/extra.conf');
    assert.deepEqual([owner?.expected?.uid, owner?.actual?.uid, owner?.actual?.gid], [0, 1234, 2345]);

    const result = await command({ kind: 'drift-revert', paths: null });
    assert.equal(result.ok, true, result.error);
    assert.equal(await readFile(host('etc/shop/shop.conf'), 'utf8'), 'listen 80\n');
    const extra = await lstat(host('etc/shop/conf.d/extra.conf'));
    assert.deepEqual([extra.mode & 0o7777, extra.uid, extra.gid], [0o600, 0, 0]);
    assert.equal(await readlink(host('etc/shop/default')), 'shop.conf');
    await assert.rejects(lstat(host('etc/shop/rogue.conf')), { code: 'ENOENT' });
    assert.deepEqual(latest()?.findings, []);
  });

  it('recreates a removed watched directory with its files, and reverts only the paths asked for', async () => {
    await rm(host('etc/shop/conf.d'), { recursive: true });
    await writeFile(host('etc/shop/shop.conf'), 'listen 8080\n');
    await waitForReport((report) => report.findings.length === 3, 'with three findings');
    const result = await command({ kind: 'drift-revert', paths: ['/etc/shop/conf.d', '/etc/shop/nothing-here'] });
    assert.equal(result.ok, true, result.error);
    assert.match(result.detail ?? '', /restored 2 of 2 drifted paths; \/etc\/shop\/nothing-here has no open drift/);
    assert.equal(await readFile(host('etc/shop/conf.d/extra.conf'), 'utf8'), 'gzip on\n');
    assert.deepEqual(findingsOf(latest()), { '/etc/shop/shop.conf': ['content'] });
  });

  it('accepts a watched change into the baseline (also after a restart) and refuses to accept a release file', async () => {
    await writeFile(host('etc/shop/shop.conf'), 'listen 8080\n');
    await writeFile(host('srv/app/current/conf/app.conf'), 'port=81\n');
    await waitForReport((report) => report.findings.length === 2, 'with two findings');
    const refused = await command({ kind: 'drift-accept', paths: ['/srv/app/current/conf/app.conf'] });
    assert.equal(refused.ok, false);
    assert.equal(
      refused.error,
      '/srv/app/current/conf/app.conf is a release file: release files cannot be accepted; adopt it instead with `lockstep drift adopt web1 --version V --reason TEXT`',
    );
    const accepted = await command({ kind: 'drift-accept', paths: ['/etc/shop/shop.conf'] });
    assert.equal(accepted.ok, true, accepted.error);
    assert.deepEqual(findingsOf(latest()), { '/srv/app/current/conf/app.conf': ['content'] });
    await monitor.close();
    collector.reports.length = 0;
    await startMonitor();
    assert.deepEqual(findingsOf(latest()), { '/srv/app/current/conf/app.conf': ['content'] });
    // The accepted content is the new baseline copy: a later edit reverts to it.
    await writeFile(host('etc/shop/shop.conf'), 'listen 9090\n');
    await waitForFinding('/etc/shop/shop.conf', ['content']);
    assert.equal((await command({ kind: 'drift-revert', paths: ['/etc/shop/shop.conf'] })).ok, true);
    assert.equal(await readFile(host('etc/shop/shop.conf'), 'utf8'), 'listen 8080\n');
  });

  it("takes Lockstep's own changes of watched files (the fire-call sshd trust) as baseline; a later hand edit of them is drift", async () => {
    const own = ['/etc/shop/ssh.d/lockstep.conf', '/etc/shop/lockstep.pub'];
    await monitor.ownChange(own, async () => {
      await mkdir(host('etc/shop/ssh.d'));
      await writeFile(host('etc/shop/ssh.d/lockstep.conf'), 'TrustedUserCAKeys /etc/shop/lockstep.pub\n');
      await writeFile(host('etc/shop/lockstep.pub'), 'ssh-ed25519 AAAA ca\n');
      // The watcher sees these writes while the change is under way; nothing may be reported for them.
      await new Promise((resolve) => setTimeout(resolve, 400));
    });
    await command({ kind: 'drift-scan', full: true });
    assert.deepEqual(findingsOf(latest()), {});
    assert.ok(collector.reports.every((report) => report.findings.length === 0), 'no report ever named the own change');
    await writeFile(host('etc/shop/lockstep.pub'), 'ssh-ed25519 BBBB intruder\n');
    await waitForFinding('/etc/shop/lockstep.pub', ['content']);
    assert.equal((await command({ kind: 'drift-revert', paths: ['/etc/shop/lockstep.pub'] })).ok, true);
    assert.equal(await readFile(host('etc/shop/lockstep.pub'), 'utf8'), 'ssh-ed25519 AAAA ca\n');
  });

  it("an own change written atomically (a temporary sibling, then rename) is never reported, not even its temporary file (5 times)", async () => {
    for (let round = 0; round < 5; round++) {
      await monitor.ownChange(['/etc/shop/lockstep.krl'], async () => {
        // What writeFileAtomic does, slowed down so that the watcher's re-scan sees the temporary sibling.
        const tmp = host(`etc/shop/.lockstep.krl.tmp-${round}abcdef`);
        await writeFile(tmp, `krl ${round}\n`, { mode: 0o644 });
        await new Promise((resolve) => setTimeout(resolve, 300));
        await rename(tmp, host('etc/shop/lockstep.krl'));
      });
      await monitor.idle();
    }
    await command({ kind: 'drift-scan', full: false });
    assert.deepEqual(findingsOf(latest()), {});
    assert.ok(collector.reports.every((report) => report.findings.length === 0), `no report ever named the own change: ${JSON.stringify(collector.reports.map((report) => report.findings.map((finding) => finding.path)))}`);
  });

  it('holds back the temporary file Lockstep writes a watched file through, and reports one left behind after the change', async () => {
    const tmp = '/etc/shop/.lockstep.pub.tmp-0a1b2c3d4e5f';
    await monitor.ownChange(['/etc/shop/lockstep.pub'], async () => {
      await writeFile(host(tmp), 'ssh-ed25519 AAAA ca\n');
      // A scan while the temporary file exists (a watcher's re-scan or the periodic one can run then).
      assert.equal((await command({ kind: 'drift-scan', full: false })).ok, true);
      await rename(host(tmp), host('etc/shop/lockstep.pub'));
    });
    await command({ kind: 'drift-scan', full: true });
    assert.deepEqual(findingsOf(latest()), {});
    assert.ok(collector.reports.every((report) => report.findings.length === 0), 'no report ever named the temporary file');

    // One still there when the change returned is not Lockstep's write: drift like any other file.
    await monitor.ownChange(['/etc/shop/lockstep.pub'], async () => {
      await writeFile(host(tmp), 'planted\n');
      assert.equal((await command({ kind: 'drift-scan', full: false })).ok, true);
    });
    await command({ kind: 'drift-scan', full: false });
    assert.deepEqual(findingsOf(latest()), { [tmp]: ['added'] });
  });

  it('reports `current` re-pointed by hand, also while the agent was down, and revert points it back', async () => {
    const repoint = async (target: string): Promise<void> => {
      await symlink(target, host('srv/app/current.by-hand'));
      await rename(host('srv/app/current.by-hand'), host('srv/app/current'));
    };
    await repoint('releases/somewhere-else');
    const report = await waitForFinding('/srv/app/current', ['target']);
    const finding = report.findings.find((candidate) => candidate.path === '/srv/app/current');
    assert.deepEqual([finding?.scope, finding?.expected?.target, finding?.actual?.target], ['release', `releases/${v1.id}`, 'releases/somewhere-else']);
    assert.equal((await command({ kind: 'drift-revert', paths: ['/srv/app/current'] })).ok, true);
    assert.equal(await readlink(host('srv/app/current')), `releases/${v1.id}`);
    assert.deepEqual(findingsOf(latest()), {});

    await monitor.close();
    await repoint('releases/while-down');
    collector.reports.length = 0;
    await startMonitor();
    assert.deepEqual(findingsOf(latest()), { '/srv/app/current': ['target'] });
  });

  it('reports sockets and fifos as entries without hanging, and a scan command says what it scanned', async () => {
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(host('etc/shop/app.sock'), resolve));
    try {
      execFileSync('mkfifo', [host('etc/shop/pipe')]);
      const result = await command({ kind: 'drift-scan', full: true });
      assert.equal(result.ok, true);
      assert.match(result.detail ?? '', /^scanned \d+ entries \(full re-hash\), 2 drifted$/);
      const report = latest();
      assert.equal(report?.full, true);
      const byPath = new Map(report?.findings.map((finding) => [finding.path, finding]));
      assert.deepEqual(byPath.get('/etc/shop/app.sock')?.actual?.special, 'socket');
      assert.deepEqual(byPath.get('/etc/shop/pipe')?.actual?.special, 'fifo');
    } finally {
      server.close();
    }
  });

  it('watches a path that does not exist yet, and a single file', async () => {
    settings = {
      ...settings,
      revision: 'r2',
      watch: [...settings.watch, { path: '/etc/missing', include: [], exclude: [] }, { path: '/etc/hosts.allow', include: [], exclude: [] }],
    };
    await mkdir(host('etc'), { recursive: true });
    await writeFile(host('etc/hosts.allow'), 'ALL: LOCAL\n');
    await monitor.settingsChanged();
    await monitor.idle();
    assert.deepEqual(latest()?.findings, []);
    await mkdir(host('etc/missing'));
    await writeFile(host('etc/missing/file'), 'x\n');
    await writeFile(host('etc/hosts.allow'), 'ALL: ALL\n');
    await command({ kind: 'drift-scan', full: false });
    assert.deepEqual(findingsOf(latest()), { '/etc/hosts.allow': ['content'], '/etc/missing': ['added'], '/etc/missing/file': ['added'] });
    assert.ok(monitor.watchedSummary()['/etc/hosts.allow']?.startsWith('file 0644 0:0 '));
  });

  /** Runs a task the way the agent does: the monitor paused, the switch through it, the report delayed by `delayMs` (not awaited). */
  async function runMonitoredTask(agentTask: AgentTask, delayMs = 0): Promise<{ outcome: Awaited<ReturnType<typeof runTask>>; resumed: Promise<void> }> {
    await monitor.pause();
    const outcome = await runTask(agentTask, {
      ...taskContext,
      verify: (id) => monitor.verifyRelease('/srv/app', id),
      switching: (id, switchRelease) => monitor.activation('/srv/app', id, switchRelease),
    });
    return { outcome, resumed: monitor.resume(agentTask.deploymentId, delayMs) };
  }
  const expectedHash = (report: DriftReport, path: string): string | undefined => report.findings.find((finding) => finding.path === path)?.expected?.sha256;

  it("moves the release baseline with the switch, keeps watched drift from before, and a hook's write to a watched file is drift", async () => {
    await writeFile(host('etc/shop/shop.conf'), 'listen 8080\n');
    await waitForFinding('/etc/shop/shop.conf', ['content']);
    // A hook is the user's program: what it writes under a watch path is drift, like any other change.
    const hook = `echo "deployed" > ${host('etc/shop/conf.d/extra.conf')}`;
    const { outcome, resumed } = await runMonitoredTask(task(2, v2, { hooks: { timeout: 60_000, after_activate: hook } }));
    assert.equal(outcome.kind, 'succeeded');
    await resumed;
    const report = await waitForReport((candidate) => candidate.cause.kind === 'deployment', 'after the deployment');
    assert.equal(report.releaseId, v2.id);
    assert.deepEqual(findingsOf(report), { '/etc/shop/conf.d/extra.conf': ['content'], '/etc/shop/shop.conf': ['content'] });
    assert.equal(expectedHash(report, '/etc/shop/conf.d/extra.conf'), sha('gzip on\n'));
    assert.equal(expectedHash(report, '/etc/shop/shop.conf'), sha('listen 80\n'));
  });

  it('an edit of a watched file right after a task, before its delayed report, is drift against the content before the edit (5 times)', async () => {
    for (let round = 0; round < 5; round++) {
      const release = round % 2 === 0 ? v2 : v1;
      const { outcome, resumed } = await runMonitoredTask(task(10 + round, release, { kind: round % 2 === 0 ? 'deploy' : 'rollback' }), 300);
      assert.equal(outcome.kind, 'succeeded');
      await writeFile(host('etc/shop/shop.conf'), `listen ${9000 + round}\n`);
      await resumed;
      const report = await waitForReport((candidate) => candidate.cause.kind === 'deployment' && candidate.cause.deploymentId === 10 + round, `after task ${10 + round}`);
      assert.equal(report.releaseId, release.id);
      assert.deepEqual(findingsOf(report), { '/etc/shop/shop.conf': ['content'] }, `round ${round}`);
      assert.equal(expectedHash(report, '/etc/shop/shop.conf'), sha('listen 80\n'));
      assert.equal((await command({ kind: 'drift-revert', paths: null })).ok, true);
    }
  });

  it('an edit of a watched file while a task runs is drift against the content before the edit (5 times)', async () => {
    const marker = host('hook-running');
    for (let round = 0; round < 5; round++) {
      // The hook says it runs, then waits until the test made its edit.
      const hook = `touch ${marker}; while [ -e ${marker} ]; do sleep 0.01; done`;
      await monitor.pause();
      const running = runTask(task(20 + round, round % 2 === 0 ? v2 : v1, { hooks: { timeout: 60_000, before_activate: hook } }), {
        ...taskContext,
        switching: (id, switchRelease) => monitor.activation('/srv/app', id, switchRelease),
      });
      while (!(await lstat(marker).then(() => true, () => false))) await new Promise((resolve) => setTimeout(resolve, 10));
      await writeFile(host('etc/shop/shop.conf'), `listen ${7000 + round}\n`);
      // Watchers keep running during the task: the edit is reported before the task ends.
      const during = await waitForFinding('/etc/shop/shop.conf', ['content']);
      assert.equal(expectedHash(during, '/etc/shop/shop.conf'), sha('listen 80\n'));
      await rm(marker);
      assert.equal((await running).kind, 'succeeded');
      await monitor.resume(20 + round);
      const after = await waitForReport((candidate) => candidate.cause.kind === 'deployment' && candidate.cause.deploymentId === 20 + round, `after task ${20 + round}`);
      assert.deepEqual(findingsOf(after), { '/etc/shop/shop.conf': ['content'] });
      assert.equal(expectedHash(after, '/etc/shop/shop.conf'), sha('listen 80\n'));
      assert.equal((await command({ kind: 'drift-revert', paths: null })).ok, true);
      assert.deepEqual(findingsOf(latest()), {});
    }
  });

  it('a release file edited or `current` re-pointed right after a rollback switched is drift against the activated manifest (5 times)', async () => {
    for (let round = 0; round < 5; round++) {
      const [from, to] = round % 2 === 0 ? [v2, v1] : [v1, v2];
      const { outcome: deployed, resumed: deployedReport } = await runMonitoredTask(task(30 + 2 * round, from));
      assert.equal(deployed.kind, 'succeeded');
      await deployedReport;
      const { outcome, resumed } = await runMonitoredTask(task(31 + 2 * round, to, { kind: 'rollback' }), 300);
      assert.equal(outcome.kind, 'succeeded');
      // Replaced (a new inode), as an editor does; `current` re-pointed at the release rolled back from.
      await writeFile(host('srv/app/current/app.txt.new'), 'edited\n');
      await rename(host('srv/app/current/app.txt.new'), host('srv/app/current/app.txt'));
      await symlink(`releases/${from.id}`, host('srv/app/current.by-hand'));
      await rename(host('srv/app/current.by-hand'), host('srv/app/current'));
      await resumed;
      const report = await waitForReport((candidate) => candidate.cause.kind === 'deployment' && candidate.cause.deploymentId === 31 + 2 * round, 'after the rollback');
      assert.equal(report.releaseId, to.id);
      // The activated release's tree is checked even while `current` points elsewhere: both changes are drift.
      assert.deepEqual(findingsOf(report), { '/srv/app/current': ['target'], '/srv/app/current/app.txt': ['content'] }, `round ${round}`);
      assert.equal(report.findings.find((finding) => finding.path === '/srv/app/current')?.expected?.target, `releases/${to.id}`);
      assert.equal(expectedHash(report, '/srv/app/current/app.txt'), sha(`app ${to.manifest.version}\n`));
      assert.equal((await command({ kind: 'drift-revert', paths: null })).ok, true);
      assert.equal(await readlink(host('srv/app/current')), `releases/${to.id}`);
      assert.equal(await readFile(host('srv/app/current/app.txt'), 'utf8'), `app ${to.manifest.version}\n`);
      assert.deepEqual(findingsOf(latest()), {});
    }
  });

  it("watching DEPLOY_TO: Lockstep's own writes (releases, current, lockstep.env) are no drift, a hand edit of lockstep.env right after a switch is", async () => {
    settings = { ...settings, revision: 'r2', watch: [...settings.watch, { path: '/srv/app', include: [], exclude: [] }] };
    await monitor.settingsChanged();
    await monitor.idle();
    assert.deepEqual(findingsOf(latest()), {});
    for (const [id, release, vars] of [[40, v2, { A: '1' }], [41, v3, { A: '2' }], [42, v2, { A: '3' }]] as const) {
      const { outcome, resumed } = await runMonitoredTask(task(id, release, { vars, kind: id === 42 ? 'rollback' : 'deploy' }));
      assert.equal(outcome.kind, 'succeeded');
      await resumed;
      const report = await waitForReport((candidate) => candidate.cause.kind === 'deployment' && candidate.cause.deploymentId === id, `after task ${id}`);
      assert.deepEqual(findingsOf(report), {}, `task ${id}`);
    }
    const { resumed } = await runMonitoredTask(task(43, v3, { vars: { A: '4' } }), 300);
    await writeFile(host('srv/app/shared/lockstep.env'), 'A=intruder\n');
    await resumed;
    const report = await waitForReport((candidate) => candidate.cause.kind === 'deployment' && candidate.cause.deploymentId === 43, 'after task 43');
    assert.deepEqual(findingsOf(report), { '/srv/app/shared/lockstep.env': ['content'] });
    assert.equal(expectedHash(report, '/srv/app/shared/lockstep.env'), sha('A=4\n'));
  });

  it("drops from the blob cache what only a pruned release used, and keeps the watched baseline's copies", async () => {
    // keep_releases 1, and the previous release is always kept: v2 keeps v1; v3 keeps v2 and prunes v1.
    for (const [id, release] of [[2, v2], [3, v3]] as const) {
      await monitor.pause();
      const outcome = await runTask(task(id, release, { keepReleases: 1 }), taskContext);
      assert.equal(outcome.kind, 'succeeded');
      if (outcome.kind === 'succeeded' && outcome.pruned.length > 0) monitor.cachePruneDue();
      if (id === 3) assert.deepEqual(outcome.kind === 'succeeded' ? outcome.pruned : [], [v1.id]);
      await monitor.resume(id);
    }
    await monitor.idle();
    assert.equal(await taskContext.cache.has(sha('app 1.0.0\n')), false, "v1's content is gone with v1");
    assert.equal(await taskContext.cache.has(sha('app 2.0.0\n')), true, 'the previous release keeps its content');
    assert.equal(await taskContext.cache.has(sha('app 3.0.0\n')), true, 'the active release keeps its content');
    assert.equal(await taskContext.cache.has(sha('listen 80\n')), true, "the watched file's baseline copy stays");
  });

  it('fails a deployment whose release differs from its manifest after the after_activate hook', async () => {
    await monitor.pause();
    const hook = `echo tampered > "$LOCKSTEP_RELEASE_DIR/app.txt.new" && mv "$LOCKSTEP_RELEASE_DIR/app.txt.new" "$LOCKSTEP_RELEASE_DIR/app.txt"`;
    const outcome = await runTask(task(3, v2, { hooks: { timeout: 60_000, after_activate: hook } }), { ...taskContext, verify: (id) => monitor.verifyRelease('/srv/app', id) });
    assert.equal(outcome.kind, 'failed');
    assert.equal(outcome.kind === 'failed' ? outcome.error : '', 'host web1 does not run what was deployed: 1 file differs (e.g. /srv/app/current/app.txt: content)');
    await monitor.resume(3);
  });
});
