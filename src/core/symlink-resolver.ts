/**
 * Resolves the symlinks of a release manifest the way the kernel would on
 * the staged tree, using only the manifest: each link's target is walked
 * component by component, every component that is itself a link of the
 * manifest is replaced by where that link leads, and `..` applies to the
 * directory reached so far (POSIX semantics), not to the text. A link whose
 * resolution would ever step above the release root is an escape.
 *
 * Rules (docs/concepts.md, "Symlinks"):
 * - absolute and empty targets are refused, as is a NUL byte;
 * - a target that leaves the root at any step is refused, even when a later
 *   step would come back in (`../<release dir name>/x`): the name of the
 *   directory a release is staged in is not part of the release;
 * - a link whose resolution needs more than MAX_SYMLINK_HOPS links, or
 *   comes back to itself, is refused (the kernel would answer ELOOP);
 * - a dangling link is allowed, but the part of its target past the last
 *   existing directory is still walked as if every missing name were a
 *   directory, so `missing/../../x` is an escape even though the kernel
 *   would stop at ENOENT today: that name may exist tomorrow (drift).
 *   A file in the middle of a path (ENOTDIR on the host) is walked the same way.
 *
 * The result is memoised per link, so a manifest with n links costs
 * O(total length of the targets), whatever the chains look like.
 */

/** The kernel's limit of symlinks followed in one path lookup (Linux MAXSYMLINKS). */
export const MAX_SYMLINK_HOPS = 40;

/** What the resolver needs to know about an entry: its path, kind and, for links, the target. */
export interface ResolvableEntry {
  readonly path: string;
  readonly type: string;
  readonly target?: string;
}

/** Why a symlink was refused. */
export type SymlinkProblemKind = 'absolute' | 'empty' | 'nul' | 'escapes' | 'loop';

/** One refused symlink: its path, the kind of problem and a one-line reason naming the target. */
export interface SymlinkProblem {
  readonly path: string;
  readonly kind: SymlinkProblemKind;
  readonly problem: string;
}

/** Where a link leads: a position inside the tree (components from the root), or why it is refused. */
type Resolution =
  | { readonly kind: 'inside'; readonly position: readonly string[]; readonly hops: number }
  /**
   * `link` is the link whose target stepped above the root (the one asked
   * about, or one it goes through); `at` is the start of that target up to
   * the offending "..", when links were followed before it (else undefined).
   */
  | { readonly kind: 'escapes'; readonly link: string; readonly at?: string }
  | { readonly kind: 'loop' };

/** Every symlink of `entries` that is absolute, empty, loops or leads outside the tree, in entry order. */
export function symlinkProblems(entries: readonly ResolvableEntry[]): SymlinkProblem[] {
  const resolver = new SymlinkResolver(entries);
  const problems: SymlinkProblem[] = [];
  for (const [path, target] of resolver.targets) {
    const problem = resolver.problemOf(path, target);
    if (problem !== undefined) problems.push(problem);
  }
  return problems;
}

class SymlinkResolver {
  private readonly kinds = new Map<string, string>();
  /** Every link's target, in entry order; a duplicated path counts once (duplicates are refused elsewhere). */
  readonly targets = new Map<string, string>();
  private readonly resolved = new Map<string, Resolution>();
  /** Links whose resolution is under way: meeting one again is a loop. */
  private readonly resolving = new Set<string>();

  constructor(entries: readonly ResolvableEntry[]) {
    for (const entry of entries) {
      if (this.kinds.has(entry.path)) continue;
      this.kinds.set(entry.path, entry.type);
      if (entry.type === 'symlink' && entry.target !== undefined) this.targets.set(entry.path, entry.target);
    }
  }

  problemOf(path: string, target: string): SymlinkProblem | undefined {
    const shape = targetShapeProblem(target);
    if (shape !== undefined) return { path, kind: shape, problem: shapeMessage(shape, target) };
    const resolution = this.resolveLink(path);
    switch (resolution.kind) {
      case 'inside':
        return undefined;
      case 'escapes': {
        const through = resolution.link === path ? '' : ` through the link "${resolution.link}" -> "${this.targets.get(resolution.link) ?? ''}"`;
        const at = resolution.at === undefined ? '' : ` ("${resolution.at}" is above the release root once the links in it are followed)`;
        return { path, kind: 'escapes', problem: `symlink target "${target}" leaves the release tree${through}${at}` };
      }
      case 'loop':
        return { path, kind: 'loop', problem: `symlink target "${target}" loops or needs more than ${MAX_SYMLINK_HOPS} links to resolve` };
    }
  }

  /** Where the link at `path` leads, resolved from its own directory; memoised. */
  private resolveLink(path: string): Resolution {
    const known = this.resolved.get(path);
    if (known !== undefined) return known;
    if (this.resolving.has(path)) return { kind: 'loop' };
    const target = this.targets.get(path) ?? '';
    let result: Resolution;
    if (targetShapeProblem(target) !== undefined) {
      // An absolute or empty link is refused on its own; a link through it leaves the tree with it.
      result = { kind: 'escapes', link: path };
    } else {
      this.resolving.add(path);
      const parent = path.split('/').slice(0, -1);
      result = this.walk(parent, target, path);
      this.resolving.delete(path);
    }
    this.resolved.set(path, result);
    return result;
  }

  /** Walks `target` from the directory `start`; `link` is the link being resolved, for messages. */
  private walk(start: readonly string[], target: string, link: string): Resolution {
    const position = [...start];
    let hops = 0;
    const names = target.split('/');
    for (const [index, name] of names.entries()) {
      if (name === '' || name === '.') continue;
      if (name === '..') {
        if (position.length === 0) return hops === 0 ? { kind: 'escapes', link } : { kind: 'escapes', link, at: names.slice(0, index + 1).join('/') };
        position.pop();
        continue;
      }
      position.push(name);
      const here = position.join('/');
      if (this.kinds.get(here) !== 'symlink') continue;
      const next = this.resolveLink(here);
      if (next.kind !== 'inside') return next;
      hops += 1 + next.hops;
      // The kernel counts the link being looked up too.
      if (1 + hops > MAX_SYMLINK_HOPS) return { kind: 'loop' };
      position.splice(0, position.length, ...next.position);
    }
    return { kind: 'inside', position, hops };
  }
}

function targetShapeProblem(target: string): 'absolute' | 'empty' | 'nul' | undefined {
  if (target.length === 0) return 'empty';
  if (target.includes('\0')) return 'nul';
  if (target.startsWith('/')) return 'absolute';
  return undefined;
}

function shapeMessage(kind: 'absolute' | 'empty' | 'nul', target: string): string {
  switch (kind) {
    case 'empty':
      return 'symlink target is empty';
    case 'nul':
      return 'symlink target contains a NUL byte';
    case 'absolute':
      return `symlink target "${target}" leaves the release tree (absolute targets are not allowed)`;
  }
}
