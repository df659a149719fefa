/**
 * The agent's local, content-addressed blob cache: ROOT/<aa>/<hash> holds
 * each verified blob (read-only, 0444), and ROOT/<aa>/<hash>.<mode> holds a
 * copy at exactly that permission mode. Release trees hard-link their files
 * from these variants; a hard link shares its inode's mode, so each
 * (hash, mode) pair needs its own inode.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LockstepError } from '../core/errors.js';
import { copyWithMode } from './copy-with-mode.js';
import { mapConcurrent } from './manifest-builder.js';

const HEX64 = /^[0-9a-f]{64}$/;
/** lstat calls in flight while looking for missing blobs. */
const MISSING_CONCURRENCY = 32;

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

  /** Whether the cache holds the blob. */
  async has(hash: string): Promise<boolean> {
    return (await fileMode(this.pathOf(hash))) !== undefined;
  }

  /**
   * The hashes among `hashes` the cache lacks (each once). The lookups run
   * concurrently: awaited one after another, 10,000 of them took 0.75 s.
   */
  async missing(hashes: Iterable<string>): Promise<string[]> {
    const unique = [...new Set(hashes)];
    const present = await mapConcurrent(unique, MISSING_CONCURRENCY, (hash) => this.has(hash));
    return unique.filter((_, index) => !present[index]);
  }

  /**
   * Stores streamed content whose SHA-256 must equal `hash` (and whose size
   * must equal `expectedSize` when given). The content goes to a temporary file
   * that is hashed while it streams, fsynced, and renamed into place only
   * when it matches; nothing is kept otherwise.
   */
  async put(hash: string, content: AsyncIterable<Uint8Array>, expectedSize?: number): Promise<PutResult> {
    const finalPath = this.pathOf(hash);
    const tmpPath = join(this.tmpDir, `${hash}.${randomBytes(6).toString('hex')}`);
    const hasher = createHash('sha256');
    let size = 0;
    try {
      const handle = await open(tmpPath, 'wx', 0o600);
      try {
        for await (const chunk of content) {
          hasher.update(chunk);
          size += chunk.byteLength;
          await handle.write(chunk);
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      const actual = hasher.digest('hex');
      if (actual !== hash) throw new LockstepError('failed', `blob ${hash} was corrupted in transfer: its content hashes to ${actual}`);
      if (expectedSize !== undefined && size !== expectedSize) {
        throw new LockstepError('failed', `blob ${hash} has ${size} bytes but the manifest says ${expectedSize}`);
      }
      if (await this.has(hash)) return { size, created: false };
      await chmod(tmpPath, BLOB_MODE);
      await mkdir(join(this.root, hash.slice(0, 2)), { recursive: true, mode: 0o700 });
      await rename(tmpPath, finalPath);
      return { size, created: true };
    } finally {
      await rm(tmpPath, { force: true });
    }
  }

  /**
   * Path of a cached file with the blob's content and exactly `mode`, made
   * on first use by copying the blob (a reflink where the filesystem can).
   * The blob must be in the cache.
   */
  async fileWithMode(hash: string, mode: number): Promise<string> {
    const blobPath = this.pathOf(hash);
    if (mode === BLOB_MODE) return blobPath;
    const variantPath = `${blobPath}.${mode.toString(8).padStart(3, '0')}`;
    const inFlight = this.variantsInFlight.get(variantPath);
    if (inFlight) return inFlight;
    const made = this.makeVariant(blobPath, variantPath, mode).finally(() => this.variantsInFlight.delete(variantPath));
    this.variantsInFlight.set(variantPath, made);
    return made;
  }

  private async makeVariant(blobPath: string, variantPath: string, mode: number): Promise<string> {
    // A variant whose mode was changed (by hand, or drift) is replaced, since
    // every release linking it would otherwise show that mode.
    if ((await fileMode(variantPath)) === mode) return variantPath;
    const tmpPath = join(this.tmpDir, `variant.${randomBytes(6).toString('hex')}`);
    try {
      await copyWithMode(blobPath, tmpPath, mode);
      await rename(tmpPath, variantPath);
      return variantPath;
    } finally {
      await rm(tmpPath, { force: true });
    }
  }
}

/** Permission bits of a regular file, or undefined when nothing (or not a regular file) is there. */
async function fileMode(path: string): Promise<number | undefined> {
  try {
    const info = await lstat(path);
    return info.isFile() ? info.mode & 0o777 : undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
