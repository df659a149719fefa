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
import { closeSync, createWriteStream, existsSync, fstatSync, mkdirSync, openSync, readSync, renameSync, rmSync, write as writeCallback, writeSync } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Transform, pipeline as pipeStreams, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ifMissing, LockstepError } from '../core/errors.js';
import { mapBounded } from '../core/for-each-bounded.js';
import { readFrames } from './upload-frames.js';

const HEX64 = /^[0-9a-f]{64}$/;
/** Blobs of a batch written before one sync pass makes them durable (each pass spawns `sync` twice, ~10 ms each). */
const SYNC_PASS_FILES = 1024;
/** Stats under way at once when checking many blobs. */
const STATS_IN_FLIGHT = 32;
/** Blobs up to this size are received whole in memory, checked, then written. */
const SMALL_BLOB_BYTES = 1024 * 1024;

/** What a batch of framed blobs stored. */
export interface StoredBatch {
  readonly blobs: number;
  readonly bytes: number;
  /** Blobs the store did not have before. */
  readonly created: number;
}

/** A stored blob as gc sees it. */
export interface StoredBlob {
  readonly hash: string;
  readonly size: number;
  /** When its current copy was written (ms since the epoch). */
  readonly storedAtMs: number;
}

/** A blob written to a temporary file, hashed, waiting for its sync pass and rename. */
interface WrittenBlob {
  readonly hash: string;
  readonly tmpPath: string;
}

const writeChunk = promisify(writeCallback);
const execFileAsync = promisify(execFile);

