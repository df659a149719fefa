/**
 * Verification before every switch, on real files: the stat record taken at
 * staging (outside the tree), a rollback to an untouched kept release that is
 * a stat walk only, and repairs from verified blobs of every tree and cache
 * copy that share an inode edited in place.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFile, chmod, lstat, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import type { AgentReport, AgentTask } from '../../src/api/schemas.js';
import { BlobCache } from '../../src/content/blob-cache.js';
import { removeTree } from '../../src/content/remove-tree.js';
import { releaseIdOf, type Manifest } from '../../src/core/manifest.js';
import { deployLayout } from '../../src/agent/release/deploy-layout.js';
import { ManifestStore } from '../../src/agent/release/manifest-store.js';
import type { ReleaseSource, UntrustedManifest } from '../../src/agent/release/release-stager.js';
import { ReleaseVerifier } from '../../src/agent/release/release-verifier.js';
import { runTask, type TaskContext } from '../../src/agent/release/task-runner.js';

const logger = pino({ level: 'silent' });
const SHARED = 'shared page\n';

function sha(content: string): string {
  return createHash('sha256').update(content).digest('hex');
}

/** A release of two files: app.txt differs per version, public/shared.txt is the same in every version (one inode on disk). */
function releaseOf(version: string): { manifest: Manifest; id: string; content: string } {
  const content = `app ${version}\n`;
  const manifest: Manifest = {
    app: 'shop',
    version,
    entries: [
      { path: 'app.txt', type: 'file', mode: 0o644, size: Buffer.byteLength(content), sha256: sha(content) },
      { path: 'public', type: 'dir', mode: 0o755 },
      { path: 'public/shared.txt', type: 'file', mode: 0o644, size: Buffer.byteLength(SHARED), sha256: sha(SHARED) },
    ],
  };
  return { manifest, id: releaseIdOf(manifest), content };
}

/** A release whose one file has the blob's own mode (0444): the tree links the cached blob itself. */
const READ_ONLY = 'read-only app\n';
const readOnly = (() => {
  const manifest: Manifest = { app: 'shop', version: '9.0.0', entries: [{ path: 'app.txt', type: 'file', mode: 0o444, size: Buffer.byteLength(READ_ONLY), sha256: sha(READ_ONLY) }] };
  return { manifest, id: releaseIdOf(manifest), content: READ_ONLY };
})();
const releases = [releaseOf('1.0.0'), releaseOf('2.0.0'), releaseOf('3.0.0'), readOnly];
const [v1, v2, v3] = releases as [ReturnType<typeof releaseOf>, ReturnType<typeof releaseOf>, ReturnType<typeof releaseOf>];

