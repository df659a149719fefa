/**
 * One `watch:` path on a host: where it is under --root, how to scan it and
 * how to watch it. A watch path may be a directory, a single file or absent,
 * so it is scanned as the one path `basename` under its parent directory:
 * the watched path itself is then an entry (its mode and owner count too),
 * and a file or a path that appears later needs no special case. The
 * include/exclude globs, relative to the watch path, are re-anchored under
 * the basename.
 */
import { watch } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { posix } from 'node:path';
import type { WatchSpec } from '../../api/schemas.js';
import { ifMissing } from '../../core/errors.js';
import { watchTree, type TreeWatcher } from '../../fim/tree-watcher.js';
import { hostPath } from '../release/deploy-layout.js';

/** A watch path resolved against the agent's root. */
export interface WatchScope {
  readonly spec: WatchSpec;
  /** The parent directory under --root: the scanner's root. */
  readonly root: string;
  /** The watched path relative to `root` ('' when the watch path is `/`). */
  readonly base: string;
  /** Include and exclude globs relative to `root`. */
  readonly include: readonly string[];
  readonly exclude: readonly string[];
}

/** Resolves a watch spec under `agentRoot`. */
export function watchScope(agentRoot: string, spec: WatchSpec): WatchScope {
  const normalized = posix.normalize(spec.path);
  const parent = normalized === '/' ? '/' : posix.dirname(normalized);
  const base = normalized === '/' ? '' : posix.basename(normalized);
  return {
    spec,
    root: hostPath(agentRoot, parent),
    base,
    include: spec.include.map((pattern) => anchorUnder(base, pattern)),
    exclude: spec.exclude.map((pattern) => anchorUnder(base, pattern)),
  };
}

/** The absolute host path (without --root) of a path relative to the scope's root. */
export function scopeHostPath(scope: WatchScope, relative: string): string {
  const parent = scope.spec.path === '/' ? '/' : posix.dirname(posix.normalize(scope.spec.path));
  return relative === '' ? parent : posix.join(parent, relative);
}

/** The scope-relative path of an absolute host path, or undefined when it is not under the watch path. */
export function scopeRelative(scope: WatchScope, absolute: string): string | undefined {
  const watched = posix.normalize(scope.spec.path);
  const path = posix.normalize(absolute);
  if (watched === '/') return path === '/' ? undefined : path.slice(1);
  if (path !== watched && !path.startsWith(`${watched}/`)) return undefined;
  return posix.join(scope.base, path.slice(watched.length + 1));
}

/**
 * Watches a scope: the whole tree when the watch path is a directory, else its
 * parent directory for events naming the basename (not recursive). Reports
 * changed paths relative to the scope's root. Undefined when nothing can be
 * watched (the parent is missing); the periodic scan covers that.
 */
export async function watchScopeChanges(
  scope: WatchScope,
  onChange: (paths: string[]) => void,
  onWatchError: (path: string, code: string) => void,
): Promise<TreeWatcher | undefined> {
  const watchedPath = scope.base === '' ? scope.root : `${scope.root}/${scope.base}`;
  const info = await ifMissing(lstat(watchedPath));
  if (info?.isDirectory()) {
    const watcher = watchTree(watchedPath, {
      exclude: scope.spec.exclude,
      onChange: (paths) => onChange(paths.map((path) => (path === '' ? scope.base : scope.base === '' ? path : `${scope.base}/${path}`))),
      onWatchError: (path, code) => onWatchError(path === '' ? scope.spec.path : posix.join(scope.spec.path, path), code),
    });
    await watcher.ready;
    return watcher;
  }
  try {
    const watcher = watch(scope.root, (_event, name) => {
      if (name === null || String(name) === scope.base) onChange([scope.base]);
    });
    watcher.on('error', () => watcher.close());
    return { ready: Promise.resolve(), watchedDirectories: () => 1, close: () => watcher.close() };
  } catch (error) {
    onWatchError(scope.spec.path, error instanceof Error && 'code' in error ? String(error.code) : String(error));
    return undefined;
  }
}

/** A glob relative to the watch path, made relative to its parent: anchored ones get the basename in front, basename ones `BASE/**` . */
function anchorUnder(base: string, pattern: string): string {
  if (base === '') return pattern;
  const trimmed = pattern.replace(/^\.?\/+/, '');
  const prefix = escapeGlob(base);
  return trimmed.includes('/') ? `${prefix}/${trimmed}` : `${prefix}/**/${trimmed}`;
}

/** A literal name as a glob: the special characters as one-character classes. */
function escapeGlob(name: string): string {
  return name.replace(/[*?[]/g, (char) => `[${char}]`);
}
