/**
 * The agent's blob cache on a real directory: pruning keeps what a release
 * tree on disk links (in any mode) and what the caller protects, and removes
 * the rest with all its mode variants.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { link, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { BlobCache } from '../../src/content/blob-cache.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const sha = (content: string): string => createHash('sha256').update(content).digest('hex');

async function* chunks(content: string): AsyncIterable<Uint8Array> {
  yield Buffer.from(content);
}

describe('blob cache prune', () => {
  let temp: TempDir;
  let cache: BlobCache;

  beforeEach(async () => {
    temp = await makeTempDir('lockstep-blob-cache-');
    cache = new BlobCache(join(temp.path, 'blobs'));
    await cache.open();
  });
  afterEach(async () => {
    await temp.remove();
  });

  /** Every file of the cache (blobs and variants), as `<hash prefix>[.mode]`. */
  async function cached(): Promise<string[]> {
    const names: string[] = [];
    for (const shard of (await readdir(cache.root)).filter((name) => /^[0-9a-f]{2}$/.test(name))) {
      for (const name of await readdir(join(cache.root, shard))) names.push(`${name.slice(0, 8)}${name.slice(64)}`);
    }
    return names.sort();
  }

  it('keeps content a release tree links (in any mode) or the caller protects, and removes the rest with its variants', async () => {
    const linked = 'in the release on disk';
    const protectedContent = 'a watched file baseline copy';
    const orphan = 'only in a pruned release';
    for (const content of [linked, protectedContent, orphan]) await cache.put(sha(content), chunks(content));
    // The release links the 0644 variant of `linked`; the orphan's variant was linked by a release since removed.
    await mkdir(join(temp.path, 'release'));
    await link(await cache.fileWithMode(sha(linked), 0o644), join(temp.path, 'release', 'index.html'));
    await cache.fileWithMode(sha(orphan), 0o755);

    const result = await cache.prune((hash) => hash === sha(protectedContent));

    assert.deepEqual(result, { removedFiles: 2, removedBytes: 2 * Buffer.byteLength(orphan) });
    assert.deepEqual(await cached(), [`${sha(linked).slice(0, 8)}`, `${sha(linked).slice(0, 8)}.644`, `${sha(protectedContent).slice(0, 8)}`].sort());
    assert.equal(await cache.has(sha(orphan)), false);
    assert.equal(await cache.has(sha(linked)), true, 'the blob stays with its linked variant, so other modes need no fetch');
  });

  it('stops when its signal aborts', async () => {
    await cache.put(sha('x'), chunks('x'));
    const controller = new AbortController();
    controller.abort(new DOMException('a deployment started', 'AbortError'));
    await assert.rejects(cache.prune(() => false, controller.signal), { name: 'AbortError' });
    assert.equal(await cache.has(sha('x')), true);
  });
});
