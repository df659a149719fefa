/**
 * The scanner's stat cache: for each hashed file, the lstat fields seen when
 * it was hashed and the hash. A file whose fields are all unchanged is not
 * hashed again. Kept in memory between scans and persisted as one JSON file
 * in a state directory, written atomically (tmp file, fsync, rename).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../content/atomic-file.js';
import type { SnapshotEntry } from '../core/drift.js';

/** What the cache remembers of one file: its stat signature when hashed, and the hash. */
export interface CachedFile {
  /** "size:mtimeNs:ctimeNs:ino:mode:uid:gid" (see EntryStat). */
  readonly signature: string;
  readonly sha256: string;
  /**
   * The snapshot entry last built from this record (memory only). Scans reuse it for an
   * unchanged file instead of allocating 100,000 equal objects per scan.
   */
  entry?: SnapshotEntry;
}

const FORMAT = 2;

/** Path (relative to the root) → what it was when hashed. */
export class StatCache {
  readonly root: string;
  readonly #files: Map<string, CachedFile>;
  #dirty = false;

  constructor(root: string, files: Map<string, CachedFile> = new Map()) {
    this.root = root;
    this.#files = files;
  }

  /** Number of cached files. */
  get size(): number {
    return this.#files.size;
  }

  /** Whether the cache changed since it was loaded or saved. */
  get dirty(): boolean {
    return this.#dirty;
  }

  /** The cached record if size, mtime, ctime (ns), inode, mode, uid and gid all still match, else undefined. */
  lookup(path: string, signature: string): CachedFile | undefined {
    const cached = this.#files.get(path);
    return cached !== undefined && cached.signature === signature ? cached : undefined;
  }

  /** Remembers a hash for a stat signature. */
  set(path: string, signature: string, sha256: string): void {
    this.#files.set(path, { signature, sha256 });
    this.#dirty = true;
  }

  /** Forgets one path. */
  delete(path: string): void {
    if (this.#files.delete(path)) this.#dirty = true;
  }

  /** Forgets every path for which `keep` is false. */
  retain(keep: (path: string) => boolean): void {
    for (const path of this.#files.keys()) if (!keep(path)) this.delete(path);
  }

  /** The JSON text of the cache. */
  serialize(): string {
    const rows: string[][] = [];
    for (const [path, file] of this.#files) rows.push([path, file.signature, file.sha256]);
    return JSON.stringify({ format: FORMAT, root: this.root, files: rows });
  }

  /** Marks the cache as saved. */
  markClean(): void {
    this.#dirty = false;
  }
}

/** Why a cache file was not used; the scanner then starts with an empty cache (and hashes everything). */
export type CacheLoadResult =
  | { readonly kind: 'loaded'; readonly cache: StatCache }
  | { readonly kind: 'missing'; readonly cache: StatCache }
  | { readonly kind: 'unusable'; readonly cache: StatCache; readonly reason: string };

/** The cache file of a root inside a state directory. */
export function statCachePath(stateDir: string): string {
  return join(stateDir, 'fim-stat-cache.json');
}

/** Loads the cache file; a missing, corrupt or other root's cache yields an empty cache, never an exception. */
export async function loadStatCache(file: string, root: string): Promise<CacheLoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? String(error.code) : String(error);
    return code === 'ENOENT' ? { kind: 'missing', cache: new StatCache(root) } : { kind: 'unusable', cache: new StatCache(root), reason: code };
  }
  try {
    const parsed = JSON.parse(text) as { format?: unknown; root?: unknown; files?: unknown };
    if (parsed.format !== FORMAT) return { kind: 'unusable', cache: new StatCache(root), reason: `unknown format ${String(parsed.format)}` };
    if (parsed.root !== root) return { kind: 'unusable', cache: new StatCache(root), reason: `cache is for ${String(parsed.root)}` };
    if (!Array.isArray(parsed.files)) return { kind: 'unusable', cache: new StatCache(root), reason: 'no file list' };
    const files = new Map<string, CachedFile>();
    for (const row of parsed.files as unknown[]) {
      if (!Array.isArray(row) || row.length !== 3 || !row.every((cell) => typeof cell === 'string')) return { kind: 'unusable', cache: new StatCache(root), reason: 'malformed row' };
      const [path, signature, sha256] = row as [string, string, string];
      files.set(path, { signature, sha256 });
    }
    return { kind: 'loaded', cache: new StatCache(root, files) };
  } catch (error) {
    return { kind: 'unusable', cache: new StatCache(root), reason: error instanceof Error ? error.message : String(error) };
  }
}

/** Writes the cache file atomically (mode 0600) if the cache changed. */
export async function saveStatCache(file: string, cache: StatCache): Promise<void> {
  if (!cache.dirty) return;
  await writeFileAtomic(file, cache.serialize(), 0o600);
  cache.markClean();
}
