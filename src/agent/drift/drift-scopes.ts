/**
 * What the drift monitor reads of the host: the active release tree (its
 * manifest, where `current` points, its stat cache and latest snapshot), every
 * watch path (its scope, watcher, stat cache and latest snapshot), and the
 * findings of the kept release trees. Watchers record the paths they saw
 * change here; the scan scheduler takes them for a targeted re-scan. No
 * baseline is kept here (see BaselineKeeper): this part only scans.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readlink } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { DriftFinding, WatchSpec } from '../../api/schemas.js';
import { diffAgainstManifest, mergeRescan, type SnapshotEntry } from '../../core/drift.js';
import { ifMissing } from '../../core/errors.js';
import { shortId, type ManifestEntry } from '../../core/manifest.js';
import { scanTree, type ScanResult } from '../../fim/scanner.js';
import { loadStatCache, saveStatCache, type StatCache } from '../../fim/stat-cache.js';
import { watchTree, type TreeWatcher } from '../../fim/tree-watcher.js';
import type { FimWorkerPool } from '../../fim/worker-pool.js';
import { deployLayout, releaseDir, type DeployLayout } from '../release/deploy-layout.js';
import type { ManifestStore } from '../release/manifest-store.js';
import { loadReleaseManifest, type ManifestFetcher } from '../release/release-baseline.js';
import type { ReleaseVerifier } from '../release/release-verifier.js';
import { entryDigest, groupFindings, releaseHostPath } from './drift-findings.js';
import type { ActiveRelease, DriftStateDir } from './drift-state.js';
import { sameGlobs } from './watch-baselines.js';
import { scopeHostPath, scopeRelative, watchScope, watchScopeChanges, type WatchScope } from './watch-scope.js';

/** How the active release is scanned. */
export interface ReleaseScope extends ActiveRelease {
  readonly layout: DeployLayout;
  readonly dir: string;
  /** What `current` pointed at when last read (null: missing or not a symlink); it should be releases/<releaseId>. */
  pointer: string | null;
  /** Watches DEPLOY_TO itself, for `current` being re-pointed by hand. */
  pointerWatcher: FSWatcher | undefined;
  /** Null when no trustworthy manifest could be had: release files are then not checked. */
  readonly manifest: ReadonlyMap<string, ManifestEntry> | null;
  readonly cache: StatCache;
  /** Null until the tree was scanned since it became active (no findings can be told before). */
  snapshot: readonly SnapshotEntry[] | null;
  watcher: TreeWatcher | undefined;
}

/** How one watch path is scanned. */
export interface WatchedScope {
  readonly scope: WatchScope;
  readonly cache: StatCache;
  snapshot: readonly SnapshotEntry[];
  readonly watcher: TreeWatcher | undefined;
}

/** What a scan did, for the report. */
export interface ScanStats {
  entries: number;
  hashedFiles: number;
  /** Bytes read to hash them (the agent logs it: a deployment's first scan should read next to nothing). */
  hashedBytes: number;
  elapsedMs: number;
}

/** What the scopes need from the agent. */
export interface DriftScopesOptions {
  readonly host: string;
  /** The directory treated as `/`. */
  readonly root: string;
  readonly state: DriftStateDir;
  readonly pool: FimWorkerPool;
  readonly manifests: ManifestStore;
  /** For a release manifest the store lacks. */
  readonly fetchManifest?: ManifestFetcher | undefined;
  /** Checks kept release trees against their stat records, and seeds a new release's stat cache from its record. */
  readonly verifier?: Pick<ReleaseVerifier, 'keptReleaseFindings' | 'recordedStatCache'> | undefined;
  /** The release Lockstep activated (the release baseline, see BaselineKeeper). */
  readonly activated: () => ActiveRelease | null;
  /** Re-reads the package database when it changed (see PackageWatch); scanned with every scan. */
  readonly packages?: { refresh(): Promise<void> } | undefined;
  /** A watcher saw a change: the callee runs `record` (which adds the paths to the pending ones) and schedules a re-scan. */
  readonly onChange: (record: () => void) => void;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

const RELEASE_CACHE = 'release';

/** The scanned scopes of one host and their latest snapshots. */
export class DriftScopes {
  readonly #options: DriftScopesOptions;
  readonly #log: Logger;
  /** Rebuilt (see syncRelease) when it is not the activated release. */
  #release: ReleaseScope | null = null;
  readonly #watched = new Map<string, WatchedScope>();
  /** Drift of the kept (not active) release trees, from the last check (see ReleaseVerifier.keptReleaseFindings). */
  #kept: DriftFinding[] = [];
  readonly #pendingRelease = new Set<string>();
  readonly #pendingWatch = new Map<string, Set<string>>();
  /** Aborted when a deployment starts (see abortScans). */
  #scanAbort = new AbortController();

