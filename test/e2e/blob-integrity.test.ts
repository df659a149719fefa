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
    const created = await fleet.cli(['release', 'create', build, '--version', '1.0.0']);
    assertExit(created, 0, 'release create');
    const id = releaseIdFrom(created.stdout);
    const content = await readFile(join(build, 'VERSION'));
    const hash = sha256(content);

    // The disk rots: same size, one byte different, so only the hash can tell.
    const stored = join(fleet.dataDir, 'blobs', hash.slice(0, 2), hash);
    const rotten = Buffer.from(content);
    rotten[0] = (rotten[0] ?? 0) ^ 0x20;
    await chmod(stored, 0o644);
    await writeFile(stored, rotten);

    const deploy = await fleet.cli(['deploy', id, '--to', 'development']);
    assertExit(deploy, 4, 'deploy with a corrupt blob on the server');
    assert.match(deploy.stderr, new RegExp(`dev-1: the server's copy of blob ${hash} is corrupt; re-upload the release`));
    // Nothing was activated, and the host's cache holds no copy of the wrong bytes.
    assert.equal(await exists(host.path(`${DEPLOY_TO}/current`)), false, 'current was never created');
    assert.equal(await exists(host.path(`${DEPLOY_TO}/releases/${id}`)), false, 'no release tree');
    const cache = join(host.stateDir, 'blobs');
    for (const entry of await readdir(cache, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) assert.notDeepEqual(await readFile(join(entry.parentPath, entry.name)), rotten, `the corrupt bytes are not in the host's cache (${entry.name})`);
    }

    // The server moved the copy aside, logged it as JSON and audited it.
    assert.equal(await exists(stored), false, 'the corrupt copy left the store');
    assert.deepEqual(await readFile(join(fleet.dataDir, 'blobs', 'quarantine', hash)), rotten, 'the corrupt copy is kept in quarantine');
    const missing = await fleet.http('POST', '/api/v1/blobs/missing', { hashes: [hash] });
    assert.deepEqual((missing.json as { missing: string[] }).missing, [hash], 'the store counts the blob as missing');
    const logLine = await until('the server logs the corrupt blob', async () => {
      const lines = (await readFile(join(fleet.dir, 'server.log'), 'utf8')).split('\n').filter((text) => text.includes(hash));
      return lines.map((text) => JSON.parse(text) as { msg?: string; blob?: string; actual?: string }).find((entry) => entry.msg?.includes('corrupt'));
    });
    assert.equal(logLine.actual, sha256(rotten));
    const audit = await until('the corrupt blob is audited', async () => {
      const events = JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as { action: string; target: string }[];
      return events.find((event) => event.action === 'blob.corrupt');
    });
    assert.equal(audit.target, `blob:${hash}`);

    // The same tree again: the release exists, the blob the server lacks is uploaded.
    const again = await fleet.cli(['release', 'create', build, '--version', '1.0.0']);
    assertExit(again, 0, 'release create of the same tree again');
    assert.equal(releaseIdFrom(again.stdout), id);
    assert.match(again.stderr, /already exists: app@1\.0\.0: .*uploaded 1 blobs/);
    assert.deepEqual(await readFile(stored), content, 'the right bytes are back in the store');

    assertExit(await fleet.cli(['deploy', id, '--to', 'development']), 0, 'deploy after the repair');
    await assertHostRuns(host, await showRelease(fleet, id));
  });
});
