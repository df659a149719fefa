/**
 * Baseline copies of watched files: the content of every watched regular
 * file goes into the agent's blob cache when it enters a baseline, so that a
 * revert can restore it byte for byte. Nothing prunes the blob cache, so a
 * copy stays as long as the baseline may need it.
 */
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BlobCache } from '../../content/blob-cache.js';
import type { SnapshotEntry } from '../../core/drift.js';

/** Largest watched file whose content is kept for revert; a larger one can be detected, not restored. */
export const MAX_BASELINE_COPY_BYTES = 64 * 1024 * 1024;

/** Copies the content of the file entries (relative to `root`) the cache lacks; failures are logged (a revert then says so). */
export async function storeBaselineContent(cache: BlobCache, root: string, entries: readonly SnapshotEntry[], logger: Logger): Promise<void> {
  for (const entry of entries) {
    if (entry.type !== 'file' || entry.sha256 === undefined) continue;
    if (entry.size > MAX_BASELINE_COPY_BYTES) {
      logger.warn({ path: entry.path, size: entry.size }, 'watched file too large to keep a baseline copy of; a revert cannot restore it');
      continue;
    }
    try {
      // The blob itself, not a mode variant a release tree links (an in-place edit there would change it).
      if (cache.hasBlob(entry.sha256)) continue;
      // put() verifies the hash: a file changed since it was scanned is not stored under the old hash.
      await cache.put(entry.sha256, createReadStream(join(root, entry.path)), entry.size);
    } catch (error) {
      logger.warn({ err: error, path: entry.path }, 'could not keep a baseline copy of a watched file; a revert cannot restore it');
    }
  }
}
