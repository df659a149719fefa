/**
 * Staging: makes DEPLOY_TO/releases/<id> exist, complete, exactly as its
 * manifest says. A release dir is only ever created by renaming a finished
 * staging dir, so its existence means it is complete and staging is skipped
 * (which keeps a rollback to one rename).
 */
import { randomBytes } from 'node:crypto';
import { chmod, link, lstat, mkdir, rename, symlink } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { Logger } from 'pino';
import { LockstepError } from '../core/errors.js';
import {
  manifestProblems,
  releaseIdOf,
  shortId,
  type DirEntry,
  type FileEntry,
  type ForbiddenEntry,
  type Manifest,
  type ManifestEntry,
  type SymlinkEntry,
} from '../core/manifest.js';
import type { BlobCache } from '../content/blob-cache.js';
import { copyWithMode } from '../content/copy-with-mode.js';
import { fsyncDirectory } from '../content/atomic-file.js';
import { removeTree } from '../content/remove-tree.js';
import { releaseDir, type DeployLayout } from './deploy-layout.js';
import { forEachBounded } from './for-each-bounded.js';
import { retry } from './retry.js';

/** A manifest as received: not yet validated, so it may name forbidden kinds. */
export interface UntrustedManifest {
  readonly app: string;
  readonly version: string;
  readonly entries: readonly (ManifestEntry | ForbiddenEntry)[];
}

