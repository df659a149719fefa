/**
 * Realtime change notification for a tree: one non-recursive fs.watch
 * (inotify) per directory, debounced into batches of changed paths for a
 * targeted re-scan.
 *
 * Why not fs.watch(root, { recursive: true })? On Linux, Node 20 implements it
 * in JavaScript with one watcher per file and per directory, set up by a
 * synchronous walk that follows symlinks (statSync) and blocks the event loop:
 * 100,000 files would mean 100,000 inotify watches. A watch per directory
 * reports its children's changes already.
 *
 * A watcher can miss events (inotify queue overflow, a directory created and
 * filled before its watch is added is covered by reporting the new directory
 * itself); the periodic scan covers the rest.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { compileGlobs } from './glob.js';
import { ifMissing } from '../core/errors.js';

/** How to watch. */
export interface WatchOptions {
  /** Called with the changed paths (relative to root, sorted, deduplicated) after events settle. */
  readonly onChange: (paths: string[]) => void;
  /** Globs of paths not to watch or report (same syntax as the scanner's). */
  readonly exclude?: readonly string[];
  /** Quiet time after the last event before calling back. Default 50 ms. */
  readonly debounceMs?: number;
  /** Longest time from the first event of a batch to the call back. Default 250 ms. */
  readonly maxDelayMs?: number;
  /** A directory that could not be watched (e.g. ENOSPC: out of inotify watches); the periodic scan still covers it. */
  readonly onWatchError?: (path: string, code: string) => void;
}

/** A running watcher. */
export interface TreeWatcher {
  /** Resolves once every directory present at start is watched. */
  readonly ready: Promise<void>;
  /** How many directories are watched now. */
  watchedDirectories(): number;
  /** Stops watching and drops pending events. */
  close(): void;
}

/** Watches every directory under `root` (not following symlinks) and reports changed paths. */
export function watchTree(root: string, options: WatchOptions): TreeWatcher {
  const absoluteRoot = resolve(root);
  const excluded = compileGlobs(options.exclude ?? []);
  const debounceMs = options.debounceMs ?? 50;
  const maxDelayMs = options.maxDelayMs ?? 250;
  const watchers = new Map<string, FSWatcher>();
  const pending = new Set<string>();
  let quietTimer: NodeJS.Timeout | undefined;
  let maxTimer: NodeJS.Timeout | undefined;
  let closed = false;

  const flush = (): void => {
    clearTimeout(quietTimer);
    clearTimeout(maxTimer);
    quietTimer = undefined;
    maxTimer = undefined;
    if (closed || pending.size === 0) return;
    const paths = [...pending].sort();
    pending.clear();
    options.onChange(paths);
  };

  const note = (path: string): void => {
    if (closed || (path !== '' && excluded(path))) return;
    pending.add(path);
    clearTimeout(quietTimer);
    quietTimer = setTimeout(flush, debounceMs);
    maxTimer ??= setTimeout(flush, maxDelayMs);
  };

  const unwatchUnder = (dir: string): void => {
    for (const [path, watcher] of watchers) {
      if (path === dir || dir === '' || path.startsWith(`${dir}/`)) {
        watcher.close();
        watchers.delete(path);
      }
    }
  };

  const watchDirectory = async (dir: string): Promise<void> => {
    if (closed || watchers.has(dir)) return;
    const absolute = dir === '' ? absoluteRoot : `${absoluteRoot}/${dir}`;
    let watcher: FSWatcher;
    try {
      watcher = watch(absolute, (_event, name) => {
        if (name === null) {
          note(dir);
          return;
        }
        const path = dir === '' ? String(name) : `${dir}/${String(name)}`;
        note(path);
        void onChild(path);
      });
    } catch (error) {
      options.onWatchError?.(dir, errorCode(error));
      return;
    }
    watcher.on('error', () => {
      // The directory went away (or was replaced): its parent's watcher reports it.
      unwatchUnder(dir);
      note(dir);
    });
    watchers.set(dir, watcher);
    let names: string[];
    try {
      names = ((await ifMissing(readdir(absolute, { withFileTypes: true }))) ?? []).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
    } catch (error) {
      // Watched, but what is below cannot be listed: said, since changes down there go unseen until it can.
      options.onWatchError?.(dir, errorCode(error));
      return;
    }
    await Promise.all(names.map((name) => (dir === '' ? name : `${dir}/${name}`)).filter((path) => !excluded(path)).map(watchDirectory));
  };

  /** A new directory gets watched (and its existing content is reported via the directory itself); a gone one is unwatched. */
  const onChild = async (path: string): Promise<void> => {
    if (excluded(path)) return;
    let info;
    try {
      info = await ifMissing(lstat(`${absoluteRoot}/${path}`));
    } catch (error) {
      options.onWatchError?.(path, errorCode(error));
      info = undefined;
    }
    if (info?.isDirectory() === true) {
      if (!watchers.has(path)) await watchDirectory(path);
    } else {
      unwatchUnder(path);
    }
  };

  const ready = watchDirectory('');
  return {
    ready,
    watchedDirectories: () => watchers.size,
    close() {
      closed = true;
      clearTimeout(quietTimer);
      clearTimeout(maxTimer);
      for (const watcher of watchers.values()) watcher.close();
      watchers.clear();
      pending.clear();
    },
  };
}

function errorCode(error: unknown): string {
  return error instanceof Error && 'code' in error ? String(error.code) : String(error);
}
