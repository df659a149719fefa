/**
 * `lockstep release create` uploads batches of blobs through the one bounded
 * pool: when a batch fails, no further batch is sent, and the command fails
 * only once the batches under way have finished (nothing keeps uploading behind its error).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { uploadRelease } from '../../src/cli/release-upload.js';
import type { LockstepClient } from '../../src/client/lockstep-client.js';
import { withTempDir } from '../helpers/tmp.js';
import { until } from '../helpers/until.js';

const turns = async (count: number): Promise<void> => {
  for (let turn = 0; turn < count; turn++) await new Promise((resolve) => setImmediate(resolve));
};

describe('release upload', () => {
  it('a failed batch stops the upload: nothing is sent after it, and the error waits for the batches under way', async () => {
    await withTempDir(async (dir) => {
      for (let index = 0; index < 12; index++) await writeFile(join(dir, `file-${index}.txt`), `content ${index}\n`);
      const started: string[] = [];
      const releases: (() => void)[] = [];
      let created = false;
      // The server's side of an upload, failing the first batch and holding the others until the test lets them finish.
      const server = {
        openUpload: async (blobs: readonly { hash: string; size: number }[]) => ({ id: 1, missing: blobs.map((blob) => blob.hash), missingBytes: 0, expiresAt: '' }),
        uploadBatch: async (_session: number, frames: AsyncIterable<Uint8Array>) => {
          let batch = '';
          for await (const frame of frames) batch += Buffer.from(frame).toString('latin1');
          started.push(batch);
          if (started.length === 1) throw new Error('upload refused: disk full');
          await new Promise<void>((resolve) => releases.push(resolve));
        },
        createRelease: async () => {
          created = true;
          throw new Error('not reached');
        },
      };
      let settled = false;
      const upload = uploadRelease(server as unknown as LockstepClient, dir, '1.0.0', undefined, undefined, { streams: 4, bytes: 1024, blobs: 1 }).finally(() => (settled = true));
      await until('four batches at once', async () => (started.length >= 4 ? true : undefined), 10_000);
      await turns(20);
      assert.equal(started.length, 4, 'four batches at once, the first of them failed');
      assert.equal(settled, false, 'the command waits for the three batches under way');
      for (const release of releases.splice(0)) release();
      await assert.rejects(upload, /disk full/);
      await turns(20);
      assert.equal(started.length, 4, 'no batch is sent after the failure');
      assert.equal(created, false);
    });
  });
});
