/**
 * `drift revert` of a package finding: the host gets back the version its
 * active release declares, installed from the release's own .deb (the
 * verified blob of the agent's cache, fetched from the server when the cache
 * lacks it), or by apt for a `name`+`version` entry. A package the active
 * release does not declare cannot be put back (Lockstep holds no copy of a
 * version it never shipped) unless the finding is a hand install, which a
 * revert removes. The caller runs it through DriftMonitor.ownPackageChange.
 */
import { LockstepError } from '../../core/errors.js';
import type { BlobCache } from '../../content/blob-cache.js';
import { shortId } from '../../core/manifest.js';
import { deployLayout } from '../release/deploy-layout.js';
import { readCurrentReleaseId } from '../release/activator.js';
import { installDebs, installWithApt, removePackages, requireDpkgDatabase } from './package-installer.js';
import { trustedManifestOf, type ManifestSources } from './release-system-parts.js';

/** What a package revert needs from the agent. */
export interface PackageRevertContext extends ManifestSources {
  readonly root: string;
  /** DEPLOY_TO (null: unknown, no active release). */
  readonly deployTo: string | null;
  readonly cache: BlobCache;
  readonly fetchBlob: (hash: string, signal: AbortSignal) => Promise<AsyncIterable<Uint8Array>>;
  readonly signal: AbortSignal;
}

/** Puts package `name` back to its released version; `baselineVersion` is what the finding expected (null: not installed). */
export async function reinstallReleasedPackage(context: PackageRevertContext, name: string, baselineVersion: string | null): Promise<void> {
  const { root, signal } = context;
  await requireDpkgDatabase(root);
  const releaseId = context.deployTo === null ? null : await readCurrentReleaseId(deployLayout(root, context.deployTo));
  const manifest = releaseId === null ? undefined : await trustedManifestOf(releaseId, context, signal);
  const declared = manifest?.system?.packages.find((entry) => entry.name === name);
  if (declared === undefined) {
    if (baselineVersion === null) {
      // Installed by hand where the baseline had nothing: the revert removes it.
      await removePackages(root, [name], signal);
      return;
    }
    const release = releaseId === null ? 'no release runs on this host' : `the active release ${shortId(releaseId)} does not declare it`;
    throw new Error(
      `${name} ${baselineVersion} cannot be reinstalled: ${release}, so Lockstep holds no .deb of that version (it was on the host before, not shipped by Lockstep); reinstall it by hand, accept the new version (lockstep drift accept), or declare the package in a release`,
    );
  }
  if (declared.kind === 'apt') {
    await installWithApt(root, [declared], signal);
    return;
  }
  const entry = manifest?.entries.find((candidate) => candidate.path === declared.deb);
  if (entry?.type !== 'file') throw new LockstepError('failed', `${declared.deb} of release ${shortId(releaseId ?? '')} is not a file of its manifest`);
  // The cache holds verified blobs only: the exact bytes the release shipped (not the tree's copy, which may have drifted).
  // Only the pristine blob will do: a blob fetched for a 0644 file exists as its mode variant alone, which is linked
  // into release trees and so may have been edited in place.
  if (!context.cache.hasBlob(entry.sha256)) await context.cache.put(entry.sha256, await context.fetchBlob(entry.sha256, signal), entry.size);
  await installDebs(root, [context.cache.pathOf(entry.sha256)], signal);
}

