/**
 * The agent's local, content-addressed blob cache: ROOT/<aa>/<hash> holds
 * a verified blob at mode 0444, and ROOT/<aa>/<hash>.<mode> a copy at exactly
 * that permission mode. Release trees hard-link their files from these
 * variants; a hard link shares its inode's mode, so each (hash, mode) pair
 * needs its own inode. A downloaded blob is written once, as the variant its
 * first use needs (a 0644 file is not written at 0444 and then copied); any
 * file of a hash is its content, and further variants are copied from it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, unlinkSync, writeSync, type BigIntStats } from 'node:fs';
import { chmod, lstat, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ifMissing, ifMissingSync, LockstepError } from '../core/errors.js';
import { forEachBounded } from '../core/for-each-bounded.js';
import { fsyncDirectory, fsyncFile } from './atomic-file.js';
import { copyWithMode } from './copy-with-mode.js';
import { syncFileSystem } from './sync-file-system.js';

const HEX64 = /^[0-9a-f]{64}$/;
/** Synchronous lstat calls between two yields to the event loop. */
const LOOKUP_BATCH = 1000;
/** fsyncs (and copies) in flight at once when committing a batch. */
const SYNC_CONCURRENCY = 16;

/** A blob written and verified in the cache's tmp dir, not yet durable nor visible: pass it to `commit`. */
export interface ReceivedBlob {
  readonly hash: string;
  readonly size: number;
  readonly tmpPath: string;
  /** The variant it becomes on commit (BLOB_MODE: the blob itself). */
  readonly mode: number;
}

/** Mode of the verified blob itself; a variant with this mode is the blob. */
export const BLOB_MODE = 0o444;

/** The outcome of storing one blob. */
export interface PutResult {
  readonly size: number;
  /** False when another writer stored the same blob first. */
  readonly created: boolean;
}

/** A filesystem blob cache rooted at one directory. */
export class BlobCache {
  private readonly tmpDir: string;
  private readonly variantsInFlight = new Map<string, Promise<string>>();

  constructor(readonly root: string) {
    this.tmpDir = join(root, 'tmp');
  }

