/** What changes between two releases, and what a host running one must fetch to run the other. */
import type { Manifest, ManifestEntry } from './manifest.js';

/** The difference between two manifests. Paths are sorted. */
export interface ManifestDiff {
  readonly added: readonly string[];
  readonly changed: readonly string[];
  readonly removed: readonly string[];
  /** Bytes of content in `to` whose hash `from` does not have (what a host must fetch). */
  readonly fetchBytes: number;
  readonly fetchBlobs: number;
}

function sameEntry(a: ManifestEntry, b: ManifestEntry): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'file' && b.type === 'file') return a.sha256 === b.sha256 && a.mode === b.mode;
  if (a.type === 'dir' && b.type === 'dir') return a.mode === b.mode;
  if (a.type === 'symlink' && b.type === 'symlink') return a.target === b.target;
  return false;
}

/** Compares `from` (null: nothing deployed yet) with `to`. */
export function diffManifests(from: Manifest | null, to: Manifest): ManifestDiff {
  const before = new Map((from?.entries ?? []).map((entry) => [entry.path, entry]));
  const after = new Map(to.entries.map((entry) => [entry.path, entry]));
  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  for (const [path, entry] of after) {
    const old = before.get(path);
    if (old === undefined) added.push(path);
    else if (!sameEntry(old, entry)) changed.push(path);
  }
  for (const path of before.keys()) if (!after.has(path)) removed.push(path);
  const have = new Set<string>();
  for (const entry of from?.entries ?? []) if (entry.type === 'file') have.add(entry.sha256);
  const fetched = new Map<string, number>();
  for (const entry of to.entries) if (entry.type === 'file' && !have.has(entry.sha256)) fetched.set(entry.sha256, entry.size);
  let fetchBytes = 0;
  for (const size of fetched.values()) fetchBytes += size;
  return { added: added.sort(), changed: changed.sort(), removed: removed.sort(), fetchBytes, fetchBlobs: fetched.size };
}
