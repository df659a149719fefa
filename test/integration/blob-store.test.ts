/** The server's blob store on a real directory: what it serves is checked against the hash as it streams. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { BlobStore, type CorruptBlob } from '../../src/content/blob-store.js';
import { LockstepError } from '../../src/core/errors.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const sha = (content: Buffer) => createHash('sha256').update(content).digest('hex');

/** Reads a stream to its end; returns what arrived and the error it ended with, if any. */
async function drain(stream: Readable): Promise<{ received: number; error: unknown }> {
  let received = 0;
  try {
    for await (const chunk of stream) received += (chunk as Buffer).length;
    return { received, error: undefined };
  } catch (error) {
    return { received, error };
  }
}

describe('blob store', () => {
  let temp: TempDir;
  let store: BlobStore;
  // Several read chunks, so "held back" is about the last of many.
  const content = Buffer.alloc(3 * (1 << 20) + 17, 'a');
  const hash = sha(content);

  before(async () => {
    temp = await makeTempDir('lockstep-blob-store-');
    store = new BlobStore(join(temp.path, 'blobs'));
    await store.open();
  });
  after(async () => {
    await temp.remove();
  });

  it('serves an intact blob whole', async () => {
    await store.put(hash, Readable.from([content]));
    const blob = await store.openVerified(hash, () => assert.fail('an intact blob is not corrupt'));
    assert.equal(blob?.size, content.length);
    assert.deepEqual(await drain(blob!.stream), { received: content.length, error: undefined });
  });

  it('never delivers a corrupt copy whole: the stream fails before its last bytes and the copy is quarantined', async () => {
    const stored = store.pathOf(hash);
    const rotten = Buffer.from(content);
    rotten[rotten.length - 1] = 0x62;
    await chmod(stored, 0o644);
    await writeFile(stored, rotten);

    const found: CorruptBlob[] = [];
    const blob = await store.openVerified(hash, (corrupt) => found.push(corrupt));
    const { received, error } = await drain(blob!.stream);
    assert.ok(received < content.length, `received ${received} of ${content.length} bytes`);
    assert.ok(error instanceof LockstepError && error.kind === 'conflict', String(error));
    assert.equal(error.message, `the server's copy of blob ${hash} is corrupt; re-upload the release`);
    assert.deepEqual(found, [{ hash, actual: sha(rotten), size: rotten.length, quarantinedAt: join(temp.path, 'blobs', 'quarantine', hash) }]);

    assert.equal(await store.openVerified(hash, () => undefined), undefined, 'the copy left the store');
    assert.equal(await store.isQuarantined(hash), true);
    assert.deepEqual(await store.missing([hash]), [hash]);
    assert.deepEqual(await readFile(join(temp.path, 'blobs', 'quarantine', hash)), rotten);
  });

  it('an upload of the right bytes replaces a stored copy, even one that rotted unnoticed', async () => {
    assert.deepEqual(await store.put(hash, Readable.from([content])), { size: content.length, created: true });
    const stored = store.pathOf(hash);
    await chmod(stored, 0o644);
    await writeFile(stored, 'rotten');
    assert.deepEqual(await store.put(hash, Readable.from([content])), { size: content.length, created: false });
    assert.deepEqual(await readFile(stored), content);
  });
});
