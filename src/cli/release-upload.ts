/** Making a release from a directory: hash the tree, upload only the blobs the server lacks, register the manifest. */
import { stat } from 'node:fs/promises';
import type { LockstepClient } from '../client/lockstep-client.js';
import { cannotRead, ifMissing, LockstepError } from '../core/errors.js';
import { manifestProblems, type ManifestEntry } from '../core/manifest.js';
import { forEachBounded } from '../core/for-each-bounded.js';
import { buildEntries } from '../content/manifest-builder.js';

/** What `uploadRelease` did. */
export interface UploadedRelease {
  readonly id: string;
  readonly app: string;
  readonly version: string;
  readonly created: boolean;
  readonly files: number;
  readonly bytes: number;
  readonly uploaded: { readonly blobs: number; readonly bytes: number };
}

/**
 * Creates a release from `dir`. The tree is validated locally with the
 * server's own rules first, so a bad tree uploads nothing.
 */
export async function uploadRelease(client: LockstepClient, dir: string, version: string, app: string | undefined, onProgress?: (text: string) => void): Promise<UploadedRelease> {
  const info = await ifMissing(stat(dir)).catch((error: unknown) => {
    throw cannotRead(dir, error);
  });
  if (!info?.isDirectory()) throw new LockstepError('bad-input', `${dir} is not a directory`);
  const walked = await buildEntries(dir, ({ files, bytes }) => onProgress?.(`hashing: ${files} files, ${bytes} bytes`));
  const problems = manifestProblems(walked);
  if (problems.length > 0) {
    const first = problems[0];
    throw new LockstepError('bad-input', `${dir}: ${first?.path}: ${first?.problem}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, { problems });
  }
  const sources = new Map<string, { source: string; size: number }>();
  for (const entry of walked) if (entry.type === 'file' && entry.source) sources.set(entry.sha256, { source: entry.source, size: entry.size });
  const { missing } = await client.missingBlobs([...sources.keys()]);
  let blobs = 0;
  let bytes = 0;
  await forEachBounded(missing, 4, async (hash) => {
    const blob = sources.get(hash);
    if (!blob) return;
    await client.uploadBlob(hash, blob.source, blob.size);
    blobs += 1;
    bytes += blob.size;
    onProgress?.(`uploading: ${blobs}/${missing.length} blobs, ${bytes} bytes`);
  });
  const entries = walked.map(({ source: _source, ...entry }) => entry as ManifestEntry);
  const result = await client.createRelease({ ...(app !== undefined ? { app } : {}), version, entries });
  const release = result.release;
  return { id: release.id, app: release.app, version: release.version, created: result.created, files: release.files, bytes: release.bytes, uploaded: { blobs, bytes } };
}
