/** DATA_DIR/secrets.key: created only when first needed, 32 bytes at 0600, one key however many ask at once. */
import assert from 'node:assert/strict';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SecretKeyFile } from '../../src/server/secrets/secret-key.js';
import { makeTempDir } from '../helpers/tmp.js';

describe('secrets key file', () => {
  it('is created at first need with mode 0600, and read back as the same key', async () => {
    const dir = await makeTempDir('lockstep-secret-key-');
    try {
      const file = join(dir.path, 'secrets.key');
      const keyFile = new SecretKeyFile(file);
      assert.equal(await keyFile.existing(), undefined, 'nothing is created to list or read');
      assert.deepEqual(await readdir(dir.path), []);
      const key = await keyFile.key();
      assert.equal(key.length, 32);
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.deepEqual(await readdir(dir.path), ['secrets.key'], 'no temporary file is left');
      assert.deepEqual(await new SecretKeyFile(file).existing(), key);
      assert.deepEqual(await new SecretKeyFile(file).key(), key);
    } finally {
      await dir.remove();
    }
  });

  it('many first uses at once, from separate holders, end with one key for all (repeated 5 times)', async () => {
    for (let round = 0; round < 5; round++) {
      const dir = await makeTempDir('lockstep-secret-key-');
      try {
        const file = join(dir.path, 'secrets.key');
        const keys = await Promise.all(Array.from({ length: 8 }, () => new SecretKeyFile(file).key()));
        for (const key of keys) assert.deepEqual(key, keys[0]);
        assert.deepEqual(await readdir(dir.path), ['secrets.key']);
      } finally {
        await dir.remove();
      }
    }
  });

  it('a key file of the wrong size is an error naming the file, never replaced', async () => {
    const dir = await makeTempDir('lockstep-secret-key-');
    try {
      const file = join(dir.path, 'secrets.key');
      await writeFile(file, 'short', { mode: 0o600 });
      await assert.rejects(new SecretKeyFile(file).key(), (error: Error) => error.message.includes(file) && /not a 32-byte secrets key/.test(error.message));
    } finally {
      await dir.remove();
    }
  });
});
