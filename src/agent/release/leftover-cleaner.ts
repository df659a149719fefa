/**
 * Start-up cleanup of what a killed agent leaves in DEPLOY_TO: staging dirs,
 * temporary `current` links, and half-written variable and secret files.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicTmpPrefix } from '../../content/atomic-file.js';
import { removeTree } from '../../content/remove-tree.js';
import { CURRENT_TMP_PREFIX, ENV_FILE } from './activator.js';
import type { DeployLayout } from './deploy-layout.js';
import { STAGING_PREFIX } from './release-stager.js';
import { secretsDir } from './secret-files.js';
import { ifMissing } from '../../core/errors.js';

/** Removes DEPLOY_TO/releases/.staging-*, DEPLOY_TO/current.tmp-*, DEPLOY_TO/shared/.lockstep.env.tmp-* and DEPLOY_TO/shared/secrets/.*.tmp-*; returns the paths removed. */
export async function removeLeftovers(layout: DeployLayout): Promise<string[]> {
  const removed: string[] = [];
  for (const [dir, prefix] of [
    [layout.releasesDir, STAGING_PREFIX],
    [layout.deployTo, CURRENT_TMP_PREFIX],
    [layout.sharedDir, atomicTmpPrefix(ENV_FILE)],
    // Secret names never start with a dot: a dotted name there is a temporary file (`.NAME.tmp-…`) a killed agent left.
    [secretsDir(layout), '.'],
  ] as const) {
    for (const name of await namesIn(dir)) {
      if (!name.startsWith(prefix)) continue;
      const path = join(dir, name);
      await removeTree(path);
      removed.push(path);
    }
  }
  return removed;
}

async function namesIn(dir: string): Promise<string[]> {
  return (await ifMissing(readdir(dir))) ?? [];
}
