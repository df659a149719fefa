/**
 * Small durable-write helpers: write a file through a temporary sibling and
 * rename(2) it into place, and fsync a directory so that renames inside it
 * survive a power loss.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Prefix of the temporary sibling `writeFileAtomic` writes `fileName` through;
 * a process killed before its rename leaves a file with this prefix behind.
 */
export function atomicTmpPrefix(fileName: string): string {
  return `.${fileName}.tmp-`;
}

/** Writes `data` to `path` atomically with exactly `mode` (tmp file, fsync, rename, fsync of the directory). */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmpPath = join(dirname(path), `${atomicTmpPrefix(basename(path))}${randomBytes(6).toString('hex')}`);
  // 'wx': never write through something that already exists at the tmp name (a planted symlink).
  const handle = await open(tmpPath, 'wx', mode);
  try {
    try {
      // The umask may have narrowed the mode given to open().
      await handle.chmod(mode);
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmpPath, path);
  } catch (error) {
    await rm(tmpPath, { force: true });
    throw error;
  }
  await fsyncDirectory(dirname(path));
}

/** fsyncs a directory so that entries created or renamed in it are durable. */
export async function fsyncDirectory(path: string): Promise<void> {
  try {
    await fsyncFile(path);
  } catch (error) {
    // A directory without read permission for us cannot be opened; its
    // entries then ride on the filesystem's journal ordering instead.
    if ((error as NodeJS.ErrnoException).code === 'EACCES') return;
    throw error;
  }
}

/** fsyncs a file (opened read-only, so it must be readable) so that its content is durable. */
export async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

