/**
 * The blob store's framed batches on a real directory: small and large blobs
 * (one streamed through several chunks) arrive whole under their hashes, a
 * frame split across chunks at any byte is read the same, and where no
 * `sync` command can be run the store falls back to an fsync per file.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { frameHeader } from '../../src/content/upload-frames.js';
import { BlobStore } from '../../src/content/blob-store.js';
import { withTempDir } from '../helpers/tmp.js';

const sha = (content: Buffer): string => createHash('sha256').update(content).digest('hex');

/** `body` cut into chunks of `size` bytes, as a socket might deliver it. */
async function* chunked(body: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < body.length; offset += size) yield body.subarray(offset, offset + size);
}

describe('blob store: framed batches', () => {
  for (const [name, path] of [
    ['with sync --file-system', process.env.PATH ?? ''],
    ['without a sync command (fsync per file)', ''],
  ] as const) {
    it(`stores every blob of a batch whole, however the stream is cut (${name})`, async () => {
      const savedPath = process.env.PATH;
      process.env.PATH = path;
      try {
        await withTempDir(async (dir) => {
          const blobs = [Buffer.alloc(0), Buffer.from('small\n'), randomBytes(1024 * 1024 + 5), randomBytes(4096)];
          const body = Buffer.concat(blobs.flatMap((blob) => [frameHeader(sha(blob), blob.length), blob]));
          for (const cut of [13, 40, 65_536]) {
            const root = join(dir, `store-${cut}`);
            const store = new BlobStore(root);
            await store.open();
            const stored = await store.putFrames(chunked(body, cut), () => undefined);
            assert.deepEqual(stored, { blobs: 4, bytes: blobs.reduce((sum, blob) => sum + blob.length, 0), created: 4 });
            for (const blob of blobs) assert.ok((await readFile(store.pathOf(sha(blob)))).equals(blob), `blob ${sha(blob).slice(0, 12)} stored whole (chunks of ${cut})`);
            assert.deepEqual(await readdir(join(root, 'tmp')), [], 'no temporary file is left');
          }
        });
      } finally {
        process.env.PATH = savedPath;
      }
    });
  }
});
