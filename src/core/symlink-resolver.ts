/**
 * Resolves the symlinks of a release manifest the way the kernel would on
 * the staged tree, using only the manifest: each link's target is walked
 * component by component, every component that is itself a link of the
 * manifest is replaced by where that link leads, and `..` applies to the
 * directory reached so far (POSIX semantics), not to the text. A link whose
 * resolution would ever step above the release root is an escape.
 *
 * Rules (docs/concepts.md, "Symlinks"):
 * - absolute and empty targets are refused, as are a NUL byte and more
 *   than 4095 bytes (the kernel would not store it);
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
 * The release is held as a tree of names and each link's result is
 * memoised, so a manifest costs O(total length of its paths and targets),
 * whatever the chains look like.
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
export type SymlinkProblemKind = 'absolute' | 'empty' | 'nul' | 'too-long' | 'escapes' | 'loop';

/** One refused symlink: its path, the kind of problem and a one-line reason naming the target. */
export interface SymlinkProblem {
  readonly path: string;
  readonly kind: SymlinkProblemKind;
  readonly problem: string;
}

/** A name of the release: a tree of nodes, so that walking a target costs O(1) per name, whatever the depth. */
interface TreeNode {
  readonly path: string;
  /** The entry's type; 'absent' for a parent the manifest does not list (refused elsewhere). */
  type: string;
  readonly parent: TreeNode | undefined;
  readonly children: Map<string, TreeNode>;
  target: string | undefined;
}

/**
 * A position while walking: a directory of the release, plus how many names
 * below it the walk has gone that are not directories of the release (a
 * missing name, or a file followed by more names), walked as if they were.
 */
interface Position {
  readonly dir: TreeNode;
  readonly virtual: number;
}

/** Where a link leads, resolved from its own directory, or why it is refused. */
type Resolution =
  | { readonly kind: 'inside'; readonly position: Position; readonly hops: number }
  /**
   * `link` is the link whose target stepped above the root (the one asked
   * about, or one it goes through); `at` is the start of that target up to
   * the offending "..", when links were followed before it (else undefined).
   */
  | { readonly kind: 'escapes'; readonly link: TreeNode; readonly at?: string }
  | { readonly kind: 'loop' };

/** Every symlink of `entries` that is absolute, empty, loops or leads outside the tree, in entry order. */
export function symlinkProblems(entries: readonly ResolvableEntry[]): SymlinkProblem[] {
  const resolver = new SymlinkResolver(entries);
  const problems: SymlinkProblem[] = [];
  for (const link of resolver.links) {
    const problem = resolver.problemOf(link);
    if (problem !== undefined) problems.push(problem);
  }
  return problems;
}

class SymlinkResolver {
  private readonly root: TreeNode = { path: '', type: 'dir', parent: undefined, children: new Map(), target: undefined };
  /** Every link, in entry order; a duplicated path counts once (duplicates are refused elsewhere). */
  readonly links: TreeNode[] = [];
  private readonly resolved = new Map<TreeNode, Resolution>();
  /** Links whose resolution is under way: meeting one again is a loop. */
  private readonly resolving = new Set<TreeNode>();

  constructor(entries: readonly ResolvableEntry[]) {
    for (const entry of entries) {
      let node = this.root;
      for (const name of entry.path.split('/')) {
        let child = node.children.get(name);
        if (child === undefined) {
          child = { path: node === this.root ? name : `${node.path}/${name}`, type: 'absent', parent: node, children: new Map(), target: undefined };
          node.children.set(name, child);
        }
        node = child;
      }
      if (node.type !== 'absent') continue;
      node.type = entry.type;
      if (entry.type === 'symlink') {
        node.target = entry.target ?? '';
        this.links.push(node);
      }
    }
  }

  problemOf(link: TreeNode): SymlinkProblem | undefined {
    const target = link.target ?? '';
    const shape = targetShapeProblem(target);
    if (shape !== undefined) return { path: link.path, kind: shape, problem: shapeMessage(shape, target) };
    const resolution = this.resolveLink(link);
    switch (resolution.kind) {
      case 'inside':
        return undefined;
      case 'escapes': {
        const through = resolution.link === link ? '' : ` through the link "${resolution.link.path}" -> "${resolution.link.target ?? ''}"`;
        const at = resolution.at === undefined ? '' : ` ("${resolution.at}" is above the release root once the links in it are followed)`;
        return { path: link.path, kind: 'escapes', problem: `symlink target "${target}" leaves the release tree${through}${at}` };
      }
      case 'loop':
        return { path: link.path, kind: 'loop', problem: `symlink target "${target}" loops or needs more than ${MAX_SYMLINK_HOPS} links to resolve` };
    }
  }

  /** Where `link` leads, resolved from its own directory; memoised. */
  private resolveLink(link: TreeNode): Resolution {
    const known = this.resolved.get(link);
    if (known !== undefined) return known;
    if (this.resolving.has(link)) return { kind: 'loop' };
    const target = link.target ?? '';
    let result: Resolution;
    if (targetShapeProblem(target) !== undefined) {
      // An absolute or empty link is refused on its own; a link through it leaves the tree with it.
      result = { kind: 'escapes', link };
    } else {
      this.resolving.add(link);
      result = this.walk({ dir: link.parent ?? this.root, virtual: 0 }, target, link);
      this.resolving.delete(link);
    }
    this.resolved.set(link, result);
    return result;
  }

  /** Walks `target` from `start`; `link` is the link being resolved, for messages. */
  private walk(start: Position, target: string, link: TreeNode): Resolution {
    let { dir, virtual } = start;
    let hops = 0;
    const names = target.split('/');
    for (const [index, name] of names.entries()) {
      if (name === '' || name === '.') continue;
      if (name === '..') {
        if (virtual > 0) virtual -= 1;
        else if (dir.parent !== undefined) dir = dir.parent;
        else return hops === 0 ? { kind: 'escapes', link } : { kind: 'escapes', link, at: names.slice(0, index + 1).join('/') };
        continue;
      }
      const child = virtual === 0 ? dir.children.get(name) : undefined;
      if (child?.type === 'dir') {
        dir = child;
      } else if (child?.type === 'symlink') {
        const next = this.resolveLink(child);
        if (next.kind !== 'inside') return next;
        hops += 1 + next.hops;
        // The kernel counts the link being looked up too.
        if (1 + hops > MAX_SYMLINK_HOPS) return { kind: 'loop' };
        ({ dir, virtual } = next.position);
      } else {
        // A file, a missing name, or anything below one: walked as a directory (see the rules above).
        virtual += 1;
      }
    }
    return { kind: 'inside', position: { dir, virtual }, hops };
  }
}

/** The longest symlink target Linux stores (PATH_MAX less the NUL). */
const MAX_TARGET_BYTES = 4095;

type ShapeProblem = 'absolute' | 'empty' | 'nul' | 'too-long';

function targetShapeProblem(target: string): ShapeProblem | undefined {
  if (target.length === 0) return 'empty';
  if (target.includes('\0')) return 'nul';
  if (target.startsWith('/')) return 'absolute';
  if (Buffer.byteLength(target) > MAX_TARGET_BYTES) return 'too-long';
  return undefined;
}

function shapeMessage(kind: ShapeProblem, target: string): string {
  switch (kind) {
    case 'too-long':
      return `symlink target is longer than ${MAX_TARGET_BYTES} bytes`;
    case 'empty':
      return 'symlink target is empty';
    case 'nul':
      return 'symlink target contains a NUL byte';
    case 'absolute':
      return `symlink target "${target}" leaves the release tree (absolute targets are not allowed)`;
  }
}
