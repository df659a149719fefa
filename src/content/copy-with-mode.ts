/**
 * Copies a file to a new path with exactly a given permission mode, durably:
 * the fallback when a hard link is impossible (another filesystem, a link
 * count limit) and the way blob-cache variants are made.
 */
import { constants } from 'node:fs';
import { chmod, copyFile } from 'node:fs/promises';
import { fsyncFile } from './atomic-file.js';

/** Copies `source` to `destination` (which must not exist; never followed if it is a link), fsyncs it and sets `mode`. */
export async function copyWithMode(source: string, destination: string, mode: number): Promise<void> {
  // FICLONE makes a reflink on filesystems that support it, a plain copy elsewhere.
  await copyFile(source, destination, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
  // The copy took the source's mode (0444); make it readable for the fsync
  // before narrowing it to the wanted mode, which may deny even the owner.
  await chmod(destination, 0o600);
  await fsyncFile(destination);
  await chmod(destination, mode);
}
