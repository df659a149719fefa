/**
 * Removes a directory tree that may contain read-only directories (release
 * trees are staged read-only), without ever following a symlink.
 */
import { chmod, lstat, readdir, rm, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ifMissing } from '../core/errors.js';

/** Deletes `path` and everything below it; directories are made writable first. Absent paths are fine. */
export async function removeTree(path: string): Promise<void> {
  const info = await ifMissing(lstat(path));
  if (info === undefined) return;
  if (!info.isDirectory()) {
    await unlink(path);
    return;
  }
  // Without write and search permission on a directory its entries cannot be
  // removed (for a non-root agent); lstat said it is a real directory, not a link.
  if ((info.mode & 0o700) !== 0o700) await chmod(path, 0o700);
  for (const name of await readdir(path)) await removeTree(join(path, name));
  try {
    await rmdir(path);
  } catch (error) {
    // Something appeared meanwhile; fall back to a forceful removal of what is left.
    if ((error as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw error;
    await rm(path, { recursive: true, force: true });
  }
}
