/**
 * Builds a release manifest from a directory: walks the tree without
 * following symlinks, hashes every regular file (in bulk through a hasher the
 * caller gives, such as the scanner's worker pool, else here), and reports
 * the file kinds a release may not contain so the validator can name them.
 */
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { LockstepError } from '../core/errors.js';
import { mapBounded } from '../core/for-each-bounded.js';
import { sizeBatches } from '../core/size-batches.js';
import { hashPath } from './file-hash.js';
import type { ForbiddenEntry, ManifestEntry } from '../core/manifest.js';

/** A walked entry plus, for files, where its content is on disk. */
export type WalkedEntry = (ManifestEntry | ForbiddenEntry) & { readonly source?: string };

/** Progress of a walk: called after each hashed file (or batch of files). */
export type WalkProgress = (done: { files: number; bytes: number }) => void;

/** One file's hash from a bulk hasher, or the errno code that stopped it (ECHANGED: not the file the walk saw). */
export interface BulkHashResult {
  readonly sha256?: string;
  readonly bytes?: number;
  readonly error?: string;
}

/** Hashes many files at once (`ino`: the inode the walk saw, decimal); one result per file, in order. */
export type BulkHasher = (files: readonly { readonly path: string; readonly ino: string }[]) => Promise<readonly BulkHashResult[]>;

/** Files per bulk hashing request: few enough to spread over the workers, many enough that a small file costs no message of its own. */
const HASH_BATCH_FILES = 128;
/** …and at most this many bytes per request. */
const HASH_BATCH_BYTES = 32 * 1024 * 1024;

/** Walks `root` and returns its entries (paths relative to root, '/'-separated), files hashed. */
export async function buildEntries(root: string, onProgress?: WalkProgress, hasher?: BulkHasher): Promise<WalkedEntry[]> {
  const entries: WalkedEntry[] = [];
  const files: WalkedFile[] = [];
  async function walk(dir: string, prefix: string): Promise<void> {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const source = join(dir, name);
      const path = prefix ? `${prefix}/${name}` : name;
      const info = await lstat(source, { bigint: true });
      if (info.isDirectory()) {
        entries.push({ path, type: 'dir', mode: Number(info.mode & 0o777n) });
        await walk(source, path);
      } else if (info.isFile()) {
        files.push({ path, source, mode: Number(info.mode & 0o777n), size: Number(info.size), ino: String(info.ino) });
      } else if (info.isSymbolicLink()) {
        entries.push({ path, type: 'symlink', target: await readlink(source) });
      } else if (info.isFIFO()) {
        entries.push({ path, type: 'fifo' });
      } else if (info.isSocket()) {
        entries.push({ path, type: 'socket' });
      } else if (info.isCharacterDevice()) {
        entries.push({ path, type: 'char-device' });
      } else if (info.isBlockDevice()) {
        entries.push({ path, type: 'block-device' });
      }
    }
  }
  await walk(root, '');
  let hashedFiles = 0;
  let hashedBytes = 0;
  const hashOne = async (file: WalkedFile): Promise<string> => {
    const sha256 = await hashPath(file.source, file.size);
    hashedFiles += 1;
    hashedBytes += file.size;
    onProgress?.({ files: hashedFiles, bytes: hashedBytes });
    return sha256;
  };
  const hashBatch = async (batch: readonly WalkedFile[]): Promise<string[]> => {
    if (hasher === undefined) return mapBounded(batch, 8, hashOne);
    const results = await hasher(batch.map((file) => ({ path: file.source, ino: file.ino })));
    const hashes = batch.map((file, index) => {
      const result = results[index];
      if (result?.sha256 === undefined || result.bytes !== file.size) {
        const why = result?.error === 'ECHANGED' || result?.error === undefined ? 'it changed while it was being hashed; run again' : result.error;
        throw new LockstepError('bad-input', `cannot hash ${file.source}: ${why}`);
      }
      return result.sha256;
    });
    hashedFiles += batch.length;
    hashedBytes += batch.reduce((sum, file) => sum + file.size, 0);
    onProgress?.({ files: hashedFiles, bytes: hashedBytes });
    return hashes;
  };
  const hashes = (await mapBounded(sizeBatches(files, { count: HASH_BATCH_FILES, bytes: HASH_BATCH_BYTES }), 4, hashBatch)).flat();
  const hashed = files.map((file, index) => ({ path: file.path, type: 'file' as const, mode: file.mode, size: file.size, sha256: hashes[index] as string, source: file.source }));
  return [...entries, ...hashed];
}

/** A regular file found by the walk. */
interface WalkedFile {
  readonly path: string;
  readonly source: string;
  readonly mode: number;
  readonly size: number;
  readonly ino: string;
}

/** SHA-256 (hex) of a file's content (the scanner's hashing function, see file-hash.ts). */
export async function hashFile(path: string): Promise<string> {
  return hashPath(path);
}
