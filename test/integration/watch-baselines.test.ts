/**
 * The keeper of the watched baselines on a real state dir and blob cache: a
 * first baseline, a replacement at some paths (accept, Lockstep's own write)
 * and forgetting a watch path are persisted at once and survive a reload;
 * the content of what enters a baseline is copied into the cache for revert.
 * A stored baseline that cannot be read is an error, never "no baseline yet".
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { BlobCache } from '../../src/content/blob-cache.js';
import type { SnapshotEntry } from '../../src/core/drift.js';
import { DriftStateDir } from '../../src/agent/drift/drift-state.js';
import { WatchBaselines } from '../../src/agent/drift/watch-baselines.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const logger = pino({ level: 'silent' });
const sha = (content: string): string => createHash('sha256').update(content).digest('hex');
const file = (path: string, content: string): SnapshotEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: Buffer.byteLength(content), sha256: sha(content) });
const dir = (path: string): SnapshotEntry => ({ path, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0 });
const spec = { path: '/etc/shop', include: [], exclude: [] };

describe('watched baselines', () => {
  let temp: TempDir;
  let state: DriftStateDir;
  let cache: BlobCache;
  const root = (): string => join(temp.path, 'root/etc');

  async function reloaded(): Promise<WatchBaselines> {
    const baselines = new WatchBaselines(state, cache, logger);
    await baselines.load();
    return baselines;
  }

  beforeEach(async () => {
    temp = await makeTempDir('lockstep-watch-baselines-');
    state = new DriftStateDir(join(temp.path, 'state/drift'));
    await state.open();
    cache = new BlobCache(join(temp.path, 'state/blobs'));
    await cache.open();
    await mkdir(join(root(), 'shop'), { recursive: true });
    await writeFile(join(root(), 'shop/a.conf'), 'a=1\n');
    await writeFile(join(root(), 'shop/b.conf'), 'b=1\n');
  });

  afterEach(async () => {
    await temp.remove();
  });

  it('keeps the first baseline, a replacement at some paths and a forgotten watch path across a reload, with content copies', async () => {
    const baselines = await reloaded();
    await baselines.takeFirst(spec, root(), [dir('shop'), file('shop/a.conf', 'a=1\n'), file('shop/b.conf', 'b=1\n')]);
    assert.equal(await cache.has(sha('a=1\n')), true, 'the content of a first baseline is kept for revert');

    await writeFile(join(root(), 'shop/a.conf'), 'a=2\n');
    await baselines.replace(spec.path, root(), new Set(['shop/a.conf', 'shop/gone.conf']), [file('shop/a.conf', 'a=2\n'), file('shop/b.conf', 'not covered\n')], 'accept');
    const after = (await reloaded()).get(spec);
    assert.deepEqual(
      after?.entries.map((entry) => [entry.path, entry.sha256]),
      [
        ['shop', undefined],
        ['shop/a.conf', sha('a=2\n')],
        ['shop/b.conf', sha('b=1\n')],
      ],
      'only the replaced paths change',
    );
    assert.equal(await cache.has(sha('a=2\n')), true);
    assert.deepEqual([...(await reloaded()).contentHashes()].sort(), [sha('a=2\n'), sha('b=1\n')].sort());

    assert.equal((await reloaded()).get({ ...spec, exclude: ['*.tmp'] }), undefined, 'a baseline taken with other globs is not this one');
    await baselines.retain(new Set());
    assert.equal((await reloaded()).get(spec), undefined);
  });

  it('refuses a baseline file it cannot read instead of starting without baselines (which would absorb drift), and takes a torn one as absent', async () => {
    await (await reloaded()).takeFirst(spec, root(), [dir('shop'), file('shop/a.conf', 'a=1\n')]);
    const stored = join(temp.path, 'state/drift/watch-baseline.json');
    // An I/O error that even root gets: the file is a directory. Permission errors take the same path.
    await rm(stored);
    await mkdir(stored);
    await assert.rejects(reloaded(), { code: 'EISDIR' });
    await rm(stored, { recursive: true });
    await writeFile(stored, '{"format":1,"paths":{"/etc/sh');
    assert.equal((await reloaded()).get(spec), undefined, 'a torn file (a crash mid-write of an older version) counts as no baseline');
  });
});
