/**
 * Manifest deltas for agents: what changed from a release a host already has
 * to the one it is asked to stage. The agent rebuilds the full manifest from
 * its stored copy of the base plus the delta and checks the release id, so a
 * delta is an optimisation of the transfer only, never a source of trust.
 */
import type { ManifestDelta } from '../../api/schemas.js';
import { canonicalManifest, type Manifest, type ManifestEntry } from '../../core/manifest.js';

function sameEntry(a: ManifestEntry, b: ManifestEntry): boolean {
  if (a.type !== b.type) return false;
  switch (a.type) {
    case 'file': {
      const other = b as typeof a;
      return a.mode === other.mode && a.size === other.size && a.sha256 === other.sha256;
    }
    case 'dir':
      return a.mode === (b as typeof a).mode;
    case 'symlink':
      return a.target === (b as typeof a).target;
  }
}

/** The delta from `base` (release id `baseId`) to `next`: canonical entries of `next` that are new or differ, and paths only `base` has. */
export function manifestDeltaOf(baseId: string, base: Manifest, next: Manifest): ManifestDelta {
  const before = new Map(base.entries.map((entry) => [entry.path, entry]));
  const entries: ManifestEntry[] = [];
  const canonical = canonicalManifest(next);
  for (const entry of canonical.entries) {
    const old = before.get(entry.path);
    before.delete(entry.path);
    if (old === undefined || !sameEntry(old, entry)) entries.push(entry);
  }
  return { base: baseId, app: canonical.app, version: canonical.version, entries, removed: [...before.keys()].sort(), ...(canonical.system === undefined ? {} : { system: { files: [...canonical.system.files], packages: [...canonical.system.packages] } }) };
}
