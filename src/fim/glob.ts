/**
 * A tiny glob matcher for include/exclude rules. Node's path.matchesGlob only
 * exists from Node 20.17 (experimental), and we support every Node 20.
 *
 * Syntax: `*` any run of characters except '/', `?` one such character,
 * `[abc]`/`[a-z]`/`[!a]` a class, `**` any number of whole segments. A pattern
 * without '/' matches an entry's last segment at any depth (`*.log`); a
 * pattern with '/' is anchored at the scanned root (`var/cache/**`). A pattern
 * that matches a directory also matches everything under it.
 */

/** A compiled set of patterns: whether a relative path matches any of them. */
export type GlobMatcher = (path: string) => boolean;

/** Compiles patterns into one matcher; an empty list matches nothing. */
export function compileGlobs(patterns: readonly string[]): GlobMatcher {
  if (patterns.length === 0) return () => false;
  const anchored: RegExp[] = [];
  const basenames: RegExp[] = [];
  for (const raw of patterns) {
    const pattern = raw.replace(/^\.?\/+/, '').replace(/\/+$/, '');
    if (pattern.includes('/')) anchored.push(new RegExp(`^${globSource(pattern)}(?:/.*)?$`, 's'));
    else basenames.push(new RegExp(`^${globSource(pattern)}$`, 's'));
  }
  return (path) => {
    if (anchored.some((regex) => regex.test(path))) return true;
    if (basenames.length === 0) return false;
    // Any segment matching a basename pattern covers the entry (it is that entry or under it).
    for (const segment of path.split('/')) if (basenames.some((regex) => regex.test(segment))) return true;
    return false;
  };
}

function globSource(pattern: string): string {
  let source = '';
  for (let index = 0; index < pattern.length; index++) {
    const char = pattern[index] as string;
    if (char === '/' && pattern.slice(index) === '/**') {
      // `dir/**` also matches `dir` itself, so that excluding it prunes the directory.
      source += '(?:/.*)?';
      break;
    }
    if (char === '*') {
      if (pattern[index + 1] === '*') {
        const atSegmentStart = index === 0 || pattern[index - 1] === '/';
        const next = pattern[index + 2];
        if (atSegmentStart && next === '/') {
          source += '(?:.*/)?';
          index += 2;
        } else if (atSegmentStart && next === undefined) {
          source += '.*';
          index += 1;
        } else {
          source += '[^/]*';
          index += 1;
        }
      } else {
        source += '[^/]*';
      }
    } else if (char === '?') {
      source += '[^/]';
    } else if (char === '[') {
      const end = pattern.indexOf(']', index + 2);
      if (end < 0) {
        source += '\\[';
        continue;
      }
      let body = pattern.slice(index + 1, end);
      const negated = body.startsWith('!') || body.startsWith('^');
      if (negated) body = body.slice(1);
      source += `[${negated ? '^/' : ''}${body.replace(/[\\\]]/g, '\\$&')}]`;
      index = end;
    } else {
      source += char.replace(/[.+^${}()|\\]/g, '\\$&');
    }
  }
  return source;
}