class MemorySource implements ReleaseSource {
  blobRequests: string[] = [];
  /** Set to make every blob download fail (the server unreachable). */
  unreachable = false;
  async fetchManifest(releaseId: string): Promise<UntrustedManifest> {
    const release = releases.find((candidate) => candidate.id === releaseId);
    if (!release) throw new Error(`no release ${releaseId}`);
    return release.manifest;
  }
  async fetchBlob(hash: string): Promise<AsyncIterable<Uint8Array>> {
    this.blobRequests.push(hash);
    if (this.unreachable) throw new Error('connect ECONNREFUSED 127.0.0.1:7400');
    const content = [SHARED, ...releases.map((release) => release.content)].find((candidate) => sha(candidate) === hash);
    if (content === undefined) throw new Error(`no blob ${hash}`);
    return (async function* () {
      yield Buffer.from(content);
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
    vars: {},
    secrets: {},
    health: { checks: [], interval: 1000, healthy_after: 1, timeout: 60_000, watch_interval: 30_000 },
    hooks: { timeout: 60_000 },
    ...overrides,
  };
}

describe('verification before every switch', () => {
  let root: string;
  let stateDir: string;
  let source: MemorySource;
  let cache: BlobCache;
  let verifier: ReleaseVerifier;
  let context: TaskContext;
  let reports: AgentReport[];
  let deployments = 0;
  const layout = () => deployLayout(root, '/srv/shop');
  const signal = new AbortController().signal;
  const tree = (id: string, path: string) => join(root, 'srv/shop/releases', id, path);
  const current = (path: string) => readFile(join(root, 'srv/shop/current', path), 'utf8');

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'lockstep-verify-'));
    stateDir = join(root, 'var/lib/lockstep-agent');
    source = new MemorySource();
    cache = new BlobCache(join(stateDir, 'blobs'));
    await cache.open();
    const manifests = new ManifestStore(join(stateDir, 'manifests'));
    verifier = new ReleaseVerifier({ stateDir, cache, manifests, fetchManifest: (id) => source.fetchManifest(id), fetchBlob: (hash) => source.fetchBlob(hash), logger });
    reports = [];
    context = { host: 'web-1', root, cache, source, manifests, verifier, report: async (report: AgentReport) => void reports.push(report), logger, signal };
  });
  afterEach(async () => {
    await verifier.close();
    await removeTree(root);
  });

  async function run(releaseId: string, kind: AgentTask['kind'] = 'deploy', overrides: Partial<AgentTask> = {}): Promise<void> {
    const outcome = await runTask(task(++deployments, releaseId, { kind, ...overrides }), context);
    assert.equal(outcome.kind, 'succeeded', outcome.kind === 'failed' ? outcome.error : '');
  }

  it('records every entry at staging in the state dir (0600), and a rollback to an untouched kept release hashes nothing', async () => {
    await run(v1.id);
    await run(v2.id);
    const record = join(stateDir, 'stat-records', `${v1.id}.json`);
    assert.equal((await stat(record)).mode & 0o777, 0o600);
    const stored = JSON.parse(await readFile(record, 'utf8')) as { stats: Record<string, string | null> };
    assert.deepEqual(Object.keys(stored.stats).sort(), ['app.txt', 'public', 'public/shared.txt']);
    const inode = (await lstat(tree(v1.id, 'public/shared.txt'), { bigint: true })).ino;
    assert.equal((await lstat(tree(v2.id, 'public/shared.txt'), { bigint: true })).ino, inode, 'the shared file is one inode in both trees');
    // Staging v2 linked that inode (its ctime and link count changed): Lockstep's own change, carried into v1's record.
    assert.equal(stored.stats['public/shared.txt']?.split(':')[0], String(inode));
    const outcome = await verifier.verifyTree(layout(), v1.id, signal);
    assert.deepEqual(outcome, { rehashed: 0, repaired: [] });
  });

  it('an in-place edit through current never reaches the release a rollback activates, nor any other tree or the cache', async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      await run(v1.id);
      await run(v2.id);
      await appendFile(join(root, 'srv/shop/current/public/shared.txt'), 'x\n');
      assert.equal(await readFile(tree(v1.id, 'public/shared.txt'), 'utf8'), `${SHARED}x\n`, 'the edit reached the kept tree through the shared inode');
      await run(v1.id, 'rollback');
      assert.equal(await current('public/shared.txt'), SHARED, `attempt ${attempt}: the rollback activated the original content`);
      assert.equal(await readFile(tree(v2.id, 'public/shared.txt'), 'utf8'), SHARED, 'the other tree sharing the inode was repaired too');
      const cached = cache.readyFileWithMode(sha(SHARED), 0o644);
      if (cached !== undefined) assert.equal(sha(await readFile(cached, 'utf8')), sha(SHARED), 'no edited copy stays in the cache');
      await run(v2.id);
      assert.equal(await current('public/shared.txt'), SHARED);
    }
  });

  it('an already-staged release edited in place, given extra files and a changed mode, is repaired before it is activated', async () => {
    await run(v1.id);
    await run(v2.id);
    for (let attempt = 0; attempt < 5; attempt++) {
      await writeFile(tree(v1.id, 'app.txt'), 'defaced\n').catch(async () => {
        // app.txt is 0644 in a 0755 dir: writable by its owner; a read-only tree would refuse (root does not care).
        throw new Error('could not edit the kept tree');
      });
      await chmod(tree(v1.id, 'public'), 0o777);
      await writeFile(tree(v1.id, 'public/backdoor.php'), '<?php system($_GET["c"]);\n');
      await run(v1.id);
      assert.equal(await current('app.txt'), v1.content);
      await assert.rejects(lstat(tree(v1.id, 'public/backdoor.php')), { code: 'ENOENT' });
      assert.equal((await lstat(tree(v1.id, 'public'))).mode & 0o777, 0o755);
      await run(v2.id);
    }
  });

  it('what a before_activate hook changes in the release is put back before the switch, and said so in the logs', async () => {
    await run(v1.id, 'deploy', { hooks: { timeout: 60_000, before_activate: 'echo generated >> app.txt' } });
    assert.equal(await current('app.txt'), v1.content);
    const logs = reports.flatMap((report) => report.logs ?? []).filter((log) => log.source === 'verify');
    assert.equal(logs.length, 1);
    assert.match(logs[0]?.text ?? '', new RegExp(`^repaired 1 release entry that differed from the manifest before the switch: releases/${v1.id}/app\\.txt$`));
  });

  it('an in-place edit of a kept release is drift of that release, and its repair restores every tree sharing the inode', async () => {
    await run(v1.id);
    await run(v2.id);
    assert.deepEqual(await verifier.keptReleaseFindings(layout(), '/srv/shop', v2.id, signal), []);
    await appendFile(tree(v1.id, 'public/shared.txt'), 'x\n');
    const findings = await verifier.keptReleaseFindings(layout(), '/srv/shop', v2.id, signal);
    assert.deepEqual(
      findings.map((finding) => [finding.scope, finding.path, finding.kinds]),
      [['release', `/srv/shop/releases/${v1.id}/public/shared.txt`, ['content']]],
    );
    const repaired = await verifier.repairPaths(layout(), v1.id, ['public/shared.txt'], signal);
    assert.deepEqual([...repaired].sort(), [`releases/${v1.id}/public/shared.txt`, `releases/${v2.id}/public/shared.txt`].sort());
    assert.equal(await current('public/shared.txt'), SHARED, 'the active tree that shared the inode is right again');
    assert.equal(await readFile(tree(v1.id, 'public/shared.txt'), 'utf8'), SHARED);
    assert.deepEqual(await verifier.keptReleaseFindings(layout(), '/srv/shop', v2.id, signal), []);
  });

  it('the tree a switch leaves is put back where it differed before the switch; an edit of it after the switch stays, as kept-release drift', async () => {
    await run(v1.id);
    await appendFile(join(root, 'srv/shop/current/app.txt'), 'hand edit while active\n');
    // The hook runs after the switch: its edit of the tree just left is a change to a kept release.
    await run(v2.id, 'deploy', { hooks: { timeout: 60_000, after_activate: `echo late > ../${v1.id}/public/late.txt` } });
    assert.equal(await readFile(tree(v1.id, 'app.txt'), 'utf8'), v1.content, 'the drift it had while active was put back');
    const findings = await verifier.keptReleaseFindings(layout(), '/srv/shop', v2.id, signal);
    assert.deepEqual(
      findings.map((finding) => finding.path),
      [`/srv/shop/releases/${v1.id}/public/late.txt`],
      'the file added after the switch is reported, not absorbed',
    );
  });

  it('a cached blob edited through a tree is fetched again from the server; without the server the switch is refused, naming the file', async () => {
    await run(readOnly.id);
    await appendFile(join(root, 'srv/shop/current/app.txt'), 'x\n');
    source.unreachable = true;
    await assert.rejects(verifier.verifyTree(layout(), readOnly.id, signal), (error: Error) => {
      assert.match(error.message, new RegExp(`^cannot put back releases/${readOnly.id}/app\\.txt as release [0-9a-f]+ says: .*could not be fetched: connect ECONNREFUSED`));
      assert.doesNotMatch(error.message, /\n/);
      return true;
    });
    source.unreachable = false;
    source.blobRequests = [];
    const outcome = await verifier.verifyTree(layout(), readOnly.id, signal);
    assert.deepEqual(outcome.repaired, [`releases/${readOnly.id}/app.txt`]);
    assert.deepEqual(source.blobRequests, [sha(READ_ONLY)], 'the edited cache copy was replaced by a download');
    assert.equal(await current('app.txt'), READ_ONLY);
  });

  it('pruning carries its unlinks into the records of the trees it keeps', async () => {
    await run(v1.id, 'deploy', { keepReleases: 2 });
    await run(v2.id, 'deploy', { keepReleases: 2 });
    await run(v3.id, 'deploy', { keepReleases: 2 });
    await assert.rejects(lstat(tree(v1.id, '')), { code: 'ENOENT' }, 'v1 was pruned');
    await assert.rejects(lstat(join(stateDir, 'stat-records', `${v1.id}.json`)), { code: 'ENOENT' }, 'and its record with it');
    assert.deepEqual(await verifier.verifyTree(layout(), v2.id, signal), { rehashed: 0, repaired: [] });
  });

  it('a tree without a stat record (staged by an older agent) is hashed whole before the switch', async () => {
    await run(v1.id);
    await run(v2.id);
    await removeTree(join(stateDir, 'stat-records'));
    verifier = new ReleaseVerifier({ stateDir, cache, manifests: new ManifestStore(join(stateDir, 'manifests')), fetchBlob: (hash) => source.fetchBlob(hash), logger });
    assert.deepEqual(await verifier.verifyTree(layout(), v2.id, signal), { rehashed: 2, repaired: [] }, 'both files of the untouched tree hashed once');
    await appendFile(tree(v1.id, 'app.txt'), 'x\n');
    const outcome = await verifier.verifyTree(layout(), v1.id, signal);
    assert.deepEqual(outcome.repaired, [`releases/${v1.id}/app.txt`]);
    assert.equal(await readFile(tree(v1.id, 'app.txt'), 'utf8'), v1.content);
  });
});
