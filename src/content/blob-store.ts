/**
 * The server's content-addressed blob store: one file per SHA-256 under
 * DATA_DIR/blobs/<first two hex>/<hash>. Writes go to a temporary file that is
 * hashed while it streams and renamed into place only when the hash matches.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LockstepError } from '../core/errors.js';

const HEX64 = /^[0-9a-f]{64}$/;

/** A filesystem blob store rooted at one directory. */
export class BlobStore {
  private readonly tmpDir: string;

  constructor(private readonly root: string) {
    this.tmpDir = join(root, 'tmp');
  }

  /** Creates the directories and removes temporary files left by a crash. */
  async open(): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

  /** Path of a blob (whether or not it exists). */
  pathOf(hash: string): string {
    if (!HEX64.test(hash)) throw new LockstepError('bad-input', `"${hash}" is not a SHA-256 hex digest`);
    return join(this.root, hash.slice(0, 2), hash);
  }

  /** Size of a stored blob, or undefined when absent. */
  async sizeOf(hash: string): Promise<number | undefined> {
    try {
      return (await stat(this.pathOf(hash))).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** The hashes among `hashes` that the store lacks. */
  async missing(hashes: readonly string[]): Promise<string[]> {
    const result: string[] = [];
    for (const hash of new Set(hashes)) if ((await this.sizeOf(hash)) === undefined) result.push(hash);
    return result;
  }

  /** Stores a stream whose SHA-256 must equal `hash`; nothing is kept when it does not. */
  async put(hash: string, content: Readable): Promise<{ size: number; created: boolean }> {
    const finalPath = this.pathOf(hash);
    const tmpPath = join(this.tmpDir, `${hash}.${randomBytes(6).toString('hex')}`);
    const hasher = createHash('sha256');
    let size = 0;
    try {
      await pipeline(
        content,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            hasher.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        createWriteStream(tmpPath, { mode: 0o444 }),
      );
      const actual = hasher.digest('hex');
      if (actual !== hash) throw new LockstepError('bad-input', `blob content does not match its hash: expected ${hash}, content hashes to ${actual}`);
      if ((await this.sizeOf(hash)) !== undefined) return { size, created: false };
      await mkdir(join(this.root, hash.slice(0, 2)), { recursive: true });
      await rename(tmpPath, finalPath);
      return { size, created: true };
    } finally {
      await rm(tmpPath, { force: true });
    }
  }

  /** A read stream of a stored blob. */
  read(hash: string): Readable {
    return createReadStream(this.pathOf(hash));
  }
}
