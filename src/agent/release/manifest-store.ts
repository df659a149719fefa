/**
 * The manifests of the releases this agent staged, kept in
 * STATE_DIR/manifests/<release-id>.json (written atomically, 0600) so that
 * the next release can be fetched as a delta against one of them. A stored
 * manifest is only ever a starting point: the manifest rebuilt from it and a
 * delta must hash to the release id asked for, or the full one is fetched.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../content/atomic-file.js';
import type { Manifest } from '../../core/manifest.js';
import { isReleaseId } from './deploy-layout.js';
import type { UntrustedManifest } from './release-stager.js';
import { ifMissing } from '../../core/errors.js';

export class ManifestStore {
  constructor(readonly dir: string) {}

  private pathOf(releaseId: string): string {
    if (!isReleaseId(releaseId)) throw new Error(`"${releaseId}" is not a release id`);
    return join(this.dir, `${releaseId}.json`);
  }

  /** The stored manifest of a release, or undefined when there is none or it cannot be read as one. */
  async read(releaseId: string): Promise<UntrustedManifest | undefined> {
    const text = await ifMissing(readFile(this.pathOf(releaseId), 'utf8'));
    if (text === undefined) return undefined;
    try {
      const value = JSON.parse(text) as Partial<UntrustedManifest> | null;
      if (value === null || typeof value !== 'object' || typeof value.app !== 'string' || typeof value.version !== 'string' || !Array.isArray(value.entries)) return undefined;
      return value as UntrustedManifest;
    } catch {
      return undefined;
    }
  }

  /** Stores a (validated) manifest under its release id. */
  async write(releaseId: string, manifest: Manifest): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.pathOf(releaseId), JSON.stringify(manifest), 0o600);
  }

  /** Deletes every stored manifest (and tmp leftover) but those of `keep`: called after pruning with the releases still on disk. */
  async retain(keep: Iterable<string>): Promise<string[]> {
    const wanted = new Set([...keep].map((id) => `${id}.json`));
    const names = (await ifMissing(readdir(this.dir))) ?? [];
    const removed: string[] = [];
    for (const name of names) {
      if (wanted.has(name)) continue;
      await rm(join(this.dir, name), { force: true });
      removed.push(name);
    }
    return removed;
  }
}