/** Where release content comes from (the server, in production). */
export interface ReleaseSource {
  /** The manifest of a release. */
  fetchManifest(releaseId: string, signal: AbortSignal): Promise<UntrustedManifest>;
  /** The bytes of one blob, streamed. */
  fetchBlob(hash: string, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
}

/** What staging did. */
export type StageResult =
  | { readonly kind: 'already-staged' }
  | { readonly kind: 'staged'; readonly files: number; readonly blobsFetched: number; readonly bytesFetched: number };

/** Inputs of `stageRelease`. */
export interface StageOptions {
  readonly layout: DeployLayout;
  readonly releaseId: string;
  readonly source: ReleaseSource;
  readonly cache: BlobCache;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Blob downloads in flight at once (default 8). */
  readonly fetchConcurrency?: number;
}

/** Prefix of in-progress staging dirs in releases/; whatever carries it is a leftover after a restart. */
export const STAGING_PREFIX = '.staging-';

const FILE_CONCURRENCY = 16;
const BLOB_FETCH_ATTEMPTS = 6;

/** Makes DEPLOY_TO/releases/<id> exist and match its manifest; fetches only the blobs the cache lacks. */
export async function stageRelease(options: StageOptions): Promise<StageResult> {
  const { layout, releaseId, source, cache, logger, signal } = options;
  const target = releaseDir(layout, releaseId);
  if (await isDirectory(target)) return { kind: 'already-staged' };

  const manifest = validManifest(await source.fetchManifest(releaseId, signal), releaseId);
  const files = manifest.entries.filter((entry): entry is FileEntry => entry.type === 'file');
  const sizes = blobSizes(files, releaseId);

  const missing = await cache.missing(sizes.keys());
  let bytesFetched = 0;
  await forEachBounded(missing, options.fetchConcurrency ?? 8, async (hash) => {
    const stored = await retry(async () => cache.put(hash, await source.fetchBlob(hash, signal), sizes.get(hash)), {
      signal,
      maxAttempts: BLOB_FETCH_ATTEMPTS,
      onRetry: (error, attempt, delayMs) => logger.warn({ err: error, blob: hash, attempt, delayMs }, 'blob download failed; retrying'),
    });
    bytesFetched += stored.size;
  });
  if (missing.length > 0) logger.info({ release: releaseId, blobs: missing.length, bytes: bytesFetched }, 'fetched missing blobs');

  await mkdir(layout.releasesDir, { recursive: true, mode: 0o755 });
  const staging = join(layout.releasesDir, `${STAGING_PREFIX}${releaseId}-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { mode: 0o700 });
  try {
    await buildTree(staging, manifest, cache, signal);
    try {
      await rename(staging, target);
    } catch (error) {
      // Another agent process finished the same release first: theirs is as good as ours.
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await isDirectory(target))) throw error;
      await removeTree(staging);
      return { kind: 'already-staged' };
    }
  } catch (error) {
    await removeTree(staging).catch((cleanupError: unknown) => logger.warn({ err: cleanupError, staging }, 'could not remove staging dir'));
    throw error;
  }
  await fsyncDirectory(layout.releasesDir);
  return { kind: 'staged', files: files.length, blobsFetched: missing.length, bytesFetched };
}

/** Checks a received manifest against every rule and against the release id it was asked for. */
function validManifest(manifest: UntrustedManifest, releaseId: string): Manifest {
  const problems = manifestProblems(manifest.entries);
  const first = problems[0];
  if (first !== undefined) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    throw new LockstepError('failed', `manifest of release ${shortId(releaseId)} is invalid: ${first.path}: ${first.problem}${more}`, problems);
  }
  // No problems means no forbidden kinds are left.
  const entries = manifest.entries as readonly ManifestEntry[];
  const valid: Manifest = { app: manifest.app, version: manifest.version, entries };
  const actual = releaseIdOf(valid);
  if (actual !== releaseId) {
    throw new LockstepError('failed', `the server sent a manifest for release ${shortId(actual)} when asked for ${shortId(releaseId)}; refusing it`);
  }
  return valid;
}

/** Size of each distinct blob; a blob listed with two sizes makes the manifest invalid. */
function blobSizes(files: readonly FileEntry[], releaseId: string): Map<string, number> {
  const sizes = new Map<string, number>();
  for (const file of files) {
    const known = sizes.get(file.sha256);
    if (known !== undefined && known !== file.size) {
      throw new LockstepError('failed', `manifest of release ${shortId(releaseId)} lists blob ${file.sha256} with two sizes`);
    }
    sizes.set(file.sha256, file.size);
  }
  return sizes;
}

/**
 * Builds the tree in `staging`. Directories are created 0700 so they can be
 * filled, then set to their manifest mode deepest first. Every parent was
 * created here by mkdir (the manifest rules make each parent a "dir" entry),
 * so no path is ever resolved through a symlink.
 */
async function buildTree(staging: string, manifest: Manifest, cache: BlobCache, signal: AbortSignal): Promise<void> {
  const entries = [...manifest.entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const dirs = entries.filter((entry): entry is DirEntry => entry.type === 'dir');
  const leaves = entries.filter((entry): entry is FileEntry | SymlinkEntry => entry.type !== 'dir');

  // Parents sort before their children, so one pass in order creates every parent first.
  for (const dir of dirs) await mkdir(inside(staging, dir.path), { mode: 0o700 });

  let linkImpossible = false;
  await forEachBounded(leaves, FILE_CONCURRENCY, async (entry) => {
    signal.throwIfAborted();
    const destination = inside(staging, entry.path);
    if (entry.type === 'symlink') {
      await symlink(entry.target, destination);
      return;
    }
    if (!linkImpossible) {
      try {
        await link(await cache.fileWithMode(entry.sha256, entry.mode), destination);
        return;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw error;
        // Another filesystem: no link will ever work, so stop making variants.
        if (code === 'EXDEV') linkImpossible = true;
      }
    }
    await copyWithMode(cache.pathOf(entry.sha256), destination, entry.mode);
  });

  // fsync before chmod: a directory without read permission cannot be opened for it.
  for (const dir of [...dirs].reverse()) {
    const path = inside(staging, dir.path);
    await fsyncDirectory(path);
    await chmod(path, dir.mode);
  }
  await fsyncDirectory(staging);
  await chmod(staging, 0o755);
}

/** Joins a manifest path to the staging dir; a second line of defence behind manifestProblems. */
function inside(staging: string, path: string): string {
  const full = resolve(staging, path);
  if (!full.startsWith(staging + sep)) throw new LockstepError('failed', `manifest path "${path}" leaves the release tree`);
  return full;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    const info = await lstat(path);
    if (info.isDirectory()) return true;
    throw new LockstepError('failed', `${path} exists but is not a directory; refusing to touch it`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
