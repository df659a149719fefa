/** The system parts a release declares, from its manifest as this agent trusts it (stored when staged, or fetched and checked). */
import type { SystemParts } from '../../core/system-parts.js';
import { LockstepError } from '../../core/errors.js';
import { shortId, type Manifest } from '../../core/manifest.js';
import type { ManifestStore } from '../release/manifest-store.js';
import { validManifest, type ReleaseSource } from '../release/release-stager.js';

/** Where a release's manifest comes from. */
export interface ManifestSources {
  readonly manifests?: ManifestStore | undefined;
  readonly source: ReleaseSource;
}

/**
 * The system parts of `releaseId` (undefined: it declares none). The stored manifest is used when it still hashes
 * to the release id; otherwise the full manifest is fetched and checked the same way.
 */
export async function systemPartsOf(releaseId: string, sources: ManifestSources, signal: AbortSignal): Promise<SystemParts | undefined> {
  return (await trustedManifestOf(releaseId, sources, signal)).system;
}

/** The manifest of `releaseId` as this agent trusts it: the stored copy when it still hashes to the id, else fetched and checked. */
export async function trustedManifestOf(releaseId: string, sources: ManifestSources, signal: AbortSignal): Promise<Manifest> {
  const stored = await sources.manifests?.read(releaseId);
  if (stored !== undefined) {
    try {
      return validManifest(stored, releaseId);
    } catch {
      // A stored copy that no longer proves itself: fetch it again below.
    }
  }
  const answer = await sources.source.fetchManifest(releaseId, signal);
  if ('base' in answer) throw new LockstepError('failed', `the server sent a delta for release ${shortId(releaseId)} when asked for its full manifest`);
  return validManifest(answer, releaseId);
}