  /** Creates the directories and removes temporary files a crash left behind. */
  async open(): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
  }

  /** Path of a verified blob (whether or not it exists). */
  pathOf(hash: string): string {
    if (!HEX64.test(hash)) throw new LockstepError('bad-input', `"${hash}" is not a SHA-256 hex digest`);
    return join(this.root, hash.slice(0, 2), hash);
  }

  /** Whether the cache holds the blob's content: the blob itself or one of its mode variants. */
  async has(hash: string): Promise<boolean> {
    return (await fileMode(this.pathOf(hash))) !== undefined || this.copyOf(hash) !== undefined;
  }

  /** Whether the cache holds the blob itself (0444, linked only by 0444 release files): a pristine copy. */
  hasBlob(hash: string): boolean {
    return fileModeSync(this.pathOf(hash)) !== undefined;
  }

  /** Path of the variant `mode` of a blob (whether or not it exists). */
  variantPathOf(hash: string, mode: number): string {
    const blobPath = this.pathOf(hash);
    return mode === BLOB_MODE ? blobPath : `${blobPath}.${modeSuffix(mode)}`;
  }

  /**
   * Path of a file holding the blob's content: the blob itself, else any of
   * its mode variants (a blob downloaded for a 0644 file exists only as
   * that); undefined when the cache has none. Synchronous lstat/readdir.
   */
  copyOf(hash: string, shardNames?: Map<string, readonly string[]>): string | undefined {
    const blobPath = this.pathOf(hash);
    if (fileModeSync(blobPath) !== undefined) return blobPath;
    const shard = hash.slice(0, 2);
    let names = shardNames?.get(shard);
    if (names === undefined) {
      names = readdirIfExists(join(this.root, shard));
      shardNames?.set(shard, names);
    }
    for (const name of names) {
      if (name.length === 68 && name.startsWith(`${hash}.`) && /^[0-7]{3}$/.test(name.slice(65))) {
        const path = join(this.root, shard, name);
        if (fileModeSync(path) !== undefined) return path;
      }
    }
    return undefined;
  }

  /**
   * The hashes among `hashes` the cache lacks (each once). Awaited one after
   * another, 10,000 lstats took 0.75 s, 32 in flight 0.43 s: a warm lstat is
   * a few microseconds, the rest was the thread pool and promise round trip.
   * So they run synchronously, 1,000 between two yields to the event loop.
   */
  async missing(hashes: Iterable<string>): Promise<string[]> {
    const unique = [...new Set(hashes)];
    const result: string[] = [];
    // Each shard is listed at most once per call (a first deploy finds them empty).
    const shardNames = new Map<string, readonly string[]>();
    for (let start = 0; start < unique.length; start += LOOKUP_BATCH) {
      if (start > 0) await yieldToEventLoop();
      for (const hash of unique.slice(start, start + LOOKUP_BATCH)) if (this.copyOf(hash, shardNames) === undefined) result.push(hash);
    }
    return result;
  }

  /**
   * Stores streamed content whose SHA-256 must equal `hash` (and whose size
   * must equal `expectedSize` when given). The content goes to a temporary file
   * that is hashed while it streams, fsynced, and renamed into place only
   * when it matches; nothing is kept otherwise.
   */
  async put(hash: string, content: AsyncIterable<Uint8Array>, expectedSize?: number): Promise<PutResult> {
    const received = await this.receive(hash, content, expectedSize);
    const [created] = await this.commit([received]);
    return { size: received.size, created: created ?? false };
  }

  /**
   * The first half of `put`: streams content to a tmp file, hashing it, and
   * keeps it only when hash (and size) match. Nothing is fsynced or visible
   * yet; `commit` a batch of these (or `discard` them).
   */
  async receive(hash: string, content: AsyncIterable<Uint8Array>, expectedSize?: number, mode: number = BLOB_MODE): Promise<ReceivedBlob> {
    this.pathOf(hash);
    const tmpPath = join(this.tmpDir, `${hash}.${randomBytes(6).toString('hex')}`);
    const hasher = createHash('sha256');
    let size = 0;
    try {
      // Synchronous writes: a write to the page cache takes microseconds, and on a
      // loaded 2-CPU box each thread-pool round trip of an async one cost far more
      // (1,000 blobs of 20 KB: 2.3 s awaited one call after another).
      const fd = openSync(tmpPath, 'wx', 0o600);
      try {
        for await (const chunk of content) {
          hasher.update(chunk);
          size += chunk.byteLength;
          for (let written = 0; written < chunk.byteLength; ) written += writeSync(fd, chunk, written);
        }
      } finally {
        closeSync(fd);
      }
      const actual = hasher.digest('hex');
      if (actual !== hash) throw new LockstepError('failed', `blob ${hash} was corrupted in transfer: its content hashes to ${actual}`);
      if (expectedSize !== undefined && size !== expectedSize) {
        throw new LockstepError('failed', `blob ${hash} has ${size} bytes but the manifest says ${expectedSize}`);
      }
      return { hash, size, tmpPath, mode };
    } catch (error) {
      await rm(tmpPath, { force: true });
      throw error;
    }
  }

  /**
   * Makes received blobs durable and visible, with the same guarantee as one
   * fsync per blob but batched: every tmp file is fsynced (16 in flight, so
   * the filesystem can share journal commits) before any is renamed to its
   * verified name (the variant of its mode), so a crash never leaves a
   * verified name over content that did not reach the disk; then each shard
   * dir is fsynced once. Returns, per blob, whether it was new (false:
   * another writer stored it first).
   */
  async commit(received: readonly ReceivedBlob[]): Promise<boolean[]> {
    if (received.length === 0) return [];
    const renamed = new Set<ReceivedBlob>();
    try {
      for (const blob of received) chmodSync(blob.tmpPath, blob.mode);
      // One syncfs for the whole batch; without it, one fsync per file (opened for reading, so at 0600 first).
      const synced = await syncFileSystem(this.tmpDir);
      if (!synced) {
        await forEachBounded(received, SYNC_CONCURRENCY, async (blob) => {
          await chmod(blob.tmpPath, 0o600);
          await fsyncFile(blob.tmpPath);
          await chmod(blob.tmpPath, blob.mode);
        });
      }
      const created: boolean[] = [];
      const shards = new Set<string>();
      for (const blob of received) {
        const finalPath = this.variantPathOf(blob.hash, blob.mode);
        if (fileModeSync(finalPath) !== undefined) {
          created.push(false);
          continue;
        }
        const shard = dirname(finalPath);
        if (!shards.has(shard)) mkdirSync(shard, { recursive: true, mode: 0o700 });
        renameSync(blob.tmpPath, finalPath);
        renamed.add(blob);
        shards.add(shard);
        created.push(true);
      }
      if (shards.size > 0 && !(synced && (await syncFileSystem(this.root)))) {
        await forEachBounded([...shards], SYNC_CONCURRENCY, fsyncDirectory);
        await fsyncDirectory(this.root);
      }
      return created;
    } finally {
      await this.discard(received.filter((blob) => !renamed.has(blob)));
    }
  }

  /** Removes the tmp files of received blobs that will not be committed. */
  async discard(received: readonly ReceivedBlob[]): Promise<void> {
    await forEachBounded(received, SYNC_CONCURRENCY, (blob) => rm(blob.tmpPath, { force: true }));
  }

  /**
   * Removes the content no release on disk uses any more: a blob with all its
   * mode variants goes when none of those files has another hard link (a
   * release tree's file) and `keep` does not protect its hash (the drift
   * baseline's copies of watched files are not linked anywhere). Without this
   * the cache only grows. Synchronous lstats, one shard between two yields;
   * stops at the next shard when `signal` aborts.
   */
  async prune(keep: (hash: string) => boolean, signal?: AbortSignal): Promise<{ readonly removedFiles: number; readonly removedBytes: number }> {
    let removedFiles = 0;
    let removedBytes = 0;
    const shards = readdirIfExists(this.root).filter((name) => /^[0-9a-f]{2}$/.test(name));
    for (const shard of shards) {
      signal?.throwIfAborted();
      await yieldToEventLoop();
      const dir = join(this.root, shard);
      const byHash = new Map<string, { name: string; links: number; size: number }[]>();
      for (const name of readdirIfExists(dir)) {
        const hash = name.slice(0, 64);
        if (!HEX64.test(hash)) continue;
        // Gone meanwhile (another prune, a commit's rename): nothing to judge.
        const info = ifMissingSync(() => lstatSync(join(dir, name)));
        if (info?.isFile() !== true) continue;
        const files = byHash.get(hash) ?? [];
        files.push({ name, links: info.nlink, size: info.size });
        byHash.set(hash, files);
      }
      for (const [hash, files] of byHash) {
        if (files.some((file) => file.links > 1) || keep(hash)) continue;
        for (const file of files) {
          if (!unlinkIfExists(join(dir, file.name))) continue; // gone already
          removedFiles += 1;
          removedBytes += file.size;
        }
      }
    }
    return { removedFiles, removedBytes };
  }

  /**
   * Path of the cached file with the blob's content and exactly `mode` when
   * it is already there (a synchronous lstat), undefined when it must be made
   * with `fileWithMode` or `makeVariants`.
   */
  readyFileWithMode(hash: string, mode: number): string | undefined {
    return this.readyFileStat(hash, mode)?.path;
  }

  /** Like `readyFileWithMode`, with the file's lstat (which a stat record of the tree linking it starts from). */
  readyFileStat(hash: string, mode: number): { readonly path: string; readonly stat: BigIntStats } | undefined {
    const blobPath = this.pathOf(hash);
    const path = mode === BLOB_MODE ? blobPath : `${blobPath}.${modeSuffix(mode)}`;
    const stat = lstatSync(path, { bigint: true, throwIfNoEntry: false });
    return stat?.isFile() === true && (Number(stat.mode) & 0o777) === mode ? { path, stat } : undefined;
  }

  /**
   * Makes the (hash, mode) variants that are missing, batched like `commit`:
   * copies into tmp/, fsyncs them all (16 in flight), then renames each into
   * place and fsyncs the shard dirs once. A first deploy of 10,000 0644 files
   * made one copy + fsync after another per file through `fileWithMode`.
   */
  async makeVariants(wanted: readonly { readonly hash: string; readonly mode: number }[]): Promise<void> {
    const todo = new Map<string, { blobPath: string; mode: number; tmpPath: string }>();
    for (const { hash, mode } of wanted) {
      if (this.readyFileWithMode(hash, mode) !== undefined) continue;
      const variantPath = this.variantPathOf(hash, mode);
      if (todo.has(variantPath)) continue;
      const source = this.copyOf(hash);
      if (source === undefined) throw new LockstepError('failed', `blob ${hash} is not in the agent's blob cache`);
      todo.set(variantPath, { blobPath: source, mode, tmpPath: join(this.tmpDir, `variant.${randomBytes(6).toString('hex')}`) });
    }
    const items = [...todo];
    try {
      await forEachBounded(items, SYNC_CONCURRENCY, ([, item]) => copyWithMode(item.blobPath, item.tmpPath, item.mode));
      const shards = new Set<string>();
      for (const [variantPath, item] of items) {
        await rename(item.tmpPath, variantPath);
        shards.add(dirname(variantPath));
      }
      await forEachBounded([...shards], SYNC_CONCURRENCY, fsyncDirectory);
    } finally {
      await forEachBounded(items, SYNC_CONCURRENCY, ([, item]) => rm(item.tmpPath, { force: true }));
    }
  }

  /**
   * Path of a cached file with the blob's content and exactly `mode`, made
   * on first use by copying the blob or another of its variants (a reflink
   * where the filesystem can). The blob must be in the cache.
   */
  async fileWithMode(hash: string, mode: number): Promise<string> {
    const blobPath = this.pathOf(hash);
    if (mode === BLOB_MODE && fileModeSync(blobPath) !== undefined) return blobPath;
    const variantPath = this.variantPathOf(hash, mode);
    const inFlight = this.variantsInFlight.get(variantPath);
    if (inFlight) return inFlight;
    const made = this.makeVariant(hash, variantPath, mode).finally(() => this.variantsInFlight.delete(variantPath));
    this.variantsInFlight.set(variantPath, made);
    return made;
  }

  private async makeVariant(hash: string, variantPath: string, mode: number): Promise<string> {
    // A variant whose mode was changed (by hand, or drift) is replaced, since
    // every release linking it would otherwise show that mode.
    if ((await fileMode(variantPath)) === mode) return variantPath;
    const tmpPath = join(this.tmpDir, `variant.${randomBytes(6).toString('hex')}`);
    try {
      await copyWithMode(this.copyOf(hash) ?? this.pathOf(hash), tmpPath, mode);
      await rename(tmpPath, variantPath);
      return variantPath;
    } finally {
      await rm(tmpPath, { force: true });
    }
  }
}

function modeSuffix(mode: number): string {
  return mode.toString(8).padStart(3, '0');
}

/** Like `fileMode`, synchronously (a warm lstat takes microseconds; the thread pool round trip costs more). */
function fileModeSync(path: string): number | undefined {
  const info = lstatSync(path, { throwIfNoEntry: false });
  return info?.isFile() ? info.mode & 0o777 : undefined;
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Permission bits of a regular file, or undefined when nothing (or not a regular file) is there. */
async function fileMode(path: string): Promise<number | undefined> {
  const info = await ifMissing(lstat(path));
  return info?.isFile() === true ? info.mode & 0o777 : undefined;
}

function readdirIfExists(dir: string): string[] {
  return ifMissingSync(() => readdirSync(dir)) ?? [];
}

/** Removes a file; false when it was not there. */
function unlinkIfExists(path: string): boolean {
  return (
    ifMissingSync(() => {
      unlinkSync(path);
      return true;
    }) ?? false
  );
}
