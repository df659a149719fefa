/**
 * The file integrity scanner: walks a tree with lstat (symlinks are never
 * followed), keeps a stat cache so that only entries whose stat changed are
 * hashed, and hashes in worker threads. Every per-entry failure (unreadable,
 * vanished mid-scan, directory loop, too large) is a value in the result.
 */
import { lstat, readlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { EntryProblem, SnapshotEntry, SnapshotEntryType, SpecialKind } from '../core/drift.js';
import { compileGlobs } from './glob.js';
import type { StatCache } from './stat-cache.js';
import { FimWorkerPool } from './worker-pool.js';
import { entryStat } from './entry-stat.js';
import { NUMBERS_PER_ENTRY } from './worker-protocol.js';
import type { EntryStat, HashResult, ListResult } from './worker-protocol.js';

/** How to scan. */
export interface ScanOptions {
  /** If given, only entries matching one of these globs are reported (directories are still walked). */
  readonly include?: readonly string[];
  /** Entries matching one of these globs are skipped, directories with their whole subtree. */
  readonly exclude?: readonly string[];
  /** The stat cache to consult and update; without one every file is hashed. */
  readonly cache?: StatCache;
  /** Re-hash every file, ignoring (but refreshing) the cache. */
  readonly full?: boolean;
  /** Files larger than this are reported as `too-large`, not hashed. Default 4 GiB. */
  readonly maxFileBytes?: number;
  /** Worker threads to use (kept alive by the caller between scans); without one a pool is made and closed. */
  readonly pool?: FimWorkerPool;
  /** Scan only these paths (relative to root; a directory with its subtree) instead of the whole tree. */
  readonly paths?: readonly string[];
  /** Called with each batch of absolute paths just before it is hashed (tests use it to remove files mid-scan). */
  readonly beforeHash?: (paths: readonly string[]) => void | Promise<void>;
  /**
   * Stops the scan early (a deployment starts): requests still queued for the workers are dropped and
   * scanTree rejects with the signal's reason once the ones in flight are back.
   */
  readonly signal?: AbortSignal;
  /** Wall clock in epoch nanoseconds (tests); default Date.now(). */
  readonly nowNs?: () => bigint;
}

/** What a scan did, for logs, metrics and tests. */
export interface ScanCounters {
  dirs: number;
  files: number;
  symlinks: number;
  others: number;
  /** Files hashed by this scan, and their bytes. */
  hashedFiles: number;
  hashedBytes: number;
  /** Files whose hash came from the stat cache. */
  cacheHits: number;
  /** Entries with a problem (unreadable, vanished, loop, too-large). */
  problems: number;
}

/** The result of a scan: entries sorted by path, and which paths it covered. */
export interface ScanResult {
  readonly root: string;
  /** '' for the whole tree, else the targeted paths (for mergeRescan). */
  readonly scannedPaths: readonly string[];
  readonly entries: readonly SnapshotEntry[];
  readonly counters: ScanCounters;
  /** Set when the root itself could not be read; `entries` is then empty and means nothing. */
  readonly rootError?: string;
  readonly elapsedMs: number;
}

/** The default per-file hashing cap: 4 GiB. */
export const DEFAULT_MAX_FILE_BYTES = 4 * 1024 ** 3;

// Files whose mtime or ctime is this close to the scan's start are hashed but not cached: file
// timestamps come from a coarse clock (a few ms), so a second write within the same tick would
// leave every stat field unchanged (git's "racy clean" problem).
const RACY_WINDOW_NS = 1_000_000_000n;
const BATCH_FILES = 64;
const BATCH_BYTES = 8 * 1024 * 1024;

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const FILE_KIND = { type: 'file' } as const;
const DIR_KIND = { type: 'dir' } as const;
const SYMLINK_KIND = { type: 'symlink' } as const;

/** The entry type (and special kind) of an st_mode; a switch, because this runs once per entry. */
function kindOf(mode: number): { readonly type: SnapshotEntryType; readonly special?: SpecialKind } {
  switch (mode & S_IFMT) {
    case 0o100000:
      return FILE_KIND;
    case 0o040000:
      return DIR_KIND;
    case S_IFLNK:
      return SYMLINK_KIND;
    case 0o010000:
      return { type: 'other', special: 'fifo' };
    case 0o140000:
      return { type: 'other', special: 'socket' };
    case 0o020000:
      return { type: 'other', special: 'char-device' };
    case 0o060000:
      return { type: 'other', special: 'block-device' };
    default:
      return { type: 'other', special: 'unknown' };
  }
}

interface PendingHash {
  readonly path: string;
  readonly absolute: string;
  readonly stat: EntryStat;
}

/** Scans `root` (or `options.paths` under it) and returns its entries. */
export async function scanTree(root: string, options: ScanOptions = {}): Promise<ScanResult> {
  const started = performance.now();
  const absoluteRoot = resolve(root);
  const nowNs = options.nowNs ?? (() => BigInt(Date.now()) * 1_000_000n);
  const scanStartNs = nowNs();
  const racySinceNs = String(scanStartNs - RACY_WINDOW_NS);
  const excluded = compileGlobs(options.exclude ?? []);
  const excluding = (options.exclude ?? []).length > 0;
  const including = options.include !== undefined && options.include.length > 0;
  const included = compileGlobs(options.include ?? []);
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const cache = options.cache;
  const full = options.full === true;
  const pool = options.pool ?? new FimWorkerPool();
  const counters: ScanCounters = { dirs: 0, files: 0, symlinks: 0, others: 0, hashedFiles: 0, hashedBytes: 0, cacheHits: 0, problems: 0 };
  // An array, not a Map: at 100,000 entries every hash-table insert of a fresh path string shows in the profile.
  const entries: SnapshotEntry[] = [];
  const directoryIndex = new Map<string, number>();
  const seenFiles = new Set<string>();
  const visitedDirs = new Set<string>();
  const hashJobs: Promise<void>[] = [];
  let batch: PendingHash[] = [];
  let batchBytes = 0;

  const put = (entry: SnapshotEntry): void => {
    if (entry.problem !== undefined) counters.problems += 1;
    if (including && !included(entry.path)) return;
    if (entry.type === 'dir') directoryIndex.set(entry.path, entries.length);
    entries.push(entry);
  };

  const flushBatch = (): void => {
    if (batch.length === 0) return;
    const jobs = batch;
    batch = [];
    batchBytes = 0;
    hashJobs.push(hashBatch(jobs));
  };

  const hashBatch = async (jobs: readonly PendingHash[]): Promise<void> => {
    await options.beforeHash?.(jobs.map((job) => job.absolute));
    let results: readonly HashResult[];
    try {
      results = await pool.hash({ paths: jobs.map((job) => job.absolute), signatures: jobs.map((job) => job.stat.signature), racySinceNs }, options.signal);
    } catch (error) {
      // Aborted: nothing to record; scanTree rejects once every batch is back.
      if (options.signal?.aborted) return;
      const detail = error instanceof Error ? error.message : String(error);
      results = jobs.map(() => ({ error: detail }));
    }
    jobs.forEach((job, index) => {
      const result = results[index] ?? { error: 'no result' };
      if (result.sha256 === undefined) {
        put({ ...statFields(job.path, job.stat), ...hashProblem(result.error ?? 'unknown') });
        cache?.delete(job.path);
        return;
      }
      counters.hashedFiles += 1;
      counters.hashedBytes += result.bytes ?? 0;
      const after = result.stat ?? job.stat;
      const { stat } = job;
      put(result.stat === undefined ? { path: job.path, type: 'file', mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, size: stat.size, sha256: result.sha256 } : { ...statFields(job.path, after), sha256: result.sha256 });
      // Changed while it was read (the worker then sends the new stat), or too recent to trust by its stat.
      if (result.stat !== undefined || result.racy === true) cache?.delete(job.path);
      else cache?.set(job.path, after.signature, result.sha256);
    });
  };

  /** Puts the cached entry of a file whose stat signature the cache vouches for (not in a full scan); false if none. */
  const takeCached = (path: string, signature: string, mode: number, uid: number, gid: number, size: number): boolean => {
    const cached = full ? undefined : cache?.lookup(path, signature);
    if (cached === undefined) return false;
    counters.cacheHits += 1;
    // The signature includes mode, uid, gid and size, so an entry built for it is still exact.
    cached.entry ??= { path, type: 'file', mode: mode & 0o7777, uid, gid, size, sha256: cached.sha256 };
    put(cached.entry);
    return true;
  };

  const visit = (path: string, absolute: string, stat: EntryStat, target: string | undefined): string | undefined => {
    const kind = kindOf(stat.mode);
    switch (kind.type) {
      case 'dir': {
        counters.dirs += 1;
        const key = stat.dirKey;
        if (visitedDirs.has(key)) {
          put({ ...statFields(path, stat), problem: 'loop', detail: 'directory already visited (same device and inode): a bind mount loop?' });
          return undefined;
        }
        visitedDirs.add(key);
        put(statFields(path, stat));
        return absolute;
      }
      case 'file': {
        counters.files += 1;
        seenFiles.add(path);
        if (stat.size > maxFileBytes) {
          put({ ...statFields(path, stat), problem: 'too-large', detail: `larger than the ${maxFileBytes}-byte hashing cap` });
          return undefined;
        }
        if (takeCached(path, stat.signature, stat.mode, stat.uid, stat.gid, stat.size)) return undefined;
        batch.push({ path, absolute, stat });
        batchBytes += stat.size;
        if (batch.length >= BATCH_FILES || batchBytes >= BATCH_BYTES) flushBatch();
        return undefined;
      }
      case 'symlink':
        counters.symlinks += 1;
        put(target === undefined ? { ...statFields(path, stat), problem: 'unreadable', detail: 'readlink failed' } : { ...statFields(path, stat), target });
        return undefined;
      case 'other':
        counters.others += 1;
        put({ ...statFields(path, stat), special: kind.special ?? 'unknown' });
        return undefined;
    }
  };

  const walk = async (dirPath: string, dirAbsolute: string): Promise<void> => {
    let listing: ListResult | { readonly error: string; readonly names: readonly string[] };
    try {
      listing = await pool.list(dirAbsolute, options.signal);
    } catch (error) {
      if (options.signal?.aborted) return;
      listing = { names: [], error: error instanceof Error ? error.message : String(error) };
    }
    if (listing.error !== undefined || !('numbers' in listing)) {
      const code = listing.error ?? 'unknown';
      if (dirPath === '') throw new RootUnreadable(code);
      const at = directoryIndex.get(dirPath);
      const previous = at === undefined ? undefined : entries[at];
      if (at !== undefined && previous !== undefined) {
        counters.problems += 1;
        entries[at] = { ...previous, ...listingProblem(code) };
      }
      return;
    }
    const { names, numbers, signatures, dirKeys, targets, errors } = listing;
    const subdirs: Promise<void>[] = [];
    for (let index = 0; index < names.length; index++) {
      const name = names[index] as string;
      const path = dirPath === '' ? name : `${dirPath}/${name}`;
      if (excluding && excluded(path)) continue;
      const signature = signatures[index] as string;
      if (signature === '') {
        put(vanishedOrUnreadable(path, errors[index] || 'unknown'));
        continue;
      }
      const base = index * NUMBERS_PER_ENTRY;
      const mode = numbers[base] as number;
      // The common case of a periodic scan, without a stat object or an absolute path: a file its cache vouches for.
      if ((mode & S_IFMT) === S_IFREG && (numbers[base + 3] as number) <= maxFileBytes && takeCached(path, signature, mode, numbers[base + 1] as number, numbers[base + 2] as number, numbers[base + 3] as number)) {
        counters.files += 1;
        seenFiles.add(path);
        continue;
      }
      const stat: EntryStat = { signature, mode: numbers[base] as number, uid: numbers[base + 1] as number, gid: numbers[base + 2] as number, size: numbers[base + 3] as number, dirKey: dirKeys[index] as string };
      const target = (stat.mode & S_IFMT) === S_IFLNK && errors[index] === '' ? (targets[index] as string) : undefined;
      const descend = visit(path, `${dirAbsolute}/${name}`, stat, target);
      if (descend !== undefined) subdirs.push(walk(path, descend));
    }
    flushBatch();
    await Promise.all(subdirs);
  };

  const scannedPaths = options.paths === undefined ? [''] : outermost(options.paths.map(normalizeRelative));
  let rootError: string | undefined;
  try {
    const rootStat = await lstatRaw(absoluteRoot);
    if (typeof rootStat === 'string') throw new RootUnreadable(rootStat);
    if ((rootStat.mode & S_IFMT) !== 0o040000) throw new RootUnreadable('ENOTDIR');
    visitedDirs.add(rootStat.dirKey);
    const starts: Promise<void>[] = [];
    for (const path of scannedPaths) {
      if (path === '') {
        starts.push(walk('', absoluteRoot));
        continue;
      }
      if (path.split('/').includes('..') || excluded(path)) continue;
      // Never reach a targeted path through a symlink: every ancestor must still be a real directory.
      if (!(await ancestorsAreDirectories(absoluteRoot, path))) continue;
      const absolute = `${absoluteRoot}/${path}`;
      const stat = await lstatRaw(absolute);
      if (typeof stat === 'string') {
        if (stat !== 'ENOENT' && stat !== 'ENOTDIR') put(vanishedOrUnreadable(path, stat));
        continue;
      }
      const target = (stat.mode & S_IFMT) === S_IFLNK ? await readlinkOrUndefined(absolute) : undefined;
      const descend = visit(path, absolute, stat, target);
      if (descend !== undefined) starts.push(walk(path, descend));
    }
    await Promise.all(starts);
    flushBatch();
    await Promise.all(hashJobs);
    options.signal?.throwIfAborted();
  } catch (error) {
    if (!(error instanceof RootUnreadable)) throw error;
    rootError = error.message;
    entries.length = 0;
  } finally {
    if (options.pool === undefined) await pool.close();
  }

  if (cache && rootError === undefined) {
    const covered = (path: string): boolean => scannedPaths.some((scanned) => scanned === '' || path === scanned || path.startsWith(`${scanned}/`));
    cache.retain((path) => !covered(path) || seenFiles.has(path));
  }
  const sorted = entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const result = { root: absoluteRoot, scannedPaths, entries: sorted, counters, elapsedMs: performance.now() - started };
  return rootError === undefined ? result : { ...result, rootError };
}

class RootUnreadable extends Error {}

function statFields(path: string, stat: EntryStat): SnapshotEntry {
  const kind = kindOf(stat.mode);
  return { path, type: kind.type, mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, size: kind.type === 'file' ? stat.size : 0 };
}

function vanishedOrUnreadable(path: string, code: string): SnapshotEntry {
  const problem: EntryProblem = code === 'ENOENT' ? 'vanished' : 'unreadable';
  return { path, type: 'other', special: 'unknown', mode: 0, uid: -1, gid: -1, size: 0, problem, detail: code };
}

function listingProblem(code: string): { problem: EntryProblem; detail: string } {
  return code === 'ENOENT' || code === 'ENOTDIR' ? { problem: 'vanished', detail: `${code} while listing` } : { problem: 'unreadable', detail: `${code} while listing` };
}

function hashProblem(code: string): { problem: EntryProblem; detail: string } {
  switch (code) {
    case 'ENOENT':
      return { problem: 'vanished', detail: 'ENOENT: removed before it could be hashed' };
    case 'ELOOP':
    case 'ENOTREG':
    case 'ECHANGED':
      return { problem: 'vanished', detail: `${code}: replaced by another file or kind before it could be hashed` };
    default:
      return { problem: 'unreadable', detail: code };
  }
}

/** The paths not under another one of the list (each entry is then scanned once). */
function outermost(paths: readonly string[]): string[] {
  const unique = [...new Set(paths)].sort();
  return unique.filter((path) => !unique.some((other) => other !== path && (other === '' || path.startsWith(`${other}/`))));
}

function normalizeRelative(path: string): string {
  return path.split('/').filter((segment) => segment !== '' && segment !== '.').join('/');
}

async function lstatRaw(path: string): Promise<EntryStat | string> {
  try {
    return entryStat(await lstat(path, { bigint: true }));
  } catch (error) {
    return error instanceof Error && 'code' in error ? String(error.code) : String(error);
  }
}

async function readlinkOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readlink(path);
  } catch {
    return undefined;
  }
}

async function ancestorsAreDirectories(root: string, path: string): Promise<boolean> {
  const segments = path.split('/');
  let current = root;
  for (const segment of segments.slice(0, -1)) {
    current = `${current}/${segment}`;
    const stat = await lstatRaw(current);
    if (typeof stat === 'string' || (stat.mode & S_IFMT) !== 0o040000) return false;
  }
  return true;
}
