/**
 * Pruning: after an activation, keeps the most recently activated releases
 * (by the release dir's mtime, which activation touches) and deletes the rest,
 * never the active release nor the one active before it.
 */
import { randomBytes } from 'node:crypto';
import { lstat, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { removeTree } from '../../content/remove-tree.js';
import { isReleaseId, type DeployLayout } from './deploy-layout.js';
import { STAGING_PREFIX } from './release-stager.js';

/** Inputs of `pruneReleases`. */
export interface PruneOptions {
  /** How many release dirs to keep (the most recently activated ones). */
  readonly keep: number;
  /** Releases never deleted whatever their age: the active one and the one before it. */
  readonly protect: readonly (string | null)[];
  /** Wraps the removal of each release dir (the stat records carry the unlinks of shared inodes, see ReleaseVerifier.removingRelease). */
  readonly removing?: (releaseId: string, remove: () => Promise<void>) => Promise<void>;
}

/** The release ids that pruning should delete, newest first kept: a pure choice over (id, mtime) pairs. */
export function releasesToPrune(releases: readonly { readonly id: string; readonly mtimeMs: number }[], options: PruneOptions): string[] {
  const newestFirst = [...releases].sort((a, b) => b.mtimeMs - a.mtimeMs || (a.id < b.id ? -1 : 1));
  const protectedIds = new Set(options.protect.filter((id): id is string => id !== null));
  return newestFirst
    .slice(Math.max(0, options.keep))
    .map((release) => release.id)
    .filter((id) => !protectedIds.has(id));
}

/**
 * Deletes old release dirs. Each is first renamed to a staging name, so a
 * crash halfway through a deletion never leaves a partial dir under a release
 * id (which staging would take for complete); the start-up cleanup removes it.
 */
export async function pruneReleases(layout: DeployLayout, options: PruneOptions): Promise<string[]> {
  const releases: { id: string; mtimeMs: number }[] = [];
  for (const name of await readdir(layout.releasesDir)) {
    if (!isReleaseId(name)) continue;
    const info = await lstat(join(layout.releasesDir, name));
    if (info.isDirectory()) releases.push({ id: name, mtimeMs: info.mtimeMs });
  }
  const doomed = releasesToPrune(releases, options);
  for (const id of doomed) {
    const remove = async (): Promise<void> => {
      const moved = join(layout.releasesDir, `${STAGING_PREFIX}pruned-${id}-${randomBytes(6).toString('hex')}`);
      await rename(join(layout.releasesDir, id), moved);
      await removeTree(moved);
    };
    await (options.removing === undefined ? remove() : options.removing(id, remove));
  }
  return doomed;
}
