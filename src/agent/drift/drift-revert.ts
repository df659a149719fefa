/**
 * Putting one drifted path back the way its baseline says: a file from its
 * content in the blob cache (written to a temporary sibling, then renamed
 * over the path), a directory or symlink recreated, an added entry removed.
 * Watched entries get their owner and group back too; release entries have
 * none in the manifest and keep the agent's.
 *
 * Release files are hard links into the blob cache, so an in-place edit of
 * one also changed the cached copy: a cached blob is verified before it is
 * used, and a corrupt one (or its mode variant) is dropped and fetched again
 * from the server.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { chmod, copyFile, lchown, link, lstat, mkdir, rename, rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { BlobCache } from '../../content/blob-cache.js';
import { removeTree } from '../../content/remove-tree.js';
import type { SnapshotEntry } from '../../core/drift.js';
import { ifMissing } from '../../core/errors.js';
import type { ManifestEntry } from '../../core/manifest.js';

/** What restoring needs: the blob cache and, for blobs it lacks or holds corrupted, a way to fetch them. */
export interface RestoreContext {
  readonly cache: BlobCache;
  readonly fetchBlob?: (hash: string, signal: AbortSignal) => Promise<AsyncIterable<Uint8Array>>;
  readonly signal: AbortSignal;
  /**
   * Release files: hard-link the verified cache copy, as staging does, instead of writing a private copy. Safe
   * only where every switch verifies the tree first (see ReleaseVerifier): a later in-place edit then reaches the
   * cache again, and is found and repaired in every tree that shares it.
   */
  readonly linkFromCache?: boolean;
}

/** Makes `absolute` what a release manifest entry says (null: the entry must not exist). */
export async function restoreReleaseEntry(absolute: string, expected: ManifestEntry | null, context: RestoreContext): Promise<void> {
  if (expected?.type === 'file') await dropCorruptVariant(context.cache, expected.sha256, expected.mode);
  if (expected?.type === 'file' && context.linkFromCache === true) {
    await verifiedBlob(context, expected.sha256);
    const linkFrom = await context.cache.fileWithMode(expected.sha256, expected.mode);
    await restoreEntry(absolute, { ...expected, owner: undefined, linkFrom }, context);
    return;
  }
  await restoreEntry(absolute, expected === null ? null : { ...expected, owner: undefined }, context);
}

/** Makes `absolute` what a watch baseline entry says, owner and group included (null: the entry must not exist). */
export async function restoreWatchEntry(absolute: string, expected: SnapshotEntry | null, context: RestoreContext): Promise<void> {
  if (expected === null) {
    await restoreEntry(absolute, null, context);
    return;
  }
  if (expected.type === 'other') throw new Error(`a ${expected.special ?? 'special file'} cannot be restored`);
  if (expected.type === 'file' && expected.sha256 === undefined) throw new Error(`its baseline content is unknown (${expected.problem ?? 'not hashed'})`);
  const owner = { uid: expected.uid, gid: expected.gid };
  await restoreEntry(
    absolute,
    expected.type === 'file'
      ? { type: 'file', mode: expected.mode, sha256: expected.sha256 as string, owner }
      : expected.type === 'dir'
        ? { type: 'dir', mode: expected.mode, owner }
        : { type: 'symlink', target: expected.target ?? '', owner },
    context,
  );
}

type Wanted =
  | { readonly type: 'file'; readonly mode: number; readonly sha256: string; readonly owner: Owner | undefined; readonly linkFrom?: string }
  | { readonly type: 'dir'; readonly mode: number; readonly owner: Owner | undefined }
  | { readonly type: 'symlink'; readonly target: string; readonly owner: Owner | undefined };
interface Owner {
  readonly uid: number;
  readonly gid: number;
}

