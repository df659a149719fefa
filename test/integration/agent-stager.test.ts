/** Staging against real directories: a local blob cache filled by the test and an in-process release source. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rename, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { BlobCache } from '../../src/content/blob-cache.js';
import { removeTree } from '../../src/content/remove-tree.js';
import { releaseIdOf, type Manifest, type ManifestEntry } from '../../src/core/manifest.js';
import { deployLayout, type DeployLayout } from '../../src/agent/release/deploy-layout.js';
import { STAGING_PREFIX, stageRelease, type ReleaseSource, type UntrustedManifest } from '../../src/agent/release/release-stager.js';

const logger = pino({ level: 'silent' });
const signal = new AbortController().signal;

function sha(content: string): string {
  return createHash('sha256').update(content).digest('hex');
}

function file(path: string, content: string, mode: number): ManifestEntry {
  return { path, type: 'file', mode, size: Buffer.byteLength(content), sha256: sha(content) };
}

async function* chunks(content: string): AsyncGenerator<Uint8Array> {
  yield Buffer.from(content);
}

/** A release source over in-memory manifests and blobs that records what was asked for. */
class MemorySource implements ReleaseSource {
  readonly manifestRequests: string[] = [];
  readonly blobRequests: string[] = [];
  constructor(
    private readonly manifests: Map<string, UntrustedManifest>,
    private readonly blobs: Map<string, string>,
  ) {}
  async fetchManifest(releaseId: string): Promise<UntrustedManifest> {
    this.manifestRequests.push(releaseId);
    const manifest = this.manifests.get(releaseId);
    if (!manifest) throw new Error(`no release ${releaseId}`);
    return manifest;
  }
  async fetchBlob(hash: string): Promise<AsyncIterable<Uint8Array>> {
    this.blobRequests.push(hash);
    const content = this.blobs.get(hash);
    if (content === undefined) throw new Error(`no blob ${hash}`);
    return chunks(content);
  }
}

const contents = { run: '#!/bin/sh\necho hello\n', readme: 'read me\n', secret: 'password=1\n', frozen: 'frozen\n' };
const entries: ManifestEntry[] = [
  { path: 'bin', type: 'dir', mode: 0o755 },
  file('bin/run', contents.run, 0o755),
  file('README', contents.readme, 0o644),
  { path: 'conf', type: 'dir', mode: 0o750 },
  // The same content as README with another mode: needs its own inode.
  file('conf/copy-of-readme', contents.readme, 0o600),
  file('conf/secret.ini', contents.secret, 0o600),
  { path: 'ro', type: 'dir', mode: 0o555 },
  file('ro/frozen', contents.frozen, 0o444),
  { path: 'latest', type: 'symlink', target: 'bin/run' },
  { path: 'conf/up', type: 'symlink', target: '../README' },
];
const manifest: Manifest = { app: 'shop', version: '1.0.0', entries };
const releaseId = releaseIdOf(manifest);

