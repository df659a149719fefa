/**
 * The release half of a host's baseline: the manifest of the release
 * `current` points at, from the agent's manifest store or, when the store
 * lacks it (an agent upgraded after staging), from the server. A manifest is
 * trusted only when it hashes to the release id.
 */
import type { Logger } from 'pino';
import { releaseIdOf, withSystem, type Manifest, type ManifestEntry } from '../../core/manifest.js';
import type { ManifestStore } from './manifest-store.js';
import type { UntrustedDelta, UntrustedManifest } from './release-stager.js';

/** Where a missing manifest can come from (the server). */
export type ManifestFetcher = (releaseId: string, signal: AbortSignal) => Promise<UntrustedManifest | UntrustedDelta>;

/** The manifest entries of a release, or undefined when no trustworthy manifest can be had. */
export async function loadReleaseManifest(
  releaseId: string,
  store: ManifestStore,
  fetch: ManifestFetcher | undefined,
  logger: Logger,
  signal: AbortSignal,
): Promise<readonly ManifestEntry[] | undefined> {
  const stored = trusted(releaseId, await store.read(releaseId));
  if (stored !== undefined) return stored.entries;
  if (fetch === undefined) return undefined;
  try {
    const answer = await fetch(releaseId, signal);
    const manifest = 'removed' in answer ? undefined : trusted(releaseId, answer);
    if (manifest === undefined) {
      logger.error({ releaseId }, 'the server sent a manifest that does not match the active release; release files are not checked for drift');
      return undefined;
    }
    await store.write(releaseId, manifest).catch((error: unknown) => logger.warn({ err: error }, 'could not store the manifest of the active release'));
    return manifest.entries;
  } catch (error) {
    if (signal.aborted) throw error;
    logger.warn({ err: error, releaseId }, 'cannot get the manifest of the active release; release files are not checked for drift until it can be had');
    return undefined;
  }
}

function trusted(releaseId: string, manifest: UntrustedManifest | undefined): Manifest | undefined {
  if (manifest === undefined) return undefined;
  const entries = manifest.entries.filter((entry): entry is ManifestEntry => entry.type === 'file' || entry.type === 'dir' || entry.type === 'symlink');
  if (entries.length !== manifest.entries.length) return undefined;
  const candidate: Manifest = withSystem({ app: manifest.app, version: manifest.version, entries }, manifest);
  return releaseIdOf(candidate) === releaseId ? candidate : undefined;
}
