/**
 * `lockstep release create` uploads blobs through the one bounded pool: when
 * an upload fails, no further blob is sent, and the command fails only once
 * the uploads under way have finished (nothing keeps uploading behind its error).
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
  it('a failed blob upload stops the upload: nothing is sent after it, and the error waits for the uploads under way', async () => {
    await withTempDir(async (dir) => {
      for (let index = 0; index < 12; index++) await writeFile(join(dir, `file-${index}.txt`), `content ${index}\n`);
      const started: string[] = [];
      const releases: (() => void)[] = [];
      let created = false;
      // The server's side of an upload, failing the first blob and holding the others until the test lets them finish.
      const server = {
        missingBlobs: async (hashes: readonly string[]) => ({ missing: [...hashes] }),
        uploadBlob: async (hash: string) => {
          started.push(hash);
          if (started.length === 1) throw new Error('upload refused: disk full');
          await new Promise<void>((resolve) => releases.push(resolve));
        },
        createRelease: async () => {
          created = true;
          throw new Error('not reached');
        },
      };
      let settled = false;
      const upload = uploadRelease(server as unknown as LockstepClient, dir, '1.0.0', undefined).finally(() => (settled = true));
      await until('four uploads at once', async () => (started.length >= 4 ? true : undefined), 10_000);
      await turns(20);
      assert.equal(started.length, 4, 'four uploads at once, the first of them failed');
      assert.equal(settled, false, 'the command waits for the three uploads under way');
      for (const release of releases.splice(0)) release();
      await assert.rejects(upload, /disk full/);
      await turns(20);
      assert.equal(started.length, 4, 'no blob is sent after the failure');
      assert.equal(created, false);
    });
  });
});
