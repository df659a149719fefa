/**
 * The scanner's stat cache: for each hashed file, the lstat fields seen when
 * it was hashed and the hash. A file whose fields are all unchanged is not
 * hashed again. Kept in memory between scans and persisted as one JSON file
 * in a state directory, written atomically (tmp file, fsync, rename).
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { RawStat } from './worker-protocol.js';

/** What the cache remembers of one file. */
export interface CachedFile {
  readonly size: number;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  readonly ino: bigint;
  /** Full st_mode. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly sha256: string;
}

const FORMAT = 1;

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

  /** The cached hash if every stat field still matches, else undefined. */
  lookup(path: string, stat: RawStat): string | undefined {
    const cached = this.#files.get(path);
    if (
      cached === undefined ||
      cached.size !== stat.size ||
      cached.mtimeNs !== stat.mtimeNs ||
      cached.ctimeNs !== stat.ctimeNs ||
      cached.ino !== stat.ino ||
      cached.mode !== stat.mode ||
      cached.uid !== stat.uid ||
      cached.gid !== stat.gid
    ) {
      return undefined;
    }
    return cached.sha256;
  }

  /** Remembers a hash for a stat. */
  set(path: string, stat: RawStat, sha256: string): void {
    this.#files.set(path, { size: stat.size, mtimeNs: stat.mtimeNs, ctimeNs: stat.ctimeNs, ino: stat.ino, mode: stat.mode, uid: stat.uid, gid: stat.gid, sha256 });
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

  /** The JSON text of the cache (bigints as decimal strings). */
  serialize(): string {
    const rows: (string | number)[][] = [];
    for (const [path, file] of this.#files) {
      rows.push([path, file.size, file.mtimeNs.toString(), file.ctimeNs.toString(), file.ino.toString(), file.mode, file.uid, file.gid, file.sha256]);
    }
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
      if (!Array.isArray(row) || row.length !== 9) return { kind: 'unusable', cache: new StatCache(root), reason: 'malformed row' };
      const [path, size, mtimeNs, ctimeNs, ino, mode, uid, gid, sha256] = row as [string, number, string, string, string, number, number, number, string];
      files.set(path, { size, mtimeNs: BigInt(mtimeNs), ctimeNs: BigInt(ctimeNs), ino: BigInt(ino), mode, uid, gid, sha256 });
    }
    return { kind: 'loaded', cache: new StatCache(root, files) };
  } catch (error) {
    return { kind: 'unusable', cache: new StatCache(root), reason: error instanceof Error ? error.message : String(error) };
  }
}

/** Writes the cache file atomically (mode 0600) if the cache changed. */
export async function saveStatCache(file: string, cache: StatCache): Promise<void> {
  if (!cache.dirty) return;
  const tmp = join(dirname(file), `.fim-stat-cache.tmp-${randomBytes(6).toString('hex')}`);
  const handle = await open(tmp, 'wx', 0o600);
  try {
    try {
      await handle.writeFile(cache.serialize());
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  const dir = await open(dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  cache.markClean();
}