  constructor(options: DriftScopesOptions) {
    this.#options = options;
    this.#log = options.logger;
  }

  /** The active release's scan state (null: none activated, or not built yet). */
  get release(): Readonly<ReleaseScope> | null {
    return this.#release;
  }

  /** The latest findings of the kept release trees. */
  get kept(): readonly DriftFinding[] {
    return this.#kept;
  }

  /** Every watched scope, keyed by its watch path. */
  get watched(): ReadonlyMap<string, Readonly<WatchedScope>> {
    return this.#watched;
  }

  /** Aborted when a deployment starts; scans and the cache prune stop with it. */
  get scanSignal(): AbortSignal {
    return this.#scanAbort.signal;
  }

  /** Stops the scans under way (a full re-hash of a large tree must not hold up a rollback). */
  abortScans(): void {
    this.#scanAbort.abort(new DOMException('a deployment started', 'AbortError'));
    this.#scanAbort = new AbortController();
  }

  /** Drops the scan state of any release other than `activated` (rebuilt by syncRelease). */
  keepRelease(activated: ActiveRelease | null): void {
    const release = this.#release;
    if (release !== null && (activated === null || release.releaseId !== activated.releaseId || release.deployTo !== activated.deployTo)) this.#closeRelease();
  }

  /** Builds the scan state of the activated release (its manifest, watchers) when it has none; its tree is scanned later. */
  async syncRelease(): Promise<void> {
    const activated = this.#options.activated();
    if (activated === null || this.#release !== null) return;
    const { deployTo, releaseId } = activated;
    const layout = deployLayout(this.#options.root, deployTo);
    const entries = await loadReleaseManifest(releaseId, this.#options.manifests, this.#options.fetchManifest, this.#log, this.#options.signal);
    const dir = releaseDir(layout, releaseId);
    const cache = await this.#releaseCache(layout, releaseId, dir);
    // Another switch may have happened while the manifest loaded: then that one is built next time.
    if (this.#options.activated() !== activated) return;
    const state: ReleaseScope = {
      releaseId,
      deployTo,
      layout,
      pointer: null,
      pointerWatcher: undefined,
      dir,
      manifest: entries === undefined ? null : new Map(entries.map((entry) => [entry.path, entry])),
      cache,
      snapshot: null,
      watcher: undefined,
    };
    this.#release = state;
    // Watchers first, then the scan: an edit made in between is seen by one or the other.
    state.watcher = watchTree(dir, {
      onChange: (paths) => this.#options.onChange(() => paths.forEach((path) => this.#pendingRelease.add(path))),
      onWatchError: (path, code) => this.#log.warn({ path: releaseHostPath(deployTo, path), code }, 'cannot watch a release directory; the periodic scan still covers it'),
    });
    await state.watcher.ready;
    if (this.#release !== state) return state.watcher.close(); // switched again meanwhile
    try {
      state.pointerWatcher = watch(layout.deployTo, { persistent: false }, (_event, name) => {
        if (name === 'current') this.#options.onChange(() => undefined);
      });
      state.pointerWatcher.on('error', (error) => this.#log.warn({ err: error, path: deployTo }, 'the watch on the deploy directory failed; the periodic scan still checks current'));
    } catch (error) {
      this.#log.warn({ err: error, path: deployTo }, 'cannot watch the deploy directory; the periodic scan still checks current');
    }
  }

  /**
   * The stat cache of a release tree: the saved one when it is this tree's, else (a release just activated) one
   * seeded from the stat record taken at staging, so that its first drift scan hashes only what changed since.
   */
  async #releaseCache(layout: DeployLayout, releaseId: string, dir: string): Promise<StatCache> {
    const loaded = await loadStatCache(this.#options.state.cacheFile(RELEASE_CACHE), dir);
    if (loaded.kind === 'loaded' || this.#options.verifier === undefined) return loaded.cache;
    return this.#options.verifier.recordedStatCache(layout, releaseId);
  }

  #closeRelease(): void {
    this.#release?.watcher?.close();
    this.#release?.pointerWatcher?.close();
    this.#release = null;
    this.#pendingRelease.clear();
  }

  /** Stops watching the watch paths that are no longer configured, or whose globs changed. */
  retainWatched(specs: readonly WatchSpec[]): void {
    const wanted = new Map(specs.map((spec) => [spec.path, spec]));
    for (const [path, state] of this.#watched) {
      const spec = wanted.get(path);
      if (spec !== undefined && sameGlobs(spec, state.scope.spec)) continue;
      state.watcher?.close();
      this.#watched.delete(path);
    }
  }

  /** Starts watching a watch path and scans it (every file hashed); it counts as watched once `addWatched` is called. */
  async openWatched(spec: WatchSpec): Promise<{ watched: WatchedScope; scan: ScanResult }> {
    const scope = watchScope(this.#options.root, spec);
    const cache = (await loadStatCache(this.#options.state.cacheFile(`watch:${spec.path}`), scope.root)).cache;
    const watcher = await watchScopeChanges(
      scope,
      (paths) => this.#options.onChange(() => addPaths(this.#pendingWatch, spec.path, paths)),
      (path, code) => this.#log.warn({ path, code }, 'cannot watch a directory (out of inotify watches?); the periodic scan still covers it'),
    );
    const scan = await this.#scanScope(scope, cache, false);
    return { watched: { scope, cache, snapshot: scan.entries, watcher }, scan };
  }

  /** Makes an opened watch path part of the scans and findings (once it has a baseline). */
  addWatched(watched: WatchedScope): void {
    this.#watched.set(watched.scope.spec.path, watched);
  }

  /** Scans every scope whole; `full` re-hashes every file. */
  async scanAll(full: boolean): Promise<ScanStats> {
    const started = performance.now();
    const stats = { entries: 0, hashedFiles: 0, hashedBytes: 0, elapsedMs: 0 };
    await this.syncRelease();
    await this.#options.packages?.refresh();
    const release = this.#release;
    if (release !== null) {
      await this.readPointer();
      const scan = await scanTree(release.dir, { cache: release.cache, pool: this.#options.pool, full, signal: this.#scanAbort.signal });
      release.snapshot = scan.rootError === undefined ? scan.entries : [];
      count(stats, scan);
      await saveStatCache(this.#options.state.cacheFile(RELEASE_CACHE), release.cache).catch((error: unknown) => this.#log.warn({ err: error }, 'could not save the stat cache'));
    }
    await this.checkKept();
    for (const state of this.#watched.values()) {
      const scan = await this.#scanScope(state.scope, state.cache, full, undefined, this.#scanAbort.signal);
      state.snapshot = scan.entries;
      count(stats, scan);
    }
    stats.elapsedMs = performance.now() - started;
    return stats;
  }

  /** Checks the kept release trees against their stat records (a stat walk; only changed files are hashed). */
  async checkKept(): Promise<void> {
    const release = this.#release;
    const verifier = this.#options.verifier;
    if (release === null || verifier === undefined) return;
    this.#kept = await verifier.keptReleaseFindings(release.layout, release.deployTo, release.releaseId, this.#scanAbort.signal);
  }

  /** Re-scans the given paths of each scope and merges the results into the snapshots. */
  async rescan(release: ReadonlySet<string>, watched: ReadonlyMap<string, ReadonlySet<string>>): Promise<ScanStats> {
    const started = performance.now();
    const stats = { entries: 0, hashedFiles: 0, hashedBytes: 0, elapsedMs: 0 };
    await this.#options.packages?.refresh();
    // A release not scanned since it became active is scanned whole later (resume, command); nothing to merge into.
    const state = this.#release;
    if (state !== null && state.snapshot !== null) {
      await this.readPointer();
      if (release.size > 0) {
        const scan = await scanTree(state.dir, { cache: state.cache, pool: this.#options.pool, paths: [...release], signal: this.#scanAbort.signal });
        state.snapshot = scan.rootError === undefined ? mergeRescan(state.snapshot, scan.scannedPaths, scan.entries) : [];
        count(stats, scan);
      }
    }
    for (const [path, paths] of watched) {
      const scope = this.#watched.get(path);
      if (scope === undefined || paths.size === 0) continue;
      const scan = await this.#scanScope(scope.scope, scope.cache, false, [...paths], this.#scanAbort.signal);
      scope.snapshot = mergeRescan(scope.snapshot, scan.scannedPaths, scan.entries);
      count(stats, scan);
    }
    stats.elapsedMs = performance.now() - started;
    return stats;
  }

  /**
   * Reads what is at `relatives` of a watch path now, hashing every file whatever its stat says, and merges it
   * into the snapshot (Lockstep's own writes, read back at once). Undefined when the path is not watched.
   */
  async readBack(watchPath: string, relatives: readonly string[]): Promise<ScanResult | undefined> {
    const state = this.#watched.get(watchPath);
    if (state === undefined) return undefined;
    return this.#scanScope(state.scope, undefined, true, relatives);
  }

  /** Merges a read-back scan (see readBack) into a watch path's snapshot. */
  mergeWatched(watchPath: string, scan: ScanResult): void {
    const state = this.#watched.get(watchPath);
    if (state !== undefined) state.snapshot = mergeRescan(state.snapshot, scan.scannedPaths, scan.entries);
  }

  /** Reads where `current` of the active release points now. */
  async readPointer(): Promise<void> {
    const release = this.#release;
    if (release !== null) release.pointer = await readLinkTarget(release.layout.currentLink);
  }

  /** The paths the watchers saw change since the last call. */
  takePending(): { release: Set<string>; watched: Map<string, Set<string>> } {
    const release = new Set(this.#pendingRelease);
    const watched = new Map([...this.#pendingWatch].map(([path, paths]) => [path, new Set(paths)]));
    this.#pendingRelease.clear();
    this.#pendingWatch.clear();
    return { release, watched };
  }

  /** The watched scope a host path is under, with the path relative to the scope's root. */
  locateWatched(path: string): { watched: Readonly<WatchedScope>; relative: string } | undefined {
    for (const watched of this.#watched.values()) {
      const relative = scopeRelative(watched.scope, path);
      if (relative !== undefined) return { watched, relative };
    }
    return undefined;
  }

  /** Absolute host path → a short digest of what is there now, for every watched entry (for parity). */
  watchedSummary(): Record<string, string> {
    const summary: Record<string, string> = {};
    for (const state of this.#watched.values()) for (const entry of state.snapshot) summary[scopeHostPath(state.scope, entry.path)] = entryDigest(entry);
    return summary;
  }

  /**
   * The first scan after a deployment: the error that fails the host's step
   * when the release dir differs from its manifest, or null when it matches.
   */
  async verifyRelease(deployTo: string, releaseId: string): Promise<string | null> {
    const manifest = await loadReleaseManifest(releaseId, this.#options.manifests, this.#options.fetchManifest, this.#log, this.#options.signal);
    if (manifest === undefined) return null;
    const layout = deployLayout(this.#options.root, deployTo);
    const dir = releaseDir(layout, releaseId);
    // A stat walk against the record taken at staging: only files changed since are hashed (no full re-hash).
    const cache = await this.#options.verifier?.recordedStatCache(layout, releaseId);
    const scan = await scanTree(dir, { pool: this.#options.pool, ...(cache === undefined ? {} : { cache }) });
    this.#log.info({ release: shortId(releaseId), entries: scan.entries.length, hashedFiles: scan.counters.hashedFiles, hashedBytes: scan.counters.hashedBytes, elapsedMs: Math.round(scan.elapsedMs) }, 'checked the activated release against its manifest');
    const findings = groupFindings({
      scope: 'release',
      findings: scan.rootError === undefined ? diffAgainstManifest(manifest, scan.entries) : diffAgainstManifest(manifest, []),
      expected: () => undefined,
      actual: () => undefined,
      hostPath: (path) => releaseHostPath(deployTo, path),
    });
    const first = findings[0];
    if (first === undefined) return null;
    const count = findings.length;
    return `host ${this.#options.host} does not run what was deployed: ${count} ${count === 1 ? 'file differs' : 'files differ'} (e.g. ${first.path}: ${first.kinds.join(', ')})`;
  }

  /** Stops the watchers and the scanner threads. */
  async close(): Promise<void> {
    this.#closeRelease();
    for (const state of this.#watched.values()) state.watcher?.close();
    await this.#options.pool.close();
  }

  /** Scans a watch scope (only `paths`, if given); without a stat cache every file is hashed. */
  async #scanScope(scope: WatchScope, cache: StatCache | undefined, full: boolean, paths?: readonly string[], signal?: AbortSignal): Promise<ScanResult> {
    const scan = await scanTree(scope.root, { ...(cache ? { cache } : {}), pool: this.#options.pool, full, paths: paths ?? [scope.base], include: scope.include, exclude: scope.exclude, ...(signal ? { signal } : {}) });
    if (cache) await saveStatCache(this.#options.state.cacheFile(`watch:${scope.spec.path}`), cache).catch((error: unknown) => this.#log.warn({ err: error }, 'could not save the stat cache'));
    return scan.rootError === undefined ? scan : { ...scan, entries: [] };
  }
}

/** Adds `paths` to the set kept under `key`. */
export function addPaths(target: Map<string, Set<string>>, key: string, paths: Iterable<string>): void {
  let set = target.get(key);
  if (set === undefined) {
    set = new Set();
    target.set(key, set);
  }
  for (const path of paths) set.add(path);
}

function count(stats: { entries: number; hashedFiles: number; hashedBytes: number }, scan: ScanResult): void {
  stats.entries += scan.entries.length;
  stats.hashedFiles += scan.counters.hashedFiles;
  stats.hashedBytes += scan.counters.hashedBytes;
}

/** Where a symlink points; null when it is missing or not a symlink (EINVAL). Other errors are thrown. */
async function readLinkTarget(path: string): Promise<string | null> {
  try {
    return (await ifMissing(readlink(path))) ?? null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EINVAL') return null;
    throw error;
  }
}
