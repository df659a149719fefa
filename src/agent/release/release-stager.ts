/**
 * Staging: makes DEPLOY_TO/releases/<id> exist, complete, exactly as its
 * manifest says. A release dir is only ever created by renaming a finished
 * staging dir, so its existence means it was complete and staging is skipped
 * (which keeps a rollback to one rename); whether it still is, the
 * verification before every switch proves (see release-verifier.ts), from the
 * stat record taken here before the rename.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, symlinkSync, type BigIntStats } from 'node:fs';
import { lstat, mkdir, rename } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { Logger } from 'pino';
import { ifMissing, LockstepError } from '../../core/errors.js';
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
  withSystem,
} from '../../core/manifest.js';
import { systemPartsProblems, type SystemParts } from '../../core/system-parts.js';
import type { BlobCache, ReceivedBlob } from '../../content/blob-cache.js';
import type { BlobFrame } from '../../content/blob-frames.js';
import type { StagingProgress } from '../../api/schemas.js';
import { corruptBlobError } from '../../content/blob-store.js';
import { copyWithMode } from '../../content/copy-with-mode.js';
import { fsyncDirectory } from '../../content/atomic-file.js';
import { syncFileSystem } from '../../content/sync-file-system.js';
import { removeTree } from '../../content/remove-tree.js';
import { releaseDir, type DeployLayout } from './deploy-layout.js';
import { forEachBounded } from '../../core/for-each-bounded.js';
import type { ManifestStore } from './manifest-store.js';
import type { StagedLink, StagedTree } from './release-verifier.js';
import { retry } from '../retry.js';
import { StagingDirectories } from './staging-directories.js';

/** A manifest as received: not yet validated, so it may name forbidden kinds. */
export interface UntrustedManifest {
  readonly app: string;
  readonly version: string;
  readonly entries: readonly (ManifestEntry | ForbiddenEntry)[];
  readonly system?: SystemParts | undefined;
}

/** A manifest as the changes from release `base`: entries added or changed, paths removed. Not yet validated. */
export interface UntrustedDelta {
  readonly base: string;
  readonly app: string;
  readonly version: string;
  readonly entries: readonly (ManifestEntry | ForbiddenEntry)[];
  readonly removed: readonly string[];
  readonly system?: SystemParts | undefined;
}