async function restoreEntry(absolute: string, wanted: Wanted | null, context: RestoreContext): Promise<void> {
  const parent = dirname(absolute);
  if (wanted === null) {
    await withWritableDirectory(parent, () => removeTree(absolute));
    return;
  }
  await mkdir(parent, { recursive: true });
  const existing = await ifMissing(lstat(absolute));
  await withWritableDirectory(parent, async () => {
    if (wanted.type === 'dir') {
      if (existing !== undefined && !existing.isDirectory()) await removeTree(absolute);
      if (existing === undefined || !existing.isDirectory()) await mkdir(absolute);
      // chown(2) clears setuid and setgid bits, so the owner goes first.
      if (wanted.owner !== undefined) await lchown(absolute, wanted.owner.uid, wanted.owner.gid);
      await chmod(absolute, wanted.mode);
      return;
    }
    const tmp = join(parent, `.lockstep-restore-${randomBytes(6).toString('hex')}`);
    try {
      if (wanted.type === 'file' && wanted.linkFrom !== undefined) {
        await link(wanted.linkFrom, tmp);
      } else if (wanted.type === 'file') {
        const blob = await verifiedBlob(context, wanted.sha256);
        // A copy, never a link: a later in-place edit must not reach the cache again.
        await copyFile(blob, tmp, constants.COPYFILE_EXCL);
        if (wanted.owner !== undefined) await lchown(tmp, wanted.owner.uid, wanted.owner.gid);
        await chmod(tmp, wanted.mode);
      } else {
        await symlink(wanted.target, tmp);
        if (wanted.owner !== undefined) await lchown(tmp, wanted.owner.uid, wanted.owner.gid);
      }
      // rename(2) cannot replace a directory by a file or link.
      if (existing?.isDirectory()) await removeTree(absolute);
      await rename(tmp, absolute);
    } finally {
      await rm(tmp, { force: true });
    }
  });
}

/** The cache path of a blob whose content was checked; a corrupt or missing one is fetched again. */
async function verifiedBlob(context: RestoreContext, hash: string): Promise<string> {
  // A downloaded blob may exist only as the mode variant its first use needed.
  const found = context.cache.copyOf(hash);
  if (found !== undefined && (await hashOfFile(found)) === hash) return found;
  if (found !== undefined) await rm(found, { force: true });
  const path = context.cache.pathOf(hash);
  if (context.fetchBlob === undefined) throw new Error(`its content ${hash.slice(0, 12)} is not in the agent's blob cache`);
  try {
    await context.cache.put(hash, await context.fetchBlob(hash, context.signal));
  } catch (error) {
    throw new Error(`its content ${hash.slice(0, 12)} is not in the agent's blob cache and could not be fetched: ${error instanceof Error ? error.message : String(error)}`);
  }
  return path;
}

/**
 * Release files are hard links into the blob cache, so an in-place edit of one also changes the cached copy
 * it shares an inode with. Removes those copies (the blob and its mode variant) as soon as the drift is seen,
 * so that no later deployment links the edited content; a revert fetches the blob again.
 */
export async function dropEditedCacheCopies(cache: BlobCache, hash: string, mode: number | undefined, file: string): Promise<number> {
  const edited = await ifMissing(lstat(file));
  if (edited === undefined || !edited.isFile()) return 0;
  const candidates = new Set([cache.pathOf(hash), ...(mode === undefined ? [] : [cache.readyFileWithMode(hash, mode)].filter((path): path is string => path !== undefined))]);
  let dropped = 0;
  for (const candidate of candidates) {
    const copy = await ifMissing(lstat(candidate));
    if (copy === undefined || copy.ino !== edited.ino || copy.dev !== edited.dev) continue;
    await rm(candidate, { force: true });
    dropped++;
  }
  return dropped;
}

/** Removes the cache's mode variant of a blob when an in-place edit of a release file linked to it changed its content. */
async function dropCorruptVariant(cache: BlobCache, hash: string, mode: number): Promise<void> {
  const variant = cache.readyFileWithMode(hash, mode);
  if (variant === undefined || variant === cache.pathOf(hash)) return;
  if ((await hashOfFile(variant)) !== hash) await rm(variant, { force: true });
}

/** The SHA-256 of a file, or undefined when it does not exist. */
async function hashOfFile(path: string): Promise<string | undefined> {
  return ifMissing(
    (async () => {
      const hasher = createHash('sha256');
      for await (const chunk of createReadStream(path)) hasher.update(chunk as Buffer);
      return hasher.digest('hex');
    })(),
  );
}

/** Runs `work` with write permission on `dir` (release trees are read-only), restoring its mode afterwards. */
async function withWritableDirectory<T>(dir: string, work: () => Promise<T>): Promise<T> {
  const info = await ifMissing(lstat(dir));
  if (info === undefined || !info.isDirectory() || (info.mode & 0o300) === 0o300) return work();
  await chmod(dir, (info.mode & 0o7777) | 0o300);
  try {
    return await work();
  } finally {
    await chmod(dir, info.mode & 0o7777);
  }
}
