/**
 * syncfs(2) of the filesystem holding a path, through coreutils `sync -f`
 * (Node has no binding for it). One call makes every write, chmod, link and
 * rename on that filesystem durable: measured on ext4 under load, 58 ms
 * against 454 ms for 1,000 fsyncs of 20 KB files (16 in flight), and it
 * covers the directories too. Where `sync -f` is missing or fails, callers
 * fall back to fsyncing what they wrote, one file and directory at a time.
 */
import { execFile } from 'node:child_process';

/** false once `sync -f` was found missing: no use spawning it again. */
let available = true;

/** Makes everything written on `path`'s filesystem durable; false when it could not (then fsync file by file). */
export function syncFileSystem(path: string): Promise<boolean> {
  if (!available) return Promise.resolve(false);
  return new Promise((resolve) => {
    execFile('sync', ['-f', path], { timeout: 120_000 }, (error) => {
      if (error !== null && (error as NodeJS.ErrnoException).code === 'ENOENT') available = false;
      resolve(error === null);
    });
  });
}
