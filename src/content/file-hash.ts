/**
 * SHA-256 of file content, shared by the scanner's worker threads (src/fim) and the
 * manifest builder (`release create`): large reads through one reused 1 MiB
 * buffer, no stream and no promise per chunk (figures in bench/README.md).
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';

/** Bytes per read. */
export const HASH_CHUNK_BYTES = 1 << 20;

/** The digest of a whole file and how many bytes were read. */
export interface FileDigest {
  readonly sha256: string;
  readonly bytes: number;
}

/**
 * Hashes an open file from its current offset to its end, synchronously (in a
 * worker thread, or for a file that fits one read). `afterRead` is told each
 * read's size (the scanner's read-rate cap sleeps there).
 */
export function hashOpenFile(fd: number, buffer: Buffer, afterRead?: (bytes: number) => void): FileDigest {
  const hash = createHash('sha256');
  let total = 0;
  for (;;) {
    const read = readSync(fd, buffer, 0, buffer.length, null);
    if (read === 0) break;
    total += read;
    afterRead?.(read);
    if (read < buffer.length) {
      // A short read of a regular file is its end: no extra read() just to be told so (one syscall per small file).
      hash.update(buffer.subarray(0, read));
      break;
    }
    hash.update(buffer);
  }
  return { sha256: hash.digest('hex'), bytes: total };
}

let mainBuffer: Buffer | undefined;

/**
 * SHA-256 (hex) of a file, for the main thread: a file of at most one chunk is
 * read with one synchronous read (a few microseconds of blocking, cheaper than
 * a promise per chunk), a larger one in 1 MiB asynchronous reads.
 */
export async function hashPath(path: string, size?: number): Promise<string> {
  if (size !== undefined && size < HASH_CHUNK_BYTES) {
    mainBuffer ??= Buffer.allocUnsafe(HASH_CHUNK_BYTES);
    const fd = openSync(path, 'r');
    try {
      return hashOpenFile(fd, mainBuffer).sha256;
    } finally {
      closeSync(fd);
    }
  }
  const handle = await open(path, 'r');
  try {
    const hash = createHash('sha256');
    // Its own buffer: several large files may be hashed at once.
    const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
    }
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}