/** Writes all of `chunk` at the file's position (a write may take less than asked). */
async function writeAll(fd: number, chunk: Buffer): Promise<void> {
  for (let offset = 0; offset < chunk.length; ) offset += (await writeChunk(fd, chunk, offset, chunk.length - offset, null)).bytesWritten;
}

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
    const unique = [...new Set(hashes)];
    const sizes = await this.sizesOf(unique);
    return unique.filter((_hash, index) => sizes[index] === undefined);
  }

  /** The sizes of stored blobs (undefined where absent), in the order given; a few stats at a time, since a release may name 100,000. */
  sizesOf(hashes: readonly string[]): Promise<(number | undefined)[]> {
    return mapBounded(hashes, STATS_IN_FLIGHT, (hash) => this.sizeOf(hash));
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
   * Stores every blob of a framed stream (blob-frames.ts). `admit` sees each
   * frame's hash and declared size before its bytes are read and throws to
   * refuse it (the whole request fails; blobs already stored stay, being
   * proven content). Each blob is hashed as it is read and written to a
   * temporary file; then, per pass of up to SYNC_PASS_FILES blobs, their data
   * is synced, they are renamed into place, and the renames synced: once this
   * resolves, every blob of the batch survives a crash, at two sync waits
   * per pass instead of one per blob.
   */
  async putFrames(stream: AsyncIterable<Buffer>, admit: (hash: string, size: number) => void): Promise<StoredBatch> {
    let written: WrittenBlob[] = [];
    let blobs = 0;
    let bytes = 0;
    let created = 0;
    try {
      for await (const frame of readFrames(stream)) {
        if (!HEX64.test(frame.hash)) throw new LockstepError('bad-input', `frame ${blobs + 1} has a malformed hash`);
        admit(frame.hash, frame.size);
        const hasher = createHash('sha256');
        const tmpPath = join(this.tmpDir, `${frame.hash}.${randomBytes(6).toString('hex')}`);
        if (frame.size <= SMALL_BLOB_BYTES) {
          // Checked in memory, then written with synchronous calls: a small blob costs a few
          // microseconds of syscalls, where each asynchronous call cost a thread-pool round trip (measured).
          const pieces: Buffer[] = [];
          for await (const piece of frame.bytes) pieces.push(piece);
          const content = pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
          checkHash(frame.hash, hasher.update(content).digest('hex'));
          written.push({ hash: frame.hash, tmpPath });
          const fd = openSync(tmpPath, 'wx', 0o444);
          try {
            for (let offset = 0; offset < content.length; ) offset += writeSync(fd, content, offset);
          } finally {
            closeSync(fd);
          }
        } else {
          written.push({ hash: frame.hash, tmpPath });
          const fd = openSync(tmpPath, 'wx', 0o444);
          try {
            for await (const piece of frame.bytes) {
              hasher.update(piece);
              await writeAll(fd, piece);
            }
          } finally {
            closeSync(fd);
          }
          checkHash(frame.hash, hasher.digest('hex'));
        }
        blobs += 1;
        bytes += frame.size;
        if (written.length >= SYNC_PASS_FILES) {
          const pass = written;
          written = [];
          created += await this.commitWritten(pass);
        }
      }
      const pass = written;
      written = [];
      created += await this.commitWritten(pass);
      return { blobs, bytes, created };
    } finally {
      for (const blob of written) rmSync(blob.tmpPath, { force: true });
    }
  }

  /**
   * One sync pass: the files' data, then their renames into place, then the
   * directories that gained them. With syncfs (`sync --file-system`) a pass is
   * two journal commits whatever its size; fsync per file and per directory,
   * where that is missing, forced a commit per call, and a file created
   * meanwhile waited for each (measured: creates stalled behind them).
   */
  private async commitWritten(written: readonly WrittenBlob[]): Promise<number> {
    if (written.length === 0) return 0;
    if (!(await syncFileSystem(this.tmpDir))) await Promise.all(written.map((blob) => syncFile(blob.tmpPath)));
    const directories = new Set(written.map((blob) => join(this.root, blob.hash.slice(0, 2))));
    for (const directory of directories) mkdirSync(directory, { recursive: true });
    let created = 0;
    let renamed = 0;
    try {
      for (const blob of written) {
        const finalPath = this.pathOf(blob.hash);
        if (!existsSync(finalPath)) created += 1;
        renameSync(blob.tmpPath, finalPath);
        renamed += 1;
      }
    } finally {
      for (const blob of written.slice(renamed)) rmSync(blob.tmpPath, { force: true });
    }
    if (!(await syncFileSystem(this.root))) await Promise.all([...directories].map((directory) => syncDirectory(directory)));
    return created;
  }

  /** Every stored blob (not temporary files nor quarantined copies), directory by directory. */
  async *list(): AsyncGenerator<StoredBlob> {
    const prefixes = ((await ifMissing(readdir(this.root))) ?? []).filter((name) => /^[0-9a-f]{2}$/.test(name)).sort();
    for (const prefix of prefixes) {
      const names = ((await ifMissing(readdir(join(this.root, prefix)))) ?? []).filter((name) => HEX64.test(name) && name.startsWith(prefix)).sort();
      for (const hash of names) {
        const info = await ifMissing(lstat(join(this.root, prefix, hash)));
        if (info?.isFile()) yield { hash, size: info.size, storedAtMs: info.mtimeMs };
      }
    }
  }

  /**
   * Removes a stored blob unless its copy was written after `writtenBeforeMs`
   * (an upload that replaced it meanwhile). Returns whether it was removed.
   */
  async remove(hash: string, writtenBeforeMs: number): Promise<boolean> {
    const path = this.pathOf(hash);
    const info = await ifMissing(lstat(path));
    if (info === undefined || info.mtimeMs >= writtenBeforeMs) return false;
    await rm(path, { force: true });
    return true;
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

let syncfsAvailable = true;

/**
 * Flushes the whole filesystem holding `path` (syncfs(2), through coreutils'
 * `sync --file-system`: Node has no binding). False when the command is
 * missing, so the caller falls back to fsync per file; a failure of the sync itself is thrown.
 */
async function syncFileSystem(path: string): Promise<boolean> {
  if (!syncfsAvailable) return false;
  try {
    await execFileAsync('sync', ['--file-system', path]);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    syncfsAvailable = false;
    return false;
  }
}

/** Fails unless a blob's content hashed to its name. */
function checkHash(expected: string, actual: string): void {
  if (actual !== expected) throw new LockstepError('bad-input', `blob content does not match its hash: expected ${expected}, content hashes to ${actual}`);
}

/** Makes a file's data durable (the fallback where syncfs is missing). */
async function syncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** Makes a directory's entries (renames into it) durable. */
async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
