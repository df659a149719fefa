/**
 * The server's content-addressed blob store: one file per SHA-256 under
 * DATA_DIR/blobs/<first two hex>/<hash>. Writes go to a temporary file that is
 * hashed while it streams and renamed into place only when the hash matches.
 * Reads for agents are hashed as they stream too: a stored copy that no
 * longer hashes to its name (disk corruption, a hand edit) is never served
 * whole, and is moved to DATA_DIR/blobs/quarantine/<hash>, so the store
 * counts it as missing and the next upload of the right bytes replaces it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createWriteStream, fstatSync, openSync, readSync } from 'node:fs';
import { lstat, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, pipeline as pipeStreams, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ifMissing, LockstepError } from '../core/errors.js';

const HEX64 = /^[0-9a-f]{64}$/;

/** A stored blob found corrupt while it was served, and what became of the copy. */
export interface CorruptBlob {
  readonly hash: string;
  /** What the stored bytes hash to. */
  readonly actual: string;
  readonly size: number;
  /** Where the copy was moved, or undefined when it was not (already replaced, or the move failed). */
  readonly quarantinedAt: string | undefined;
  /** Why the move failed, when it did. */
  readonly quarantineError?: unknown;
}

/** A stored blob opened for serving: its size and a stream that fails rather than end with bytes that do not match the hash. */
export interface VerifiedBlobStream {
  readonly size: number;
  readonly stream: Readable;
}

/** The error for a blob whose stored copy was found corrupt: what the agent reports as its step's error. */
export function corruptBlobError(hash: string): LockstepError {
  return new LockstepError('conflict', `the server's copy of blob ${hash} is corrupt; re-upload the release`, { blob: hash });
}

/** A filesystem blob store rooted at one directory. */
export class BlobStore {
  private readonly tmpDir: string;
  private readonly quarantineDir: string;

  constructor(private readonly root: string) {
    this.tmpDir = join(root, 'tmp');
    this.quarantineDir = join(root, 'quarantine');
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
    return (await ifMissing(stat(this.pathOf(hash))))?.size;
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
      // Proven bytes always replace the stored copy (atomically), so an upload
      // also repairs a copy that rotted on disk before anyone noticed.
      const created = (await this.sizeOf(hash)) === undefined;
      await mkdir(join(this.root, hash.slice(0, 2)), { recursive: true });
      await rename(tmpPath, finalPath);
      return { size, created };
    } finally {
      await rm(tmpPath, { force: true });
    }
  }

  /**
   * Opens a stored blob for serving, or undefined when it is absent. The
   * stream hashes what it reads and holds the last chunk back until the
   * digest is known: when it does not match, the stream fails before its
   * last bytes (so no reader ever receives the whole, wrong content), the
   * copy is moved to quarantine and `onCorrupt` is told.
   */
  async openVerified(hash: string, onCorrupt: (corrupt: CorruptBlob) => void): Promise<VerifiedBlobStream | undefined> {
    const path = this.pathOf(hash);
    const handle = await ifMissing(open(path, 'r'));
    if (handle === undefined) return undefined;
    const opened = await handle.stat().catch(async (error: unknown) => {
      await handle.close();
      throw error;
    });
    const hasher = createHash('sha256');
    let held: Buffer | undefined;
    const quarantine = (actual: string): Promise<CorruptBlob> => this.quarantine(hash, actual, opened);
    const check = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hasher.update(chunk);
        const previous = held;
        held = chunk;
        callback(null, previous);
      },
      flush(callback) {
        const actual = hasher.digest('hex');
        if (actual === hash) {
          callback(null, held);
          return;
        }
        void quarantine(actual).then((corrupt) => {
          onCorrupt(corrupt);
          callback(corruptBlobError(hash));
        });
      },
    });
    const stream = pipeStreams(handle.createReadStream({ highWaterMark: 1 << 20 }), check, () => {
      // Errors reach the reader through `check`, which pipeline destroys with them.
    });
    return { size: opened.size, stream };
  }

  /**
   * A stored blob of at most `maxBytes` read whole and checked against its
   * hash (the bulk fetch's way for small files: four synchronous syscalls on
   * a page-cached file instead of a stream's dozen thread-pool round trips;
   * memory stays within one stream chunk). Undefined when absent,
   * 'too-large' when larger (stream it with openVerified); a copy that does
   * not hash to its name goes to quarantine, `onCorrupt` is told, and the
   * call fails with corruptBlobError.
   */
  async readSmallVerified(hash: string, maxBytes: number, onCorrupt: (corrupt: CorruptBlob) => void): Promise<Buffer | 'too-large' | undefined> {
    const path = this.pathOf(hash);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    let opened: { dev: number; ino: number; size: number };
    let content: Buffer;
    try {
      opened = fstatSync(fd);
      if (opened.size > maxBytes) return 'too-large';
      content = Buffer.allocUnsafe(opened.size);
      let read = 0;
      while (read < content.length) {
        const got = readSync(fd, content, read, content.length - read, read);
        if (got === 0) break;
        read += got;
      }
      content = content.subarray(0, read);
    } finally {
      closeSync(fd);
    }
    const actual = createHash('sha256').update(content).digest('hex');
    if (actual === hash) return content;
    onCorrupt(await this.quarantine(hash, actual, opened));
    throw corruptBlobError(hash);
  }

  /** Whether a copy of `hash` was found corrupt and moved aside (and no good copy stored since). */
  async isQuarantined(hash: string): Promise<boolean> {
    this.pathOf(hash);
    return (await ifMissing(lstat(join(this.quarantineDir, hash)))) !== undefined;
  }

  /**
   * Moves the copy that was read (the same inode: a good copy uploaded
   * meanwhile is left alone) to quarantine/<hash>, replacing an older one.
   */
  private async quarantine(hash: string, actual: string, opened: { dev: number; ino: number; size: number }): Promise<CorruptBlob> {
    const path = this.pathOf(hash);
    const destination = join(this.quarantineDir, hash);
    try {
      const now = await lstat(path);
      if (now.dev !== opened.dev || now.ino !== opened.ino) return { hash, actual, size: opened.size, quarantinedAt: undefined };
      await mkdir(this.quarantineDir, { recursive: true });
      await rename(path, destination);
      return { hash, actual, size: opened.size, quarantinedAt: destination };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { hash, actual, size: opened.size, quarantinedAt: undefined };
      return { hash, actual, size: opened.size, quarantinedAt: undefined, quarantineError: error };
    }
  }
}
