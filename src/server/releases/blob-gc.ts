/**
 * Garbage collection of the blob store: removes blobs that no release, no
 * open drift item and no open upload session references, once they are
 * older than the grace period; audited as `blob.gc` with the count and bytes.
 */
import type { GcResponse } from '../../api/schemas.js';
import { isGarbage } from '../../core/blob-retention.js';
import { OPEN_DRIFT_STATES } from '../../core/drift-items.js';
import { blobsOf, type Manifest } from '../../core/manifest.js';
import type { ServerContext } from '../context.js';
import type { BlobIntake } from './upload-service.js';

/** Release manifests read per query while gc gathers what is referenced. */
const MANIFEST_PAGE = 50;

/** Every blob hash something still needs: release manifests, open drift items (both sides), open upload sessions. */
async function referencedBlobs(context: ServerContext): Promise<Set<string>> {
  const read = context.store.read;
  const referenced = new Set<string>();
  for (let after = ''; ; ) {
    const page = await read.releaseManifestPage(after, MANIFEST_PAGE);
    for (const row of page) for (const hash of blobsOf(JSON.parse(row.manifest) as Manifest)) referenced.add(hash);
    const last = page.at(-1);
    if (last === undefined || page.length < MANIFEST_PAGE) break;
    after = last.id;
  }
  for (const item of await read.driftItems({ states: OPEN_DRIFT_STATES })) {
    for (const attrs of [item.expected, item.actual]) {
      const sha256 = attrs === null ? undefined : (JSON.parse(attrs) as { sha256?: string }).sha256;
      if (sha256 !== undefined) referenced.add(sha256);
    }
  }
  for (const session of await read.openUploadSessions(context.now().toISOString())) for (const hash of JSON.parse(session.blobs) as string[]) referenced.add(hash);
  return referenced;
}

/**
 * Lists (dryRun) or removes the garbage blobs. Removal runs under the intake's
 * lock, so no release is being created from a blob as it goes; the audit
 * event is written when `actor` asked for it, or when something was removed.
 */
export async function collectGarbage(context: ServerContext, intake: BlobIntake, actor: string | undefined, dryRun: boolean): Promise<GcResponse> {
  const graceMs = intake.limits.gcGraceMs;
  const run = async (): Promise<GcResponse> => {
    const nowMs = context.now().getTime();
    const referenced = await referencedBlobs(context);
    const blobs: GcResponse['blobs'] = [];
    let bytes = 0;
    for await (const blob of context.blobs.list()) {
      if (!isGarbage(blob, referenced, nowMs, graceMs)) continue;
      if (!dryRun && !(await context.blobs.remove(blob.hash, nowMs - graceMs))) continue;
      blobs.push({ hash: blob.hash, size: blob.size, storedAt: new Date(blob.storedAtMs).toISOString() });
      bytes += blob.size;
    }
    if (!dryRun && blobs.length > 0) await context.store.transaction((repo) => repo.releaseBlobHolds(blobs.map((blob) => blob.hash)));
    if (!dryRun && (actor !== undefined || blobs.length > 0)) {
      const at = context.now().toISOString();
      await context.store.transaction((repo) =>
        repo.appendAudit({ at, actor: actor ?? 'lockstep', action: 'blob.gc', target: 'blobs', details: { count: blobs.length, bytes, graceSeconds: graceMs / 1000 } }),
      );
    }
    return { dryRun, graceSeconds: graceMs / 1000, count: blobs.length, bytes, blobs };
  };
  return dryRun ? run() : intake.blobLock.run(run);
}
