/**
 * A corrupt blob in the server's store, as a rotting disk or a hand edit
 * makes it: the server checks every blob's hash as it serves it, never lets
 * an agent receive the wrong bytes whole, moves the copy to quarantine and
 * says so; the deployment fails with "the server's copy of blob … is
 * corrupt; re-upload the release", and `lockstep release create` of the same
 * tree uploads the blob again, after which the deployment succeeds.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, chmod, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { until } from '../helpers/until.js';
import { assertExit, assertHostRuns, DEPLOY_TO, releaseIdFrom, showRelease } from './host-tree.js';

function sha256(content: string | Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

describe('blob integrity: the server verifies what it serves', () => {
  let fleet: Fleet;
  let host: AgentHandle;

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig());
    host = await fleet.addAgent('dev-1', 'development');
  });

  after(async () => {
    await fleet?.stop();
  });

  it('a corrupt stored blob fails the step with a clear message, and release create of the same tree repairs it', async () => {
    const build = await writeApp(join(fleet.dir, 'build'), 'integrity');
    // A small blob (found corrupt before its first byte is sent: a plain 409)
    // and one of several MiB (found at its end, after the headers: the
    // transfer is cut short, and the agent's retry gets the 409).
    await writeFile(join(build, 'public/big.bin'), Buffer.alloc(3 * (1 << 20) + 5, 'b'));
    const created = await fleet.cli(['release', 'create', build, '--version', '1.0.0']);
    assertExit(created, 0, 'release create');
    const id = releaseIdFrom(created.stdout);
    const corrupted = await Promise.all(
      ['VERSION', 'public/big.bin'].map(async (path) => {
        const content = await readFile(join(build, path));
        const hash = sha256(content);
        // The disk rots: same size, the last byte different, so only the hash can tell.
        const stored = join(fleet.dataDir, 'blobs', hash.slice(0, 2), hash);
        const rotten = Buffer.from(content);
        rotten[rotten.length - 1] = (rotten[rotten.length - 1] ?? 0) ^ 0x20;
        await chmod(stored, 0o644);
        await writeFile(stored, rotten);
        return { path, content, hash, stored, rotten };
      }),
    );

    const deploy = await fleet.cli(['deploy', id, '--to', 'development']);
    assertExit(deploy, 4, 'deploy with corrupt blobs on the server');
    assert.match(deploy.stderr, new RegExp(`dev-1: the server's copy of blob (${corrupted.map((blob) => blob.hash).join('|')}) is corrupt; re-upload the release`));
    // Nothing was activated, and the host's cache holds no copy of the wrong bytes.
    assert.equal(await exists(host.path(`${DEPLOY_TO}/current`)), false, 'current was never created');
    assert.equal(await exists(host.path(`${DEPLOY_TO}/releases/${id}`)), false, 'no release tree');
    const cache = join(host.stateDir, 'blobs');
    const rottenHashes = new Set(corrupted.map((blob) => sha256(blob.rotten)));
    for (const entry of await readdir(cache, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) assert.ok(!rottenHashes.has(sha256(await readFile(join(entry.parentPath, entry.name)))), `the corrupt bytes are not in the host's cache (${entry.name})`);
    }

    // Each blob the agent asked for was checked; those found corrupt were moved aside, logged as JSON and audited.
    const audited = await until('the corrupt blobs are audited', async () => {
      const events = (JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as { action: string; target: string }[]).filter((event) => event.action === 'blob.corrupt');
      return events.length > 0 ? events : undefined;
    });
    const found = corrupted.filter((blob) => audited.some((event) => event.target === `blob:${blob.hash}`));
    assert.ok(found.length > 0);
    for (const blob of found) {
      assert.equal(await exists(blob.stored), false, `the corrupt copy of ${blob.path} left the store`);
      assert.deepEqual(await readFile(join(fleet.dataDir, 'blobs', 'quarantine', blob.hash)), blob.rotten, `the corrupt copy of ${blob.path} is kept in quarantine`);
      const missing = await fleet.http('POST', '/api/v1/blobs/missing', { hashes: [blob.hash] });
      assert.deepEqual((missing.json as { missing: string[] }).missing, [blob.hash], `the store counts ${blob.path} as missing`);
      const logLine = await until(`the server logs the corrupt ${blob.path}`, async () => {
        const lines = (await readFile(join(fleet.dir, 'server.log'), 'utf8')).split('\n').filter((text) => text.includes(blob.hash));
        return lines.map((text) => JSON.parse(text) as { level?: number; msg?: string; actual?: string }).find((entry) => entry.msg?.startsWith('stored blob is corrupt'));
      });
      assert.equal(logLine.actual, sha256(blob.rotten));
      assert.equal(logLine.level, 50, 'logged as an error');
    }

    // The same tree again: the release exists, the blobs the server lacks are uploaded.
    const again = await fleet.cli(['release', 'create', build, '--version', '1.0.0']);
    assertExit(again, 0, 'release create of the same tree again');
    assert.equal(releaseIdFrom(again.stdout), id);
    assert.match(again.stderr, new RegExp(`already exists: app@1\\.0\\.0: .*uploaded ${found.length} blobs`));
    for (const blob of found) assert.deepEqual(await readFile(blob.stored), blob.content, `the right bytes of ${blob.path} are back in the store`);
    // A corrupt copy no agent fetched yet is still in place; the deploy below finds it and fails the same way.
    const unfound = corrupted.filter((blob) => !found.includes(blob));
    if (unfound.length > 0) {
      assertExit(await fleet.cli(['deploy', id, '--to', 'development']), 4, 'deploy finding the other corrupt blob');
      assertExit(await fleet.cli(['release', 'create', build, '--version', '1.0.0']), 0, 'release create again');
    }

    assertExit(await fleet.cli(['deploy', id, '--to', 'development']), 0, 'deploy after the repair');
    await assertHostRuns(host, await showRelease(fleet, id));
  });
});
