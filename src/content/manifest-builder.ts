/**
 * Builds a release manifest from a directory: walks the tree without
 * following symlinks, hashes every regular file, and reports the file kinds
 * a release may not contain so the validator can name them.
 */
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { mapBounded } from '../core/for-each-bounded.js';
import { hashPath } from './file-hash.js';
import type { ForbiddenEntry, ManifestEntry } from '../core/manifest.js';

/** A walked entry plus, for files, where its content is on disk. */
export type WalkedEntry = (ManifestEntry | ForbiddenEntry) & { readonly source?: string };

/** Progress of a walk: called after each hashed file. */
export type WalkProgress = (done: { files: number; bytes: number }) => void;

/** Walks `root` and returns its entries (paths relative to root, '/'-separated), files hashed. */
export async function buildEntries(root: string, onProgress?: WalkProgress): Promise<WalkedEntry[]> {
  const entries: WalkedEntry[] = [];
  const files: { path: string; source: string; mode: number; size: number }[] = [];
  async function walk(dir: string, prefix: string): Promise<void> {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const source = join(dir, name);
      const path = prefix ? `${prefix}/${name}` : name;
      const info = await lstat(source);
      if (info.isDirectory()) {
        entries.push({ path, type: 'dir', mode: info.mode & 0o777 });
        await walk(source, path);
      } else if (info.isFile()) {
        files.push({ path, source, mode: info.mode & 0o777, size: info.size });
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
  const hashed = await mapBounded(files, 8, async (file) => {
    const sha256 = await hashPath(file.source, file.size);
    hashedFiles += 1;
    hashedBytes += file.size;
    onProgress?.({ files: hashedFiles, bytes: hashedBytes });
    return { path: file.path, type: 'file' as const, mode: file.mode, size: file.size, sha256, source: file.source };
  });
  return [...entries, ...hashed];
}

/** SHA-256 (hex) of a file's content (the scanner's hashing function, see file-hash.ts). */
export async function hashFile(path: string): Promise<string> {
  return hashPath(path);
}
