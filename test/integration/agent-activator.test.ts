/** Activation, variables file, pruning and start-up cleanup against real directories. */
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { activateRelease, readCurrentReleaseId } from '../../src/agent/release/activator.js';
import { deployLayout, hostPath, type DeployLayout } from '../../src/agent/release/deploy-layout.js';
import { removeLeftovers } from '../../src/agent/release/leftover-cleaner.js';
import { pruneReleases } from '../../src/agent/release/release-pruner.js';
import { removeTree } from '../../src/content/remove-tree.js';

const ids = ['a', 'b', 'c', 'd', 'e'].map((letter) => letter.repeat(64));
const [A, B, C, D, E] = ids as [string, string, string, string, string];

let root: string;
let layout: DeployLayout;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'lockstep-agent-activator-'));
  layout = deployLayout(root, '/srv/shop');
});
afterEach(async () => {
  await removeTree(root);
});

/** Makes a staged-looking release dir (read-only, like real ones) activated `ageSeconds` ago. */
async function release(id: string, ageSeconds = 0): Promise<void> {
  const dir = join(layout.releasesDir, id);
  await mkdir(join(dir, 'sub'), { recursive: true });
  await writeFile(join(dir, 'sub', 'file'), id);
  await chmod(join(dir, 'sub'), 0o555);
  const when = new Date(Date.now() - ageSeconds * 1000);
  await utimes(dir, when, when);
}

async function releasesOnDisk(): Promise<string[]> {
  return (await readdir(layout.releasesDir)).sort();
}

describe('activation', () => {
  it('points current at the release with a relative link and reports what was there before', async () => {
    await release(A);
    await release(B);
    assert.equal(await readCurrentReleaseId(layout), null);

    assert.deepEqual(await activateRelease(layout, A, {}), { previousReleaseId: null });
    assert.equal(await readlink(layout.currentLink), `releases/${A}`);
    assert.equal(await readFile(join(layout.currentLink, 'sub/file'), 'utf8'), A);

    assert.deepEqual(await activateRelease(layout, B, {}), { previousReleaseId: A });
    assert.equal(await readlink(layout.currentLink), `releases/${B}`);
    assert.equal(await readCurrentReleaseId(layout), B);
    // No temporary link is left behind.
    assert.deepEqual((await readdir(layout.deployTo)).sort(), ['current', 'releases', 'shared']);
  });

  it('activating the active release again changes nothing', async () => {
    await release(A);
    await activateRelease(layout, A, { X: '1' });
    assert.deepEqual(await activateRelease(layout, A, { X: '1' }), { previousReleaseId: A });
    assert.equal(await readCurrentReleaseId(layout), A);
  });

  it('writes the variables to shared/lockstep.env sorted by key, mode 0640', async () => {
    await release(A);
    await activateRelease(layout, A, { PORT: '8080', DATABASE_URL: 'postgres://db/shop?ssl=true', A_FLAG: '' });
    const envFile = join(layout.sharedDir, 'lockstep.env');
    assert.equal(await readFile(envFile, 'utf8'), 'A_FLAG=\nDATABASE_URL=postgres://db/shop?ssl=true\nPORT=8080\n');
    assert.equal((await lstat(envFile)).mode & 0o777, 0o640);
    await activateRelease(layout, A, { PORT: '9090' });
    assert.equal(await readFile(envFile, 'utf8'), 'PORT=9090\n');
    assert.deepEqual(await readdir(layout.sharedDir), ['lockstep.env']);
  });

  it('refuses a release that is not staged, or variables the file cannot hold, and leaves current alone', async () => {
    await release(A);
    await activateRelease(layout, A, {});
    await assert.rejects(activateRelease(layout, B, {}), /not staged/);
    await release(B);
    await assert.rejects(activateRelease(layout, B, { BAD: 'two\nlines' }), /line break/);
    await assert.rejects(activateRelease(layout, B, { 'NOT-A-NAME': 'x' }), /not a valid environment variable name/);
    assert.equal(await readCurrentReleaseId(layout), A);
  });

  it('touches the activated release so it counts as the most recent', async () => {
    await release(A, 3600);
    await activateRelease(layout, A, {});
    const age = Date.now() - (await lstat(join(layout.releasesDir, A))).mtimeMs;
    assert.ok(age < 60_000, `mtime is ${age} ms old`);
  });
});

describe('pruning', () => {
  it('keeps the most recently activated releases', async () => {
    await release(A, 500);
    await release(B, 400);
    await release(C, 300);
    await release(D, 200);
    await release(E, 100);
    await activateRelease(layout, D, {});
    await activateRelease(layout, E, {});
    const removed = await pruneReleases(layout, { keep: 3, protect: [E, D] });
    assert.deepEqual(removed.sort(), [A, B]);
    assert.deepEqual(await releasesOnDisk(), [C, D, E]);
  });

  it('never deletes the active release or the one active before it, even when they are old', async () => {
    await release(A, 500);
    await release(B, 400);
    await release(C, 300);
    await release(D, 200);
    await release(E, 100);
    // A rollback to A, the oldest dir, from B; then keep only one.
    await activateRelease(layout, B, {});
    const { previousReleaseId } = await activateRelease(layout, A, {});
    assert.equal(previousReleaseId, B);
    await utimes(join(layout.releasesDir, B), new Date(0), new Date(0));
    await pruneReleases(layout, { keep: 1, protect: [A, previousReleaseId] });
    assert.deepEqual(await releasesOnDisk(), [A, B]);
    assert.equal(await readCurrentReleaseId(layout), A);
  });

  it('leaves other things in releases/ alone', async () => {
    await release(A, 100);
    await release(B, 200);
    await writeFile(join(layout.releasesDir, 'README'), 'hands off');
    await pruneReleases(layout, { keep: 1, protect: [A, null] });
    assert.deepEqual(await releasesOnDisk(), ['README', A]);
  });
});

describe('start-up cleanup', () => {
  it('removes staging dirs and temporary current links, and nothing else', async () => {
    await release(A);
    await activateRelease(layout, A, {});
    const staging = join(layout.releasesDir, `.staging-${B}-0123456789ab`);
    await mkdir(join(staging, 'locked'), { recursive: true });
    await writeFile(join(staging, 'locked', 'half-written'), 'x');
    await chmod(join(staging, 'locked'), 0o500);
    await symlink(`releases/${B}`, join(layout.deployTo, 'current.tmp-0123456789ab'));
    // Killed while writing the variables: a half-written copy that may hold secrets.
    await writeFile(join(layout.sharedDir, '.lockstep.env.tmp-0123456789ab'), 'SECRET=hal');
    await writeFile(join(layout.sharedDir, 'uploads.db'), 'kept');

    const removed = await removeLeftovers(layout);
    assert.equal(removed.length, 3);
    assert.deepEqual(await releasesOnDisk(), [A]);
    assert.deepEqual((await readdir(layout.deployTo)).sort(), ['current', 'releases', 'shared']);
    assert.deepEqual((await readdir(layout.sharedDir)).sort(), ['lockstep.env', 'uploads.db']);
    assert.equal(await readCurrentReleaseId(layout), A);
  });

  it('is a no-op when deploy_to does not exist yet', async () => {
    assert.deepEqual(await removeLeftovers(layout), []);
  });
});

describe('host paths', () => {
  it('keeps every host path under the root', () => {
    assert.equal(hostPath('/sandbox', '/srv/shop'), '/sandbox/srv/shop');
    assert.throws(() => hostPath('/sandbox', '/srv/../../etc'), /"\.\."/);
    assert.throws(() => hostPath('/sandbox', 'srv/shop'), /not an absolute path/);
  });
});