describe('release stager', () => {
  let dir: string;
  let layout: DeployLayout;
  let cache: BlobCache;
  let source: MemorySource;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lockstep-agent-stager-'));
  });
  after(async () => {
    // Staged trees contain read-only directories, which a plain rm cannot empty as non-root.
    await removeTree(dir);
  });

  async function fresh(name: string, cached: readonly string[]): Promise<void> {
    layout = deployLayout(join(dir, name), '/srv/shop');
    cache = new BlobCache(join(dir, name, 'var/lib/lockstep-agent/blobs'));
    await cache.open();
    for (const content of cached) await cache.put(sha(content), chunks(content));
    const blobs = new Map(Object.values(contents).map((content) => [sha(content), content]));
    source = new MemorySource(new Map([[releaseId, manifest]]), blobs);
  }

  it('builds the tree exactly as the manifest says: contents, modes, symlinks', async () => {
    await fresh('exact', Object.values(contents));
    const result = await stageRelease({ layout, releaseId, source, cache, logger, signal });
    assert.equal(result.kind, 'staged');
    const release = join(layout.releasesDir, releaseId);
    assert.equal(release, join(dir, 'exact/srv/shop/releases', releaseId));
    for (const entry of entries) {
      const path = join(release, entry.path);
      const info = await lstat(path);
      if (entry.type === 'dir') {
        assert.ok(info.isDirectory(), entry.path);
        assert.equal(info.mode & 0o7777, entry.mode, `mode of ${entry.path}`);
      } else if (entry.type === 'file') {
        assert.ok(info.isFile(), entry.path);
        assert.equal(info.mode & 0o7777, entry.mode, `mode of ${entry.path}`);
        assert.equal(sha(await readFile(path, 'utf8')), entry.sha256, `content of ${entry.path}`);
      } else {
        assert.ok(info.isSymbolicLink(), entry.path);
        assert.equal(await readlink(path), entry.target);
      }
    }
    // Nothing else is in the tree.
    const names = (await readdir(release, { recursive: true })).sort();
    assert.deepEqual(names, entries.map((entry) => entry.path).sort());
    // Files are hard links into the cache, not copies.
    assert.ok((await stat(join(release, 'README'))).nlink >= 2);
    assert.equal((await stat(join(release, 'README'))).ino, (await stat(await cache.fileWithMode(sha(contents.readme), 0o644))).ino);
    // No staging dir is left next to the release.
    assert.deepEqual(await readdir(layout.releasesDir), [releaseId]);
    assert.deepEqual(source.blobRequests, []);
  });

  it('fetches only the blobs missing from the cache, and keeps them there', async () => {
    await fresh('missing', [contents.run, contents.readme]);
    const result = await stageRelease({ layout, releaseId, source, cache, logger, signal });
    assert.equal(result.kind, 'staged');
    assert.deepEqual(source.blobRequests.sort(), [sha(contents.secret), sha(contents.frozen)].sort());
    assert.deepEqual(await cache.missing(Object.values(contents).map(sha)), []);
    assert.equal(await readFile(join(layout.releasesDir, releaseId, 'conf/secret.ini'), 'utf8'), contents.secret);
  });

  it('skips a release that is already on disk without asking for its manifest', async () => {
    await fresh('again', Object.values(contents));
    await stageRelease({ layout, releaseId, source, cache, logger, signal });
    const again = await stageRelease({ layout, releaseId, source, cache, logger, signal });
    assert.equal(again.kind, 'already-staged');
    assert.equal(source.manifestRequests.length, 1);
  });

  it('refuses a manifest that is not the release asked for', async () => {
    await fresh('mismatch', Object.values(contents));
    const other: Manifest = { ...manifest, version: '2.0.0' };
    const lying = new MemorySource(new Map([[releaseId, other]]), new Map());
    await assert.rejects(stageRelease({ layout, releaseId, source: lying, cache, logger, signal }), /refusing/);
    assert.deepEqual(await readdir(layout.releasesDir).catch(() => []), []);
  });

  it('refuses a manifest whose paths escape the release', async () => {
    await fresh('escape', Object.values(contents));
    const evil: UntrustedManifest = {
      app: 'shop',
      version: '6.6.6',
      entries: [file('../../../etc/passwd', contents.secret, 0o644), { path: 'out', type: 'symlink', target: '../../x' }],
    };
    const evilId = releaseIdOf(evil as Manifest);
    const evilSource = new MemorySource(new Map([[evilId, evil]]), new Map([[sha(contents.secret), contents.secret]]));
    await assert.rejects(stageRelease({ layout, releaseId: evilId, source: evilSource, cache, logger, signal }), /invalid.*\(and 1 more\)/);
    assert.deepEqual(evilSource.blobRequests, []);
    assert.deepEqual(await readdir(layout.releasesDir).catch(() => []), []);
    await assert.rejects(lstat(join(dir, 'escape/etc/passwd')), { code: 'ENOENT' });
  });

  it("refuses a manifest whose symlink chain leaves the tree (the issue's escape) before fetching anything", async () => {
    await fresh('chain', []);
    const deep = Array.from({ length: 10 }, (_, index) => `d${index + 1}`);
    const evil: UntrustedManifest = {
      app: 'shop',
      version: '6.6.7',
      entries: [
        ...deep.map((_, index): ManifestEntry => ({ path: deep.slice(0, index + 1).join('/'), type: 'dir', mode: 0o755 })),
        { path: `${deep.join('/')}/up`, type: 'symlink', target: Array(10).fill('..').join('/') },
        { path: 'passwd', type: 'symlink', target: `${deep.join('/')}/up/../../etc/passwd` },
        file('README', contents.readme, 0o644),
      ],
    };
    const evilId = releaseIdOf(evil as Manifest);
    const evilSource = new MemorySource(new Map([[evilId, evil]]), new Map([[sha(contents.readme), contents.readme]]));
    await assert.rejects(stageRelease({ layout, releaseId: evilId, source: evilSource, cache, logger, signal }), /invalid: passwd: symlink target ".*" leaves the release tree/);
    assert.deepEqual(evilSource.blobRequests, []);
    assert.deepEqual(await readdir(layout.releasesDir).catch(() => []), []);
  });

  // A process with the agent's privileges swaps a staged directory while the
  // agent waits for a download: for a link to an empty directory outside, and
  // for the real directory moved outside and linked back (same inode).
  for (const shape of ['a link to another directory', 'the directory moved away and linked back'] as const) {
    it(`stops staging when a directory is replaced by ${shape} mid-staging, and writes nothing outside`, async () => {
      const name = shape === 'a link to another directory' ? 'swap-link' : 'swap-moved';
      await fresh(name, []);
      const outside = join(dir, name, 'outside');
      await mkdir(outside);
      let swapped = false;
      const planting = new (class extends MemorySource {
        override async fetchBlob(hash: string): Promise<AsyncIterable<Uint8Array>> {
          if (!swapped) {
            swapped = true;
            const stagingName = (await readdir(layout.releasesDir)).find((entry) => entry.startsWith(STAGING_PREFIX));
            assert.ok(stagingName, 'a staging dir exists while blobs are fetched');
            const conf = join(layout.releasesDir, stagingName, 'conf');
            if (shape === 'a link to another directory') await removeTree(conf);
            else await rename(conf, join(outside, 'conf'));
            await symlink(shape === 'a link to another directory' ? outside : join(outside, 'conf'), conf);
          }
          return super.fetchBlob(hash);
        }
      })(new Map([[releaseId, manifest]]), new Map(Object.values(contents).map((content) => [sha(content), content])));
      // What the swap itself puts outside: for the moved directory, the link staged into it before the swap.
      const swappedOut = shape === 'a link to another directory' ? [] : ['conf', 'conf/up'];

      await assert.rejects(
        stageRelease({ layout, releaseId, source: planting, cache, logger, signal }),
        (error: Error) => {
          assert.match(error.message, /^"conf" in the staging dir \S+ was replaced by a symlink while the release was being staged; something else writes there: find it, then deploy again$/);
          return true;
        },
      );
      assert.ok(swapped);
      assert.deepEqual((await readdir(outside, { recursive: true })).sort(), swappedOut, 'nothing was written outside the staging dir');
      assert.deepEqual(await readdir(layout.releasesDir), [], 'no release and no staging dir is left');
    });
  }

  it('refuses a tree in which a name appeared that staging did not make', async () => {
    await fresh('planted', []);
    let planted = false;
    const planting = new (class extends MemorySource {
      override async fetchBlob(hash: string): Promise<AsyncIterable<Uint8Array>> {
        if (!planted) {
          planted = true;
          const stagingName = (await readdir(layout.releasesDir)).find((entry) => entry.startsWith(STAGING_PREFIX)) ?? '';
          await symlink('/etc/passwd', join(layout.releasesDir, stagingName, 'conf', 'planted'));
        }
        return super.fetchBlob(hash);
      }
    })(new Map([[releaseId, manifest]]), new Map(Object.values(contents).map((content) => [sha(content), content])));
    await assert.rejects(stageRelease({ layout, releaseId, source: planting, cache, logger, signal }), /^LockstepError: "conf\/planted" in the staging dir \S+ appeared while the release was being staged/);
    assert.deepEqual(await readdir(layout.releasesDir), [], 'no release and no staging dir is left');
  });

  it('refuses a blob whose content does not match its hash and keeps nothing of it', async () => {
    await fresh('corrupt', [contents.run, contents.readme, contents.frozen]);
    const blobs = new Map(Object.values(contents).map((content) => [sha(content), content]));
    blobs.set(sha(contents.secret), 'tampered\n');
    const tampering = new MemorySource(new Map([[releaseId, manifest]]), blobs);
    await assert.rejects(stageRelease({ layout, releaseId, source: tampering, cache, logger, signal }), /corrupted in transfer/);
    assert.equal(await cache.has(sha(contents.secret)), false);
    assert.deepEqual(await readdir(layout.releasesDir).catch(() => []), []);
    assert.deepEqual(await readdir(join(cache.root, 'tmp')), []);
  });
});