/** Where release content comes from (the server, in production). */
export interface ReleaseSource {
  /**
   * The manifest of a release; given `base` (a release whose manifest the
   * agent has), the source may answer with a delta against it instead.
   */
  fetchManifest(releaseId: string, signal: AbortSignal, base?: string): Promise<UntrustedManifest | UntrustedDelta>;
  /** The bytes of one blob, streamed. */
  fetchBlob(hash: string, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
  /**
   * Many blobs of one release in one framed stream (`sizes`: each hash asked
   * for with its manifest size); without it blobs are fetched one by one.
   */
  fetchBlobs?(releaseId: string, sizes: ReadonlyMap<string, number>, signal: AbortSignal): Promise<AsyncIterable<BlobFrame>>;
}


/** What staging did. */
export type StageResult =
  | { readonly kind: 'already-staged' }
  | { readonly kind: 'staged'; readonly files: number; readonly blobsFetched: number; readonly bytesFetched: number; readonly manifest: 'full' | 'delta' };

/** Inputs of `stageRelease`. */
export interface StageOptions {
  readonly layout: DeployLayout;
  readonly releaseId: string;
  readonly source: ReleaseSource;
  readonly cache: BlobCache;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Blob downloads in flight at once (default 8); with a bulk source, bulk streams in flight (default 3). */
  readonly fetchConcurrency?: number;
  /** Told as bytes arrive: bytes and blobs fetched of those the cache lacked (cheap: keep the latest and sample it). */
  readonly onProgress?: (progress: StagingProgress) => void;
  /** Where the manifests of staged releases are kept; without it every manifest is fetched in full. */
  readonly manifests?: ManifestStore;
  /** A release on disk to ask for a delta against (normally the one `current` points at). */
  readonly baseReleaseId?: string | null;
  /** Takes the stat record of the finished tree before it gets its release name (see ReleaseVerifier). */
  readonly recorder?: { recordStaged(tree: StagedTree): Promise<void> };
}

/** Prefix of in-progress staging dirs in releases/; whatever carries it is a leftover after a restart. */
export const STAGING_PREFIX = '.staging-';

const FILE_CONCURRENCY = 16;
const BLOB_FETCH_ATTEMPTS = 6;
/** Bulk streams in flight: 2–4 keep the server's disk and the agent's hashing busy without splitting bandwidth too fine. */
const BULK_STREAMS = 3;
/** One bulk request carries at most this many blobs or bytes (a larger blob goes alone): the unit of a retry. */
const BULK_BATCH_BLOBS = 1000;
const BULK_BATCH_BYTES = 64 * 1024 * 1024;

/** Makes DEPLOY_TO/releases/<id> exist and match its manifest; fetches only the blobs the cache lacks. */
export async function stageRelease(options: StageOptions): Promise<StageResult> {
  const { layout, releaseId, source, cache, logger, signal } = options;
  const target = releaseDir(layout, releaseId);
  if (await isDirectory(target)) return { kind: 'already-staged' };

  const { manifest, via } = await receiveManifest(options);
  // Kept for the next release's delta; written while the tree is built.
  const saved = options.manifests
    ?.write(releaseId, manifest)
    .catch((error: unknown) => logger.warn({ err: error }, 'could not store the manifest; the next release will be fetched in full'));
  const files = manifest.entries.filter((entry): entry is FileEntry => entry.type === 'file');
  const sizes = blobSizes(files, releaseId);

  let blobsFetched = 0;
  let bytesFetched = 0;
  const fetched = new Set<string>();
  /**
   * Fetches the blobs the cache lacks among `wanted` (the files whose cached
   * variant is not there, from buildTree, so the lstat that finds a variant
   * to link doubles as the cache lookup: 10,000 fewer lstats when only 10
   * files changed). Each blob is written once, as the variant its first use
   * needs. Downloads are verified into tmp files as they stream, then made
   * durable in one batch (see BlobCache.commit).
   */
  const fetchMissing = async (wanted: readonly FileEntry[]): Promise<void> => {
    const modes = new Map<string, number>();
    for (const entry of wanted) if (!modes.has(entry.sha256)) modes.set(entry.sha256, entry.mode);
    const missing = await cache.missing(modes.keys());
    const received: ReceivedBlob[] = [];
    const started = performance.now();
    const totalBytes = missing.reduce((sum, hash) => sum + (sizes.get(hash) ?? 0), 0);
    let bytesSoFar = 0;
    const progress = (): void =>
      options.onProgress?.({ bytes: bytesSoFar, totalBytes, files: fetched.size, totalFiles: missing.length, elapsedMs: Math.round(performance.now() - started) });
    const store = async (hash: string, content: AsyncIterable<Uint8Array>): Promise<void> => {
      const blob = await cache.receive(hash, counted(content), sizes.get(hash), modes.get(hash));
      received.push(blob);
      fetched.add(hash);
      bytesFetched += blob.size;
      progress();
    };
    async function* counted(content: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
      for await (const chunk of content) {
        bytesSoFar += chunk.byteLength;
        progress();
        yield chunk;
      }
    }
    try {
      const bulk = source.fetchBlobs?.bind(source);
      let bulkUnknown = false;
      if (bulk !== undefined) {
        await forEachBounded(bulkBatches(missing, sizes), options.fetchConcurrency ?? BULK_STREAMS, (batch) =>
          retry(
            async () => {
              // A retry asks only for what the broken stream did not deliver.
              const left = new Map(batch.filter((hash) => !fetched.has(hash)).map((hash) => [hash, sizes.get(hash) ?? 0]));
              if (left.size === 0 || bulkUnknown) return;
              let frames: AsyncIterable<BlobFrame>;
              try {
                frames = await bulk(releaseId, left, signal);
              } catch (error) {
                // A server older than the bulk route answers 404: fetch blob by blob below.
                if (!(error instanceof LockstepError && error.kind === 'not-found')) throw error;
                bulkUnknown = true;
                return;
              }
              for await (const frame of frames) {
                if (frame.kind === 'fail') {
                  throw frame.reason === 'corrupt' ? new LockstepError('failed', corruptBlobError(frame.hash).message) : new LockstepError('failed', `blob ${frame.hash} is missing from the server's store`);
                }
                await store(frame.hash, frame.body);
              }
            },
            {
              signal,
              maxAttempts: BLOB_FETCH_ATTEMPTS,
              onRetry: (error, attempt, delayMs) => logger.warn({ err: error, blobs: batch.length, attempt, delayMs }, 'bulk blob download failed; retrying what it did not deliver'),
            },
          ),
        );
      }
      if (bulk === undefined || bulkUnknown) {
        await forEachBounded(missing.filter((hash) => !fetched.has(hash)), bulk === undefined ? (options.fetchConcurrency ?? 8) : 8, (hash) =>
          retry(async () => store(hash, await source.fetchBlob(hash, signal)), {
            signal,
            maxAttempts: BLOB_FETCH_ATTEMPTS,
            onRetry: (error, attempt, delayMs) => logger.warn({ err: error, blob: hash, attempt, delayMs }, 'blob download failed; retrying'),
          }),
        );
      }
    } catch (error) {
      await cache.discard(received);
      throw error;
    }
    const receivedMs = Math.round(performance.now() - started);
    await cache.commit(received);
    blobsFetched = missing.length;
    const commitMs = Math.round(performance.now() - started) - receivedMs;
    if (missing.length > 0) logger.info({ release: releaseId, blobs: missing.length, bytes: bytesFetched, receivedMs, commitMs }, 'fetched missing blobs');
  };

  await mkdir(layout.releasesDir, { recursive: true, mode: 0o755 });
  const staging = join(layout.releasesDir, `${STAGING_PREFIX}${releaseId}-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { mode: 0o700 });
  try {
    const directories = new StagingDirectories(staging);
    const links = await buildTree(directories, manifest, cache, fetchMissing, signal);
    await options.recorder?.recordStaged({ layout, releaseId, manifest, dir: staging, links, fetched });
    try {
      await rename(staging, target);
    } catch (error) {
      // Another agent process finished the same release first: theirs is as good as ours.
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await isDirectory(target))) throw error;
      await removeTree(staging);
      return { kind: 'already-staged' };
    }
    // The release name must hold the tree built above, not a link planted in its place.
    try {
      directories.verifyRenamed(target);
    } catch (error) {
      // What took the release name is not what was staged: remove the name
      // (never following it) so that no later deploy takes it as staged.
      await removeTree(target);
      throw error;
    }
  } catch (error) {
    await removeTree(staging).catch((cleanupError: unknown) => logger.warn({ err: cleanupError, staging }, 'could not remove staging dir'));
    throw error;
  }
  await fsyncDirectory(layout.releasesDir);
  await saved;
  return { kind: 'staged', files: files.length, blobsFetched, bytesFetched, manifest: via };
}

/** The missing blobs cut into bulk requests, in manifest order (neighbours on the server's disk travel together). */
function bulkBatches(missing: readonly string[], sizes: ReadonlyMap<string, number>): string[][] {
  const batches: string[][] = [];
  let batch: string[] = [];
  let bytes = 0;
  for (const hash of missing) {
    const size = sizes.get(hash) ?? 0;
    if (batch.length > 0 && (batch.length >= BULK_BATCH_BLOBS || bytes + size > BULK_BATCH_BYTES)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(hash);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

function isDelta(answer: UntrustedManifest | UntrustedDelta): answer is UntrustedDelta {
  return 'removed' in answer && 'base' in answer;
}

/** The full manifest from a stored base and a delta (not yet validated). */
export function applyDelta(base: UntrustedManifest, delta: UntrustedDelta): UntrustedManifest {
  const byPath = new Map(base.entries.map((entry) => [entry.path, entry]));
  for (const path of delta.removed) byPath.delete(path);
  for (const entry of delta.entries) byPath.set(entry.path, entry);
  return { app: delta.app, version: delta.version, entries: [...byPath.values()], ...(delta.system === undefined ? {} : { system: delta.system }) };
}

/**
 * The validated manifest of the release: rebuilt from the stored manifest of
 * `baseReleaseId` and the server's delta when it can be, else fetched in
 * full. The rebuilt manifest must pass every rule and hash to the release id
 * (content addressing makes the delta safe: a wrong base, a tampered delta or
 * a corrupted stored manifest can only make the id differ); if it does not,
 * the full manifest is fetched and must pass the same checks.
 */
async function receiveManifest(options: StageOptions): Promise<{ manifest: Manifest; via: 'full' | 'delta' }> {
  const { releaseId, source, signal, logger, manifests, baseReleaseId } = options;
  const base = manifests && baseReleaseId && baseReleaseId !== releaseId ? await manifests.read(baseReleaseId) : undefined;
  if (base !== undefined && baseReleaseId) {
    const answer = await source.fetchManifest(releaseId, signal, baseReleaseId);
    if (!isDelta(answer)) return { manifest: validManifest(answer, releaseId), via: 'full' };
    try {
      if (answer.base !== baseReleaseId) throw new LockstepError('failed', `the server sent a delta against ${shortId(answer.base)}, not ${shortId(baseReleaseId)}`);
      return { manifest: validManifest(applyDelta(base, answer), releaseId), via: 'delta' };
    } catch (error) {
      logger.warn({ err: error, base: shortId(baseReleaseId) }, 'the manifest delta did not rebuild the release; fetching the full manifest');
    }
  }
  const full = await source.fetchManifest(releaseId, signal);
  if (isDelta(full)) throw new LockstepError('failed', `the server sent a delta for release ${shortId(releaseId)} when asked for its full manifest`);
  return { manifest: validManifest(full, releaseId), via: 'full' };
}

/** Checks a received manifest against every rule (system parts included) and against the release id it was asked for. */
export function validManifest(manifest: UntrustedManifest, releaseId: string): Manifest {
  const problems = manifestProblems(manifest.entries);
  const first = problems[0];
  if (first !== undefined) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    throw new LockstepError('failed', `manifest of release ${shortId(releaseId)} is invalid: ${first.path}: ${first.problem}${more}`, problems);
  }
  // No problems means no forbidden kinds are left.
  const entries = manifest.entries as readonly ManifestEntry[];
  const systemProblem = manifest.system === undefined ? undefined : systemPartsProblems(manifest.system, entries)[0];
  if (systemProblem !== undefined) throw new LockstepError('failed', `manifest of release ${shortId(releaseId)} is invalid: ${systemProblem.path}: ${systemProblem.problem}`);
  const valid: Manifest = withSystem({ app: manifest.app, version: manifest.version, entries }, manifest);
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

/** Leaves linked (or made) synchronously between two yields to the event loop. */
const LINK_BATCH = 500;

/**
 * Builds the tree in the staging dir. Directories are created 0700 so they
 * can be filled, then set to their manifest mode deepest first. Every parent
 * was created here (the manifest rules make each parent a "dir" entry), and
 * `directories` checks before each batch of writes that they all still are
 * the directories made here, so no write goes through a symlink planted
 * meanwhile (staging-directories.ts says how, and what remains).
 *
 * Where the time went (10,000 files in 100 dirs, warm cache, loaded 2-CPU
 * box): ~1.1 s for an async lstat + link per file (16 in flight: each call
 * is a thread-pool round trip costing far more than the syscall) and ~0.45 s
 * for 100 directory fsyncs one after another. Now the files whose cache
 * variant already exists are linked with synchronous calls (lstat + link,
 * ~0.27 s for 10,000 incl. mkdirs), 500 between two yields to the event loop
 * so heartbeats and aborts still get through; only the variants that must
 * be made (a first deploy) go through the batched async path. Directories
 * are fsynced 16 at a time (~0.06 s), which the journal can share.
 *
 * Why link from the cache and not from the base release tree (as
 * `rsync --link-dest` does): both cost the same here (one lstat + one link),
 * and the cache variant is the inode the base tree's file was linked from
 * anyway, so an in-place edit of a base file (same inode) changes both alike
 * and linking from the base would gain nothing. What linking from the base
 * would add is a risk: a file *replaced* by hand in the base tree (a new
 * inode, e.g. an editor's save) would propagate into the new release under
 * the manifest's hash. The cache variant is checked (regular file, exact
 * mode) and is never replaced except by a verified copy, so it stays the source.
 */
async function buildTree(
  directories: StagingDirectories,
  manifest: Manifest,
  cache: BlobCache,
  fetchMissing: (wanted: readonly FileEntry[]) => Promise<void>,
  signal: AbortSignal,
): Promise<Map<string, StagedLink>> {
  const staging = directories.pathOf('');
  const entries = [...manifest.entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const dirs = entries.filter((entry): entry is DirEntry => entry.type === 'dir');
  const leaves = entries.filter((entry): entry is FileEntry | SymlinkEntry => entry.type !== 'dir');

  // Parents sort before their children, so one pass in order creates every parent first.
  for (const dir of dirs) {
    inside(staging, dir.path);
    directories.make(dir.path);
  }

  // Files whose (hash, mode) variant is not in the cache yet: made in one batch below.
  const later: FileEntry[] = [];
  const links = new Map<string, StagedLink>();
  const firstSeen = new Map<string, BigIntStats>();
  for (let start = 0; start < leaves.length; start += LINK_BATCH) {
    if (start > 0) await new Promise((resolve) => setImmediate(resolve));
    signal.throwIfAborted();
    const batch = leaves.slice(start, start + LINK_BATCH);
    // Time passed since the last check (mkdirs, a yield to the event loop).
    directories.verifyParentsOf(batch.map((entry) => entry.path));
    for (const entry of batch) {
      const destination = inside(staging, entry.path);
      if (entry.type === 'symlink') {
        symlinkSync(entry.target, destination);
        continue;
      }
      const ready = cache.readyFileStat(entry.sha256, entry.mode);
      if (ready === undefined) {
        later.push(entry);
        continue;
      }
      try {
        // The cache file's lstat before this staging's first link of it: what the stat record is carried from.
        const before = firstSeen.get(ready.path) ?? ready.stat;
        firstSeen.set(ready.path, before);
        linkSync(ready.path, destination);
        links.set(entry.path, { path: entry.path, source: ready.path, before });
      } catch (error) {
        if (!linkFailureAllowsCopy(error)) throw error;
        later.push(entry);
      }
    }
  }

  if (later.length > 0) {
    await fetchMissing(later);
    await cache.makeVariants(later.map((entry) => ({ hash: entry.sha256, mode: entry.mode })));
    // Linked like the ready ones above (synchronously, a batch between two yields); what cannot be linked is copied.
    let linkImpossible = false;
    const copies: FileEntry[] = [];
    for (let start = 0; start < later.length; start += LINK_BATCH) {
      await new Promise((resolve) => setImmediate(resolve));
      signal.throwIfAborted();
      const batch = later.slice(start, start + LINK_BATCH);
      // Downloads took time in which a parent could have been swapped for a link.
      directories.verifyParentsOf(batch.map((entry) => entry.path));
      for (const entry of batch) {
        const source = linkImpossible ? undefined : cache.readyFileWithMode(entry.sha256, entry.mode);
        if (source === undefined) {
          copies.push(entry);
          continue;
        }
        try {
          linkSync(source, inside(staging, entry.path));
        } catch (error) {
          if (!linkFailureAllowsCopy(error)) throw error;
          // Another filesystem: no link will ever work.
          if ((error as NodeJS.ErrnoException).code === 'EXDEV') linkImpossible = true;
          copies.push(entry);
        }
      }
    }
    await forEachBounded(copies, FILE_CONCURRENCY, async (entry) => {
      signal.throwIfAborted();
      directories.verifyParentsOf([entry.path]);
      await copyWithMode(cache.copyOf(entry.sha256) ?? cache.pathOf(entry.sha256), inside(staging, entry.path), entry.mode);
    });
  }

  // Every entry is durable in its directory before the tree gets its release
  // name: one syncfs, else each directory fsynced (before chmod: a directory
  // without read permission cannot be opened for it).
  if (!(await syncFileSystem(staging))) await forEachBounded([...dirs.map((dir) => inside(staging, dir.path)), staging], FILE_CONCURRENCY, fsyncDirectory);
  // The tree is exactly the manifest, in the directories made here.
  directories.verifyContents(entries.map((entry) => entry.path));
  for (const dir of [...dirs].reverse()) if (dir.mode !== 0o700) directories.chmod(dir.path, dir.mode);
  directories.chmod('', 0o755);
  return links;
}

/** A link that failed because of where the files are (not what they are): a copy will do. */
function linkFailureAllowsCopy(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'EXDEV' || code === 'EPERM' || code === 'EMLINK';
}

/** Joins a manifest path to the staging dir; a second line of defence behind manifestProblems. */
function inside(staging: string, path: string): string {
  const full = resolve(staging, path);
  if (!full.startsWith(staging + sep)) throw new LockstepError('failed', `manifest path "${path}" leaves the release tree`);
  return full;
}

async function isDirectory(path: string): Promise<boolean> {
  const info = await ifMissing(lstat(path));
  if (info === undefined) return false;
  if (info.isDirectory()) return true;
  throw new LockstepError('failed', `${path} exists but is not a directory; refusing to touch it`);
}
