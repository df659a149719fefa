/**
 * Where things live on a host, under the agent's --root: the application's
 * deploy_to with its releases/, current and shared/.
 */
import { readdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { ifMissing, LockstepError } from '../../core/errors.js';

const HEX64 = /^[0-9a-f]{64}$/;

/** The paths of one application's deployment on a host (all already under --root). */
export interface DeployLayout {
  /** DEPLOY_TO as the host sees it (under --root). */
  readonly deployTo: string;
  readonly releasesDir: string;
  /** The `current` symlink. */
  readonly currentLink: string;
  readonly sharedDir: string;
}

/**
 * Maps an absolute host path to the agent's root. Refuses relative paths and
 * `..` segments, since `join` would otherwise let a server-sent path escape
 * --root.
 */
export function hostPath(root: string, absolutePath: string): string {
  if (!absolutePath.startsWith('/') || absolutePath.includes('\0')) {
    throw new LockstepError('bad-input', `"${absolutePath}" is not an absolute path`);
  }
  if (absolutePath.split('/').includes('..')) {
    throw new LockstepError('bad-input', `"${absolutePath}" contains a ".." segment`);
  }
  return join(root, posix.normalize(absolutePath));
}

/** The layout of `deployTo` (an absolute host path, as in the config) under `root`. */
export function deployLayout(root: string, deployTo: string): DeployLayout {
  const base = hostPath(root, deployTo);
  return {
    deployTo: base,
    releasesDir: join(base, 'releases'),
    currentLink: join(base, 'current'),
    sharedDir: join(base, 'shared'),
  };
}

/** The directory of one release. */
export function releaseDir(layout: DeployLayout, releaseId: string): string {
  if (!HEX64.test(releaseId)) throw new LockstepError('bad-input', `"${releaseId}" is not a release id`);
  return join(layout.releasesDir, releaseId);
}

/** Whether a name is a release id (64 lowercase hex digits). */
export function isReleaseId(name: string): boolean {
  return HEX64.test(name);
}

/** The ids of the release dirs in releases/ (none when it does not exist yet). */
export async function releasesOnDisk(layout: DeployLayout): Promise<string[]> {
  return ((await ifMissing(readdir(layout.releasesDir))) ?? []).filter(isReleaseId);
}
