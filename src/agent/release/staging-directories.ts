/**
 * The directories of a release tree being staged, held by identity so that
 * a symlink planted on the host between two staging steps cannot redirect a
 * write. Node has no openat()/linkat(), so every write still names a path;
 * what makes it sound:
 *
 * - each directory is made here (mkdir never follows its last component)
 *   and its (dev, ino) recorded at once;
 * - leaves are made with link() and symlink(), which never follow their last
 *   component and never overwrite: a write redirected through a swapped
 *   parent can only create a new name elsewhere, never change a file;
 * - before each batch of writes the parent directories and all their
 *   ancestors are lstat-ed and must still be the same real directories
 *   (a planted link, or the real directory moved away and linked back, shows
 *   as another type or another inode), so a swap made while the agent
 *   waited (a blob download) stops staging before anything is written;
 * - permissions are set through a file descriptor opened with O_NOFOLLOW
 *   and checked by fstat, not through a path;
 * - before the tree gets its release name every directory is verified again
 *   and must hold exactly the manifest's names, and after the rename the
 *   release path must be the very directory that was staged.
 *
 * What remains (docs/concepts.md, "Symlinks"): between a check and the
 * syscall it guards, a process with the agent's privileges (the staging dir
 * is 0700) can still swap a directory; the redirected link()/symlink()/mkdir()
 * then creates one new name outside the tree, and staging fails at the next
 * check. Such a process could write that name directly anyway.
 */
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LockstepError } from '../../core/errors.js';

interface Identity {
  readonly dev: bigint;
  readonly ino: bigint;
}

/** Directories made under one staging root, each with the identity it had when made. */
export class StagingDirectories {
  private readonly made = new Map<string, Identity>();

  /** `root` must be a directory this process just created; '' names it. */
  constructor(private readonly root: string) {
    const info = lstatSync(root, { bigint: true });
    if (!info.isDirectory()) throw this.replaced('', 'is not a directory');
    this.made.set('', { dev: info.dev, ino: info.ino });
  }

  /** Absolute path of a relative one ('' for the root). */
  pathOf(relative: string): string {
    return relative === '' ? this.root : join(this.root, relative);
  }

  /** Creates `relative` (0700, so that it can be filled) and records its identity; its parent must have been made here. */
  make(relative: string): void {
    const path = this.pathOf(relative);
    mkdirSync(path, { mode: 0o700 });
    const info = lstatSync(path, { bigint: true });
    if (!info.isDirectory()) throw this.replaced(relative, 'is not a directory');
    this.made.set(relative, { dev: info.dev, ino: info.ino });
  }

  /** Throws unless each of `relatives` and every ancestor of it is still the real directory made here. */
  verify(relatives: Iterable<string>): void {
    const checked = new Set<string>();
    for (const relative of relatives) {
      for (let at: string | undefined = relative; at !== undefined && !checked.has(at); at = parentOf(at)) {
        this.verifyOne(at);
        checked.add(at);
      }
    }
  }

  /** Throws unless the directories holding `paths` (entries about to be written) and their ancestors are still those made here. */
  verifyParentsOf(paths: Iterable<string>): void {
    const parents = new Set<string>();
    for (const path of paths) parents.add(parentOf(path) ?? '');
    this.verify(parents);
  }

  /** Verifies every directory made here. */
  verifyAll(): void {
    for (const relative of this.made.keys()) this.verifyOne(relative);
  }

  /**
   * Throws unless every directory made here holds exactly `names` (relative
   * paths of all entries, directories included): a leaf whose write was
   * redirected is missing, one planted by someone else is extra.
   */
  verifyContents(names: readonly string[]): void {
    const expected = new Map<string, Set<string>>([...this.made.keys()].map((relative) => [relative, new Set<string>()]));
    for (const name of names) expected.get(parentOf(name) ?? '')?.add(name);
    for (const [relative, children] of expected) {
      this.verifyOne(relative);
      const found = readdirSync(this.pathOf(relative)).map((name) => (relative === '' ? name : `${relative}/${name}`));
      const extra = found.find((name) => !children.has(name));
      if (extra !== undefined) throw this.replaced(extra, 'appeared');
      if (found.length !== children.size) {
        const missing = [...children].find((name) => !found.includes(name)) ?? relative;
        throw this.replaced(missing, 'went missing');
      }
    }
  }

  /** Sets the mode of a directory made here through a descriptor that cannot be a symlink and is checked to be that directory. */
  chmod(relative: string, mode: number): void {
    const fd = openSync(this.pathOf(relative), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      const info = fstatSync(fd, { bigint: true });
      this.assertSame(relative, info);
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
  }

  /** Throws unless `path` (where the root was renamed to) is the root directory itself. */
  verifyRenamed(path: string): void {
    const info = lstatSync(path, { bigint: true });
    if (!info.isDirectory()) throw this.replaced('', `was renamed to ${path}, but what is there is not a directory`);
    this.assertSame('', info);
  }

  private verifyOne(relative: string): void {
    let info;
    try {
      info = lstatSync(this.pathOf(relative), { bigint: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw this.replaced(relative, 'disappeared');
      throw error;
    }
    if (info.isSymbolicLink()) throw this.replaced(relative, 'was replaced by a symlink');
    if (!info.isDirectory()) throw this.replaced(relative, 'was replaced by something that is not a directory');
    this.assertSame(relative, info);
  }

  private assertSame(relative: string, info: { dev: bigint; ino: bigint }): void {
    const made = this.made.get(relative);
    if (made === undefined || made.dev !== info.dev || made.ino !== info.ino) throw this.replaced(relative, 'was replaced by another directory');
  }

  private replaced(relative: string, what: string): LockstepError {
    const name = relative === '' ? `the staging dir ${this.root}` : `"${relative}" in the staging dir ${this.root}`;
    return new LockstepError('failed', `${name} ${what} while the release was being staged; something else writes there: find it, then deploy again`);
  }
}

/** The parent of a relative path ('' for a top-level name), or undefined for the root itself. */
function parentOf(relative: string): string | undefined {
  if (relative === '') return undefined;
  const slash = relative.lastIndexOf('/');
  return slash === -1 ? '' : relative.slice(0, slash);
}
