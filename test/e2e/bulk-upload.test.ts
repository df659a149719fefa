/**
 * `lockstep release create` of a tree with many files goes through an upload
 * session and framed batches (nothing else would carry 1,500 distinct blobs
 * here: the server's per-token quota of 1 MiB refuses single uploads past it),
 * the release deploys, `lockstep gc --dry-run` lists exactly the one
 * unreferenced blob, `lockstep gc` removes it, and a release still deploys afterwards.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { assertExit, assertHostRuns, releaseIdFrom, showRelease } from './host-tree.js';

const FILES = 1500;

describe('bulk release upload and gc', () => {
  let fleet: Fleet;
  let agent: AgentHandle;

  before(async () => {
    fleet = await startFleet({ serverArgs: ['--blob-quota-mb', '1', '--gc-grace', '0s'] });
    await fleet.applyConfig(testConfig({ hostTimeout: '120s' }));
    agent = await fleet.addAgent('dev-1', 'development');
  });
  after(async () => fleet.stop());

  it('creates a release of many files through an upload session, deploys it, and gc removes only the unreferenced blob', async () => {
    const dir = join(fleet.dir, 'build-many');
    await mkdir(join(dir, 'assets'), { recursive: true });
    // 1,500 distinct files of 1 KiB to 3 KiB: 3 MiB in all, three times the quota a blob outside a session may use.
    for (let index = 0; index < FILES; index++) await writeFile(join(dir, 'assets', `asset-${index}.txt`), `asset ${index}\n`.padEnd(1024 * (1 + (index % 3)), '.'));
    const created = await fleet.cli(['release', 'create', dir, '--version', 'many-1', '--json']);
    assertExit(created, 0, 'release create of many files');
    const summary = JSON.parse(created.stdout) as { id: string; files: number; uploaded: { blobs: number; bytes: number } };
    assert.equal(summary.files, FILES);
    assert.equal(summary.uploaded.blobs, FILES, 'every distinct blob was uploaded, through the session');

    // Nothing left to send the second time: the session finds every blob present.
    const again = JSON.parse(await fleet.ok(['release', 'create', dir, '--version', 'many-1', '--json'])) as { id: string; uploaded: { blobs: number } };
    assert.equal(again.id, summary.id);
    assert.equal(again.uploaded.blobs, 0);

    assertExit(await fleet.cli(['deploy', summary.id, '--to', 'development']), 0, 'deploy of the bulk-uploaded release');
    await assertHostRuns(agent, await showRelease(fleet, summary.id));

    // One blob uploaded on its own (within the token's quota) that no release references.
    const stray = Buffer.from('uploaded, never released\n');
    const hash = createHash('sha256').update(stray).digest('hex');
    const put = await fleet.fetch(`${fleet.url}/api/v1/blobs/${hash}`, { method: 'PUT', headers: { authorization: `Bearer ${fleet.token}`, 'content-type': 'application/octet-stream' }, body: stray });
    assert.equal(put.status, 200, await put.text());

    const listed = JSON.parse(await fleet.ok(['gc', '--dry-run', '--json'])) as { dryRun: boolean; count: number; blobs: { hash: string }[] };
    assert.equal(listed.dryRun, true);
    assert.deepEqual(listed.blobs.map((blob) => blob.hash), [hash], 'the dry run lists exactly the unreferenced blob');
    const human = await fleet.cli(['gc', '--dry-run']);
    assertExit(human, 0, 'gc --dry-run');
    assert.match(human.stdout, new RegExp(`^${hash}  `));
    assert.match(human.stderr, /^would remove 1 unreferenced blob \(/);

    const removed = JSON.parse(await fleet.ok(['gc', '--json'])) as { count: number; blobs: { hash: string }[] };
    assert.deepEqual(removed.blobs.map((blob) => blob.hash), [hash]);
    const after = JSON.parse(await fleet.ok(['gc', '--dry-run', '--json'])) as { count: number };
    assert.equal(after.count, 0, 'nothing unreferenced is left');

    // A new release sharing most blobs with the first still uploads and deploys.
    await writeApp(dir, 'second');
    const next = releaseIdFrom(await fleet.ok(['release', 'create', dir, '--version', 'many-2']));
    assertExit(await fleet.cli(['deploy', next, '--to', 'development']), 0, 'deploy after gc');
    await assertHostRuns(agent, await showRelease(fleet, next));
  });
});
