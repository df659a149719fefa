/**
 * Include/exclude rules for scans and watches, matched by picomatch (Node's
 * path.matchesGlob exists only from Node 20.17, experimental, and we support
 * every Node 20; a hand-written matcher silently matched nothing for braces).
 *
 * Syntax: `*` any run of characters except '/', `?` one such character,
 * `[abc]`/`[a-z]`/`[!a]` a class, `{bak,tmp}` alternatives, `**` any number
 * of whole segments; dot files match like any other. A pattern without '/'
 * matches an entry's last segment at any depth (`*.log`, `*.{bak,tmp}`); a
 * pattern with '/' is anchored at the scanned root (`var/cache/**`). A
 * pattern that matches a directory also matches everything under it.
 */
import picomatch from 'picomatch';

/** A compiled set of patterns: whether a relative path matches any of them. */
export type GlobMatcher = (path: string) => boolean;

/** dot: hidden files are files like any other in an integrity tool; no extglobs: `a+(b)` stays literal text; posix: `[!a]` negates a class. */
const OPTIONS: picomatch.PicomatchOptions = { dot: true, noextglob: true, posix: true };

/** Compiles patterns into one matcher; an empty list matches nothing. */
export function compileGlobs(patterns: readonly string[]): GlobMatcher {
  if (patterns.length === 0) return () => false;
  const anchored: string[] = [];
  const basenames: string[] = [];
  for (const raw of patterns) {
    const pattern = raw.replace(/^\.?\/+/, '').replace(/\/+$/, '');
    // `dir/**` also covers what lies under a matching directory (and `dir` itself), so excluding it prunes it.
    if (pattern.includes('/')) anchored.push(pattern, `${pattern}/**`);
    else basenames.push(pattern);
  }
  const matchAnchored = anchored.length === 0 ? () => false : picomatch(anchored, OPTIONS);
  const matchBasename = basenames.length === 0 ? undefined : picomatch(basenames, OPTIONS);
  return (path) => {
    if (matchAnchored(path)) return true;
    if (matchBasename === undefined) return false;
    // Any segment matching a basename pattern covers the entry (it is that entry or under it).
    for (const segment of path.split('/')) if (matchBasename(segment)) return true;
    return false;
  };
}
