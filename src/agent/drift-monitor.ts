/**
 * The agent's drift monitor: compares the host with its baseline and tells
 * the server. The baseline is the active release's manifest (for the tree
 * `current` points at) plus a snapshot of every `watch:` path, taken when
 * Lockstep last changed the host. Changes are seen three ways: a watcher
 * (inotify) triggers a targeted re-scan within a fraction of a second, a
 * periodic scan trusting the stat cache covers what a watcher misses, and a
 * full re-hash on a longer schedule covers what a stat cache misses.
 *
 * Every scan, command and re-baseline runs one at a time. While a deployment
 * runs the monitor is paused (its own changes are no drift); afterwards the
 * baseline is re-taken, except for watched paths that had drift before, so
 * that drift stays visible.
 */
import { availableParallelism } from 'node:os';
import { join, posix } from 'node:path';
import type { Logger } from 'pino';
import type { AgentCommand, CommandResult, DriftFinding, DriftReport, HostSettings } from '../api/schemas.js';
import type { BlobCache } from '../content/blob-cache.js';
import { DEFAULT_SCAN_INTERVALS, diffAgainstManifest, diffSnapshot, dueScan, mergeRescan, type SnapshotEntry } from '../core/drift.js';
import type { ManifestEntry } from '../core/manifest.js';
import { scanTree, type ScanResult } from '../fim/scanner.js';
import { loadStatCache, saveStatCache, type StatCache } from '../fim/stat-cache.js';
import type { TreeWatcher } from '../fim/tree-watcher.js';
import { FimWorkerPool } from '../fim/worker-pool.js';
import { watchTree } from '../fim/tree-watcher.js';
import { watch, type FSWatcher } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import { currentTarget, pointCurrent, readCurrentReleaseId } from './activator.js';
import { deployLayout, isReleaseId, releaseDir, type DeployLayout } from './deploy-layout.js';
import { cappedFindings, entryDigest, groupFindings } from './drift-findings.js';
import { DriftReporter, type DriftSink, type PendingUpload } from './drift-reporter.js';
import { dropEditedCacheCopies, restoreReleaseEntry, restoreWatchEntry, type RestoreContext } from './drift-revert.js';
import { DriftStateDir, type ScanTimes, type WatchBaseline } from './drift-state.js';
import type { ManifestStore } from './manifest-store.js';
import type { ReleaseVerifier } from './release-verifier.js';
import { loadReleaseManifest, type ManifestFetcher } from './release-baseline.js';
import { sleep } from './retry.js';
import { storeBaselineContent } from './watch-content.js';
import { scopeHostPath, scopeRelative, watchScope, watchScopeChanges, type WatchScope } from './watch-scope.js';

/** What the monitor needs from the agent. */
export interface DriftMonitorOptions {
  readonly host: string;
  /** The directory treated as `/`. */
  readonly root: string;
  /** The agent's state dir; the monitor keeps its files in STATE_DIR/drift/. */
  readonly stateDir: string;
  readonly cache: BlobCache;
  readonly manifests: ManifestStore;
  /** The latest host settings (null until the server sent them: the monitor waits for them). */
  readonly settings: () => HostSettings | null;
  /** DEPLOY_TO as the settings or the last task said (null: unknown). */
  readonly deployTo: () => string | null;
  readonly sink: DriftSink;
  /** For a release manifest the store lacks. */
  readonly fetchManifest?: ManifestFetcher;
  /** For a blob a revert needs that the cache lacks or holds corrupted. */
  readonly fetchBlob?: RestoreContext['fetchBlob'];
  /** Checks kept release trees against their stat records, and repairs release trees with every tree sharing an edited inode. */
  readonly verifier?: Pick<ReleaseVerifier, 'verifyTree' | 'repairPaths' | 'keptReleaseFindings'>;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Scanner threads (default: the CPUs, at most 4). */
  readonly workers?: number;
}

/** The outcome of a command, as the server is told (without the host). */
export type CommandOutcome = Omit<CommandResult, 'host'>;

interface ReleaseState {
  readonly releaseId: string;
  /** DEPLOY_TO as in the config: host paths are `${deployTo}/current/${path}`. */
  readonly deployTo: string;
  readonly layout: DeployLayout;
  readonly dir: string;
  /** What `current` pointed at when last read (null: missing or not a symlink); it should be releases/<releaseId>. */
  pointer: string | null;
  /** Watches DEPLOY_TO itself, for `current` being re-pointed by hand. */
  pointerWatcher: FSWatcher | undefined;
  /** Null when no trustworthy manifest could be had: release files are then not checked. */
  readonly manifest: ReadonlyMap<string, ManifestEntry> | null;
  readonly cache: StatCache;
  snapshot: readonly SnapshotEntry[];
  watcher: TreeWatcher | undefined;
}

interface WatchState {
  readonly scope: WatchScope;
  readonly cache: StatCache;
  baseline: WatchBaseline;
  snapshot: readonly SnapshotEntry[];
  watcher: TreeWatcher | undefined;
}

interface ScanStats {
  entries: number;
  hashedFiles: number;
  elapsedMs: number;
}

const RELEASE_CACHE = 'release';
/** How often the periodic loop checks whether a scan is due. */
const TICK_MS = 1000;

/** Watches one host for drift and reports it. */
export class DriftMonitor {
  readonly #options: DriftMonitorOptions;
  readonly #log: Logger;
  readonly #state: DriftStateDir;
  readonly #pool: FimWorkerPool;
  readonly #reporter: DriftReporter;
  #chain: Promise<unknown> = Promise.resolve();
  #ready = false;
  #paused = false;
  #release: ReleaseState | null = null;
  readonly #watched = new Map<string, WatchState>();
  #times: ScanTimes = { lastScanAt: null, lastFullAt: null };
  #storedBaselines: Map<string, WatchBaseline> | undefined;
  #lastSent: string | undefined;
  #findings: DriftFinding[] = [];
  /** Drift of the kept (not active) release trees, from the last periodic check (see ReleaseVerifier.keptReleaseFindings). */
  #kept: DriftFinding[] = [];
  readonly #pendingRelease = new Set<string>();
  readonly #pendingWatch = new Map<string, Set<string>>();
  #flushQueued = false;
  #loop: Promise<void> | undefined;
  readonly #closed = new AbortController();
  #pendingResume: { readonly timer: NodeJS.Timeout; readonly skip: () => void } | undefined;
  /** Aborts the scans under way when a deployment starts (see pause). */
  #scanAbort = new AbortController();
  /** Set when releases were pruned; the cache is pruned at the next resume (and stays due if that is cut short). */
  #cachePruneDue = false;
  /** Host paths Lockstep itself is changing now (see ownChange), with how many changes are under way. */
  readonly #ownPending = new Map<string, number>();

  constructor(options: DriftMonitorOptions) {
    this.#options = options;
    this.#log = options.logger.child({ part: 'drift' });
    this.#state = new DriftStateDir(join(options.stateDir, 'drift'));
    this.#pool = new FimWorkerPool(options.workers ?? Math.min(4, Math.max(1, availableParallelism())));
    this.#reporter = new DriftReporter(options.sink, this.#log, options.signal);
  }

  /** Starts the periodic loop; the first scan runs once settings are known (see `settingsChanged`). */
  start(): void {
    this.#loop ??= this.#periodic().catch((error: unknown) => {
      if (!this.#options.signal.aborted) this.#log.error({ err: error }, 'the periodic drift scan loop stopped');
    });
    if (this.#options.settings() !== null) {
      this.settingsChanged().catch((error: unknown) => this.#scanFailed(error, 'could not take the drift baseline'));
    }
  }

  /** The settings (watch paths, deploy_to, intervals) changed: re-read them, take baselines of new watch paths, scan and report. */
  settingsChanged(): Promise<void> {
    return this.#exclusive(async () => {
      // During a deployment the new settings wait for resume(), which re-reads them.
      if (this.#options.settings() === null || this.#paused) return;
      await this.#setUp('start');
      const stats = await this.#scanAll(this.#dueFull());
      this.#ready = true;
      void this.#publish({ kind: 'scan' }, stats.full, stats, true);
    });
  }

  /**
   * Stops watching for a deployment; resolves when no scan is running any more. A scan under way is aborted
   * (a full re-hash of a large tree must not hold up a rollback), and what a scan found meanwhile is not reported.
   */
  async pause(): Promise<void> {
    this.#paused = true;
    this.#scanAbort.abort(new DOMException('a deployment started', 'AbortError'));
    this.#scanAbort = new AbortController();
    this.#cancelResume();
    this.#pendingRelease.clear();
    this.#pendingWatch.clear();
    await this.#chain.catch(() => undefined);
  }

  /**
   * After a deployment (any outcome): re-takes the baseline and reports with the deployment as cause,
   * `delayMs` later. The delay lets the rollout's own reports and the other hosts' switches go first
   * (measured: re-scanning and reporting at once made a 20-host rollback's server window twice as long);
   * a task arriving meanwhile (a rollback right after a deploy) cancels it, and its own resume() re-takes the baseline.
   */
  resume(deploymentId: number, delayMs = 0): Promise<void> {
    this.#cancelResume();
    if (delayMs <= 0) return this.#resumeNow(deploymentId);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pendingResume = undefined;
        this.#resumeNow(deploymentId).then(resolve, (error: unknown) => {
          this.#log.error({ err: error }, 'could not re-take the drift baseline after a task');
          resolve();
        });
      }, delayMs);
      this.#pendingResume = { timer, skip: resolve };
    });
  }

  #cancelResume(): void {
    if (this.#pendingResume === undefined) return;
    clearTimeout(this.#pendingResume.timer);
    this.#pendingResume.skip();
    this.#pendingResume = undefined;
  }

  #resumeNow(deploymentId: number): Promise<void> {
    return this.#exclusive(async () => {
      this.#paused = false;
      if (this.#options.settings() === null) return;
      await this.#setUp('after-task');
      const stats = await this.#scanAll(false);
      this.#ready = true;
      // Not awaited: delivery retries while the server is away, and must not hold up the next scan.
      void this.#publish({ kind: 'deployment', deploymentId }, false, stats, true);
      if (this.#cachePruneDue) await this.#pruneCache();
    });
  }

  /** Old releases were removed from disk: the blob cache may drop their content at the next resume. */
  cachePruneDue(): void {
    this.#cachePruneDue = true;
  }

  /** Removes cached content that neither a release on disk nor a watched baseline uses (see BlobCache.prune). */
  async #pruneCache(): Promise<void> {
    const baseline = new Set<string>();
    for (const state of this.#watched.values()) for (const entry of state.baseline.entries) if (entry.sha256 !== undefined) baseline.add(entry.sha256);
    try {
      const { removedFiles, removedBytes } = await this.#options.cache.prune((hash) => baseline.has(hash), this.#scanAbort.signal);
      this.#cachePruneDue = false;
      if (removedFiles > 0) this.#log.info({ removedFiles, removedBytes }, 'removed content no release on disk uses from the blob cache');
    } catch (error) {
      this.#scanFailed(error, 'could not prune the blob cache');
    }
  }

  /**
   * The first scan after a deployment: the error that fails the host's step
   * when the release dir differs from its manifest, or null when it matches.
   */
  async verifyRelease(deployTo: string, releaseId: string): Promise<string | null> {
    const manifest = await loadReleaseManifest(releaseId, this.#options.manifests, this.#options.fetchManifest, this.#log, this.#options.signal);
    if (manifest === undefined) return null;
    const dir = releaseDir(deployLayout(this.#options.root, deployTo), releaseId);
    const scan = await scanTree(dir, { pool: this.#pool });
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

  /** Carries out a command from the server (between tasks); never throws. */
  async runCommand(command: AgentCommand): Promise<CommandOutcome> {
    let delivered: Promise<void> = Promise.resolve();
    const outcome = await this.#exclusive(async (): Promise<CommandOutcome> => {
      if (!this.#ready) return { ok: false, error: 'the agent has no drift baseline yet (it waits for its settings from the server); try again in a moment' };
      const cause = { kind: 'command', commandId: command.id } as const;
      switch (command.kind) {
        case 'drift-scan': {
          const stats = await this.#scanAll(command.full);
          delivered = this.#publish(cause, stats.full, stats, true);
          return { ok: true, detail: `scanned ${stats.entries} entries${command.full ? ' (full re-hash)' : ''}, ${this.#findings.length} drifted` };
        }
        case 'drift-revert': {
          const result = await this.#revert(command.paths);
          delivered = this.#publish(cause, false, result.stats, true);
          return result.outcome;
        }
        case 'drift-accept': {
          const result = await this.#accept(command.paths);
          delivered = this.#publish(cause, false, result.stats, true);
          return result.outcome;
        }
      }
    }).catch((error: unknown): CommandOutcome => {
      this.#log.error({ err: error, command }, 'drift command failed');
      return { ok: false, error: `the agent could not carry out the command: ${error instanceof Error ? error.message : String(error)}`.slice(0, 4000) };
    });
    // The server learns the confirming re-scan before the result, as the protocol says.
    await delivered;
    return outcome;
  }

  /** Absolute host path → a short digest of what is there now, for every watched entry (for parity). */
  watchedSummary(): Record<string, string> {
    const summary: Record<string, string> = {};
    for (const state of this.#watched.values()) for (const entry of state.snapshot) summary[scopeHostPath(state.scope, entry.path)] = entryDigest(entry);
    return summary;
  }

  /** The findings of the latest scan, as last computed. */
  currentFindings(): readonly DriftFinding[] {
    return this.#findings;
  }

  /** Resolves when no scan or command is running or queued (tests). */
  async idle(): Promise<void> {
    for (;;) {
      const chain = this.#chain;
      await chain.catch(() => undefined);
      if (chain === this.#chain && !this.#flushQueued) return;
    }
  }

  /** Stops watchers and scanner threads. */
  async close(): Promise<void> {
    this.#paused = true;
    this.#cancelResume();
    this.#closed.abort();
    await this.#chain.catch(() => undefined);
    this.#release?.watcher?.close();
    this.#release?.pointerWatcher?.close();
    for (const state of this.#watched.values()) state.watcher?.close();
    await this.#pool.close();
    await this.#loop;
  }

  // ---- baselines ----

  /** Brings the scopes in line with settings and disk: the active release, and a baseline for every watch path. */
  async #setUp(reason: 'start' | 'after-task'): Promise<void> {
    await this.#state.open();
    if (this.#storedBaselines === undefined) {
      this.#storedBaselines = await this.#state.readWatchBaselines();
      this.#times = await this.#state.readScanTimes();
    }
    await this.#setUpRelease(reason);
    await this.#setUpWatched(reason);
  }

  /**
   * The release baseline: the release Lockstep made current. After a task that is what `current` points at now;
   * at start it is the one remembered from the last task, so that `current` re-pointed by hand while the agent
   * was down is drift too (when nothing is remembered, what `current` points at is taken).
   */
  async #setUpRelease(reason: 'start' | 'after-task'): Promise<void> {
    const deployTo = this.#options.deployTo();
    const layout = deployTo === null ? undefined : deployLayout(this.#options.root, deployTo);
    let releaseId = layout === undefined ? null : await readCurrentReleaseId(layout).catch(() => null);
    if (layout !== undefined && deployTo !== null) {
      const remembered = reason === 'start' ? await this.#state.readActivated() : undefined;
      const usable = remembered !== undefined && remembered.deployTo === deployTo && isReleaseId(remembered.releaseId) && (await isDirectory(releaseDir(layout, remembered.releaseId)));
      if (usable) releaseId = remembered.releaseId;
      else if (releaseId !== null) await this.#state.writeActivated({ deployTo, releaseId }).catch((error: unknown) => this.#log.warn({ err: error }, 'could not remember the active release'));
    }
    const previous = this.#release;
    if (previous !== null && previous.releaseId === releaseId && previous.deployTo === deployTo) return;
    previous?.watcher?.close();
    previous?.pointerWatcher?.close();
    this.#release = null;
    if (layout === undefined || releaseId === null || deployTo === null) return;
    const entries = await loadReleaseManifest(releaseId, this.#options.manifests, this.#options.fetchManifest, this.#log, this.#options.signal);
    const dir = releaseDir(layout, releaseId);
    const loaded = await loadStatCache(this.#state.cacheFile(RELEASE_CACHE), dir);
    const state: ReleaseState = {
      releaseId,
      deployTo,
      layout,
      pointer: currentTarget(releaseId),
      pointerWatcher: undefined,
      dir,
      manifest: entries === undefined ? null : new Map(entries.map((entry) => [entry.path, entry])),
      cache: loaded.cache,
      snapshot: [],
      watcher: undefined,
    };
    state.watcher = watchTree(dir, {
      onChange: (paths) => this.#onChange(() => paths.forEach((path) => this.#pendingRelease.add(path))),
      onWatchError: (path, code) => this.#log.warn({ path: releaseHostPath(deployTo, path), code }, 'cannot watch a release directory; the periodic scan still covers it'),
    });
    await state.watcher.ready;
    try {
      state.pointerWatcher = watch(layout.deployTo, { persistent: false }, (_event, name) => {
        if (name === 'current') this.#onChange(() => undefined);
      });
      state.pointerWatcher.on('error', () => undefined);
    } catch (error) {
      this.#log.warn({ err: error, path: deployTo }, 'cannot watch the deploy directory; the periodic scan still checks current');
    }
    await this.#readPointer(state);
    this.#release = state;
  }

  async #setUpWatched(reason: 'start' | 'after-task'): Promise<void> {
    const specs = this.#options.settings()?.watch ?? [];
    const wanted = new Map(specs.map((spec) => [spec.path, spec]));
    let baselinesChanged = false;
    for (const [path, state] of this.#watched) {
      const spec = wanted.get(path);
      if (spec !== undefined && sameGlobs(spec, state.baseline)) continue;
      state.watcher?.close();
      this.#watched.delete(path);
      baselinesChanged = true;
    }
    // Paths with drift before a deployment keep their old baseline entries, so the drift stays visible.
    const drifted = new Set(this.#findings.filter((finding) => finding.scope === 'watch').map((finding) => finding.path));
    for (const spec of specs) {
      const existing = this.#watched.get(spec.path);
      if (existing !== undefined && reason === 'start') continue;
      const scope = existing?.scope ?? watchScope(this.#options.root, spec);
      const cache = existing?.cache ?? (await loadStatCache(this.#state.cacheFile(`watch:${spec.path}`), scope.root)).cache;
      const stored = existing?.baseline ?? this.#storedBaselines?.get(spec.path);
      const scan = await this.#scanScope(scope, cache, false);
      let baseline: WatchBaseline;
      if (stored !== undefined && sameGlobs(spec, stored) && reason === 'start') {
        baseline = stored;
      } else {
        const keep = stored !== undefined && sameGlobs(spec, stored) ? stored.entries.filter((entry) => drifted.has(scopeHostPath(scope, entry.path))) : [];
        const keepPaths = new Set([...drifted].map((path) => scopeRelative(scope, path)).filter((path): path is string => path !== undefined));
        const entries = [...scan.entries.filter((entry) => !keepPaths.has(entry.path)), ...keep].sort(byPath);
        baseline = { include: spec.include, exclude: spec.exclude, takenAt: new Date().toISOString(), entries };
        if (stored === undefined) this.#log.info({ path: spec.path, entries: entries.length }, 'took the baseline of a watch path (not drift)');
        if (scan.rootError === undefined && !scan.entries.some((entry) => entry.path === scope.base)) this.#log.warn({ path: spec.path }, 'watch path does not exist; its appearance will be reported as drift');
        await storeBaselineContent(this.#options.cache, scope.root, entries, this.#log);
        baselinesChanged = true;
      }
      existing?.watcher?.close();
      const state: WatchState = { scope, cache, baseline, snapshot: scan.entries, watcher: undefined };
      state.watcher = await watchScopeChanges(
        scope,
        (paths) => this.#onChange(() => addAll(this.#pendingWatch, spec.path, paths)),
        (path, code) => this.#log.warn({ path, code }, 'cannot watch a directory (out of inotify watches?); the periodic scan still covers it'),
      );
      this.#watched.set(spec.path, state);
    }
    if (baselinesChanged) await this.#saveBaselines();
  }

  async #saveBaselines(): Promise<void> {
    const baselines = new Map([...this.#watched].map(([path, state]) => [path, state.baseline]));
    this.#storedBaselines = baselines;
    await this.#state.writeWatchBaselines(baselines);
  }

  // ---- scanning ----

  #dueFull(): boolean {
    return dueScan(Date.now(), this.#times.lastScanAt, this.#times.lastFullAt, this.#intervals()) === 'full';
  }

  #intervals(): { periodicMs: number; fullMs: number } {
    return this.#options.settings()?.scan ?? DEFAULT_SCAN_INTERVALS;
  }

  /** Scans every scope whole; `full` re-hashes every file. */
  async #scanAll(full: boolean): Promise<ScanStats & { full: boolean }> {
    const started = performance.now();
    const stats = { entries: 0, hashedFiles: 0, elapsedMs: 0, full };
    const release = this.#release;
    if (release !== null) {
      await this.#readPointer(release);
      const scan = await scanTree(release.dir, { cache: release.cache, pool: this.#pool, full, signal: this.#scanAbort.signal });
      release.snapshot = scan.rootError === undefined ? scan.entries : [];
      count(stats, scan);
      await saveStatCache(this.#state.cacheFile(RELEASE_CACHE), release.cache).catch((error: unknown) => this.#log.warn({ err: error }, 'could not save the stat cache'));
    }
    await this.#checkKept();
    for (const state of this.#watched.values()) {
      const scan = await this.#scanScope(state.scope, state.cache, full, undefined, this.#scanAbort.signal);
      state.snapshot = scan.entries;
      count(stats, scan);
    }
    const now = Date.now();
    this.#times = { lastScanAt: now, lastFullAt: full ? now : this.#times.lastFullAt };
    await this.#state.writeScanTimes(this.#times).catch((error: unknown) => this.#log.warn({ err: error }, 'could not remember the scan time'));
    stats.elapsedMs = performance.now() - started;
    return stats;
  }

  /** Checks the kept release trees against their stat records (a stat walk; only changed files are hashed). */
  async #checkKept(): Promise<void> {
    const release = this.#release;
    const verifier = this.#options.verifier;
    if (release === null || verifier === undefined) return;
    this.#kept = await verifier.keptReleaseFindings(release.layout, release.deployTo, release.releaseId, this.#scanAbort.signal);
  }

  async #scanScope(scope: WatchScope, cache: StatCache, full: boolean, paths?: readonly string[], signal?: AbortSignal): Promise<ScanResult> {
    const scan = await scanTree(scope.root, { cache, pool: this.#pool, full, paths: paths ?? [scope.base], include: scope.include, exclude: scope.exclude, ...(signal ? { signal } : {}) });
    await saveStatCache(this.#state.cacheFile(`watch:${scope.spec.path}`), cache).catch((error: unknown) => this.#log.warn({ err: error }, 'could not save the stat cache'));
    return scan.rootError === undefined ? scan : { ...scan, entries: [] };
  }

  /** Reads where `current` points now. */
  async #readPointer(release: ReleaseState): Promise<void> {
    release.pointer = await readlink(release.layout.currentLink).catch(() => null);
  }

  /** Re-scans the given paths of each scope and merges the results into the snapshots. */
  async #rescan(release: ReadonlySet<string>, watched: ReadonlyMap<string, ReadonlySet<string>>): Promise<ScanStats> {
    const started = performance.now();
    if (this.#release !== null) await this.#readPointer(this.#release);
    const stats = { entries: 0, hashedFiles: 0, elapsedMs: 0 };
    const state = this.#release;
    if (state !== null && release.size > 0) {
      const scan = await scanTree(state.dir, { cache: state.cache, pool: this.#pool, paths: [...release], signal: this.#scanAbort.signal });
      if (scan.rootError === undefined) state.snapshot = mergeRescan(state.snapshot, scan.scannedPaths, scan.entries);
      else state.snapshot = [];
      count(stats, scan);
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

  #scanFailed(error: unknown, message: string): void {
    if (error instanceof Error && error.name === 'AbortError') this.#log.debug('drift scan stopped: a deployment started');
    else this.#log.error({ err: error }, message);
  }

  #onChange(record: () => void): void {
    if (this.#paused || !this.#ready) return;
    record();
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    void this.#exclusive(async () => {
      this.#flushQueued = false;
      if (this.#paused) return;
      const release = new Set(this.#pendingRelease);
      const watched = new Map([...this.#pendingWatch].map(([path, paths]) => [path, new Set(paths)]));
      this.#pendingRelease.clear();
      this.#pendingWatch.clear();
      const stats = await this.#rescan(release, watched);
      void this.#publish({ kind: 'watch' }, false, stats, false);
    }).catch((error: unknown) => this.#scanFailed(error, 'targeted drift re-scan failed'));
  }

  async #periodic(): Promise<void> {
    const signal = AbortSignal.any([this.#options.signal, this.#closed.signal]);
    while (!signal.aborted) {
      await sleep(TICK_MS, signal).catch(() => undefined);
      if (signal.aborted || this.#paused || !this.#ready) continue;
      const due = dueScan(Date.now(), this.#times.lastScanAt, this.#times.lastFullAt, this.#intervals());
      if (due === null) continue;
      await this.#exclusive(async () => {
        if (this.#paused) return;
        const stats = await this.#scanAll(due === 'full');
        // Sent even when nothing changed: the server's keep-alive for this host's drift state.
        void this.#publish({ kind: 'scan' }, stats.full, stats, true);
      }).catch((error: unknown) => this.#scanFailed(error, 'periodic drift scan failed'));
    }
  }

  // ---- findings and reports ----

  /** Every finding of the current snapshots against the baselines. */
  #computeFindings(): { findings: DriftFinding[]; truncated: boolean; uploads: PendingUpload[] } {
    const groups: DriftFinding[][] = [];
    const uploads: PendingUpload[] = [];
    const release = this.#release;
    if (release !== null && release.pointer !== currentTarget(release.releaseId)) {
      // `current` re-pointed (or removed) by hand: the host does not run the release Lockstep activated.
      const path = posix.join(release.deployTo, 'current');
      groups.push([
        {
          scope: 'release',
          path,
          kinds: ['target'],
          expected: { type: 'symlink', target: currentTarget(release.releaseId) },
          actual: release.pointer === null ? null : { type: 'symlink', target: release.pointer.slice(0, 4096) },
        },
      ]);
    }
    if (release !== null && release.manifest !== null) {
      const actual = new Map(release.snapshot.map((entry) => [entry.path, entry]));
      const manifest = release.manifest;
      const findings = groupFindings({
        scope: 'release',
        findings: diffAgainstManifest(manifest.values(), release.snapshot),
        expected: (path) => manifest.get(path),
        actual: (path) => actual.get(path),
        hostPath: (path) => releaseHostPath(release.deployTo, path),
      });
      groups.push(findings);
      const prefix = `${release.deployTo === '/' ? '' : release.deployTo}/current/`;
      for (const finding of findings) {
        const sha256 = finding.actual?.sha256;
        if (sha256 === undefined || finding.actual?.type !== 'file' || !(finding.kinds.includes('added') || finding.kinds.includes('content'))) continue;
        uploads.push({ sha256, size: finding.actual.size ?? 0, file: join(release.dir, finding.path.slice(prefix.length)) });
      }
    }
    if (release !== null) groups.push(this.#kept);
    for (const state of this.#watched.values()) {
      const actual = new Map(state.snapshot.map((entry) => [entry.path, entry]));
      const expected = new Map(state.baseline.entries.map((entry) => [entry.path, entry]));
      groups.push(
        groupFindings({
          scope: 'watch',
          findings: diffSnapshot(state.baseline.entries, state.snapshot),
          expected: (path) => expected.get(path),
          actual: (path) => actual.get(path),
          hostPath: (path) => scopeHostPath(state.scope, path),
        }).filter((finding) => this.#ownPending.size === 0 || !this.#heldBack(finding)),
      );
    }
    return { ...cappedFindings(groups), uploads };
  }

  /** Computes the findings and queues a report when they changed (or always, with `force`); resolves when it was delivered. */
  #publish(cause: DriftReport['cause'], full: boolean, stats: ScanStats, force: boolean): Promise<void> {
    // What a scan saw while a deployment was under way is not drift (and the baseline is re-taken after it).
    if (this.#paused) return Promise.resolve();
    const { findings, truncated, uploads } = this.#computeFindings();
    this.#findings = findings;
    const key = JSON.stringify([findings, truncated]);
    if (!force && key === this.#lastSent) return Promise.resolve();
    if (key !== this.#lastSent && findings.length > 0) {
      this.#log.warn({ drifted: findings.length, paths: findings.slice(0, 5).map((finding) => finding.path) }, 'drift found');
      void this.#dropEditedCacheCopies(findings);
    }
    this.#lastSent = key;
    return this.#reporter.send(
      {
        host: this.#options.host,
        releaseId: this.#release?.releaseId ?? null,
        full,
        cause,
        findings,
        truncated,
        stats: { entries: stats.entries, hashedFiles: stats.hashedFiles, elapsedMs: Math.round(stats.elapsedMs * 1000) / 1000 },
      },
      uploads,
    );
  }

  /** Keeps content edited in place in a release file out of the blob cache it is hard-linked with (see dropEditedCacheCopies). */
  async #dropEditedCacheCopies(findings: readonly DriftFinding[]): Promise<void> {
    const release = this.#release;
    if (release === null) return;
    for (const finding of findings) {
      const hash = finding.expected?.sha256;
      if (finding.scope !== 'release' || !finding.kinds.includes('content') || hash === undefined) continue;
      const relative = releaseRelative(release.deployTo, finding.path);
      if (relative === undefined) continue;
      const dropped = await dropEditedCacheCopies(this.#options.cache, hash, finding.expected?.mode, join(release.dir, relative)).catch((error: unknown) => {
        this.#log.warn({ err: error, path: finding.path }, 'could not check the blob cache for an edited release file');
        return 0;
      });
      if (dropped > 0) this.#log.warn({ path: finding.path, blob: hash }, 'the release file was edited in place, and with it the cached copy it is linked to: dropped from the cache');
    }
  }

  // ---- commands ----

  /** Open findings selected by command paths (a path also selects the findings under it); the rest are notes. */
  #select(paths: readonly string[] | null): { selected: DriftFinding[]; notes: string[] } {
    if (paths === null) return { selected: [...this.#findings], notes: [] };
    const selected = new Map<string, DriftFinding>();
    const notes: string[] = [];
    for (const path of paths) {
      const normalized = posix.normalize(path);
      const matching = this.#findings.filter((finding) => finding.path === normalized || finding.path.startsWith(`${normalized}/`));
      if (matching.length === 0) notes.push(`${path} has no open drift (ignored)`);
      for (const finding of matching) selected.set(`${finding.scope}:${finding.path}`, finding);
    }
    return { selected: [...selected.values()], notes };
  }

  async #revert(paths: readonly string[] | null): Promise<{ outcome: CommandOutcome; stats: ScanStats }> {
    const { selected, notes } = this.#select(paths);
    // Parents before children: a directory must exist again before its files are restored into it.
    selected.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const context: RestoreContext = { cache: this.#options.cache, signal: this.#options.signal, ...(this.#options.fetchBlob === undefined ? {} : { fetchBlob: this.#options.fetchBlob }) };
    const failures: string[] = [];
    const rescanRelease = new Set<string>();
    const rescanWatched = new Map<string, Set<string>>();
    // Release paths repaired through the verifier, per release tree: with every tree and cache copy sharing an edited inode.
    const repairs = new Map<string, { paths: string[]; findings: DriftFinding[] }>();
    const verifier = this.#options.verifier;
    for (const finding of selected) {
      try {
        const kept = this.#release === null ? undefined : keptRelative(this.#release.deployTo, finding.path);
        const current = this.#release === null ? undefined : releaseRelative(this.#release.deployTo, finding.path);
        if (finding.scope === 'release' && this.#release !== null && finding.path === posix.join(this.#release.deployTo, 'current')) {
          await verifier?.verifyTree(this.#release.layout, this.#release.releaseId, this.#options.signal);
          await pointCurrent(this.#release.layout, this.#release.releaseId);
        } else if (finding.scope === 'release' && verifier !== undefined && this.#release !== null && (kept !== undefined || current !== undefined)) {
          const [releaseId, relative] = kept !== undefined ? [kept.releaseId, kept.relative] : [this.#release.releaseId, current as string];
          const repair = repairs.get(releaseId) ?? { paths: [], findings: [] };
          repair.paths.push(relative);
          repair.findings.push(finding);
          repairs.set(releaseId, repair);
          if (kept === undefined) rescanRelease.add(relative);
        } else if (finding.scope === 'release') {
          const release = this.#release;
          const relative = release === null ? undefined : releaseRelative(release.deployTo, finding.path);
          if (release === null || release.manifest === null || relative === undefined) throw new Error('it is not part of the active release any more');
          await restoreReleaseEntry(join(release.dir, relative), release.manifest.get(relative) ?? null, context);
          rescanRelease.add(relative);
        } else {
          const located = this.#locateWatched(finding.path);
          if (located === undefined) throw new Error('it is not under a watch path any more');
          const { state, relative } = located;
          await restoreWatchEntry(join(state.scope.root, relative), state.baseline.entries.find((entry) => entry.path === relative) ?? null, context);
          addAll(rescanWatched, state.scope.spec.path, [relative]);
        }
      } catch (error) {
        failures.push(`${finding.path}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    for (const [releaseId, repair] of repairs) {
      const release = this.#release;
      if (verifier === undefined || release === null) break;
      await verifier.repairPaths(release.layout, releaseId, repair.paths, this.#options.signal).catch((error: unknown) => {
        for (const finding of repair.findings) failures.push(`${finding.path}: ${error instanceof Error ? error.message : String(error)}`);
      });
    }
    if (repairs.size > 0) await this.#checkKept();
    const stats = await this.#rescan(rescanRelease, rescanWatched);
    const stillDrifted = this.#afterRescan(selected);
    for (const path of stillDrifted) if (!failures.some((failure) => failure.startsWith(`${path}: `))) failures.push(`${path}: still differs after the revert`);
    const restored = selected.length - failures.length;
    this.#log.info({ restored, failures }, 'drift reverted');
    const detail = [`restored ${restored} of ${selected.length} drifted ${selected.length === 1 ? 'path' : 'paths'}`, ...notes].join('; ').slice(0, 4000);
    return failures.length === 0
      ? { outcome: { ok: true, detail }, stats }
      : { outcome: { ok: false, error: `could not restore ${failures.join('; ')}`.slice(0, 4000), detail }, stats };
  }

  async #accept(paths: readonly string[]): Promise<{ outcome: CommandOutcome; stats: ScanStats }> {
    const release = this.#release;
    const releaseFile = paths.find((path) => this.#findings.some((finding) => finding.scope === 'release' && finding.path === posix.normalize(path)) || (release !== null && releaseRelative(release.deployTo, path) !== undefined));
    if (releaseFile !== undefined) {
      const error = `${releaseFile} is a release file: release files cannot be accepted; adopt it instead with \`lockstep drift adopt ${this.#options.host} --version V --reason TEXT\``;
      return { outcome: { ok: false, error }, stats: { entries: 0, hashedFiles: 0, elapsedMs: 0 } };
    }
    const { selected, notes } = this.#select(paths);
    const byScope = new Map<string, Set<string>>();
    for (const finding of selected) {
      const located = this.#locateWatched(finding.path);
      if (located !== undefined) addAll(byScope, located.state.scope.spec.path, [located.relative]);
    }
    const stats = await this.#takeIntoBaseline(byScope);
    this.#log.info({ accepted: selected.map((finding) => finding.path) }, 'drift accepted into the baseline');
    const detail = [`accepted ${selected.length} ${selected.length === 1 ? 'path' : 'paths'} into the baseline`, ...notes].join('; ').slice(0, 4000);
    return { outcome: { ok: true, detail }, stats };
  }

  /**
   * Runs `change`, an edit of host files that Lockstep makes itself (the fire-call sshd trust), while no scan
   * runs, and then makes what it wrote the baseline of those watched paths: Lockstep's own changes are never
   * drift, while a later hand edit of the same files is. Paths outside every watch path are not affected.
   */
  async ownChange<T>(hostPaths: readonly string[], change: () => Promise<T>): Promise<T> {
    // The change itself does not wait for a running scan (a revocation must reach sshd at once); what a scan sees
    // of these paths meanwhile is held back until they are in the baseline.
    const paths = hostPaths.map((path) => posix.normalize(path));
    for (const path of paths) this.#ownPending.set(path, (this.#ownPending.get(path) ?? 0) + 1);
    try {
      const result = await change();
      await this.#exclusive(async () => {
        if (!this.#ready) return; // the first baseline, still to come, takes them as they are
        const byScope = new Map<string, Set<string>>();
        for (const path of paths) {
          const located = this.#locateWatched(path);
          if (located === undefined) continue;
          const { state, relative } = located;
          // A directory Lockstep had to create for them (not in the baseline) is its own change too, with what is in it.
          const parts = relative.split('/');
          const added = parts.slice(0, -1).map((_, index) => parts.slice(0, index + 1).join('/')).find((ancestor) => !state.baseline.entries.some((entry) => entry.path === ancestor));
          addAll(byScope, state.scope.spec.path, [added ?? relative]);
        }
        if (byScope.size > 0) await this.#takeIntoBaseline(byScope);
      });
      return result;
    } finally {
      for (const path of paths) {
        const count = (this.#ownPending.get(path) ?? 1) - 1;
        if (count > 0) this.#ownPending.set(path, count);
        else this.#ownPending.delete(path);
      }
    }
  }

  /** Whether a watched finding is (or is a directory above) a path Lockstep is changing right now. */
  #heldBack(finding: DriftFinding): boolean {
    for (const path of this.#ownPending.keys()) if (path === finding.path || path.startsWith(`${finding.path}/`)) return true;
    return false;
  }

  /** Re-scans these watched paths and makes what is on disk now their baseline (content copied into the cache). */
  async #takeIntoBaseline(byScope: ReadonlyMap<string, ReadonlySet<string>>): Promise<ScanStats> {
    // Re-scan first, so that the baseline is exactly what is on disk.
    const stats = await this.#rescan(new Set(), byScope);
    for (const [path, relatives] of byScope) {
      const state = this.#watched.get(path);
      if (state === undefined) continue;
      const covered = (entry: SnapshotEntry): boolean => [...relatives].some((relative) => entry.path === relative || entry.path.startsWith(`${relative}/`));
      const accepted = state.snapshot.filter(covered);
      const entries = [...state.baseline.entries.filter((entry) => !covered(entry)), ...accepted].sort(byPath);
      state.baseline = { ...state.baseline, entries, takenAt: new Date().toISOString() };
      await storeBaselineContent(this.#options.cache, state.scope.root, accepted, this.#log);
    }
    if (byScope.size > 0) await this.#saveBaselines();
    return stats;
  }

  /** The paths among `selected` that still drift after the re-scan. */
  #afterRescan(selected: readonly DriftFinding[]): string[] {
    const { findings } = this.#computeFindings();
    const now = new Set(findings.map((finding) => `${finding.scope}:${finding.path}`));
    return selected.filter((finding) => now.has(`${finding.scope}:${finding.path}`)).map((finding) => finding.path);
  }

  #locateWatched(path: string): { state: WatchState; relative: string } | undefined {
    for (const state of this.#watched.values()) {
      const relative = scopeRelative(state.scope, path);
      if (relative !== undefined) return { state, relative };
    }
    return undefined;
  }

  /** Runs `work` after everything queued before it; one at a time. */
  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#chain.catch(() => undefined).then(work);
    this.#chain = run;
    return run;
  }
}

/** `${deployTo}/current/${path}`: how the server names a release file on this host. */
function releaseHostPath(deployTo: string, path: string): string {
  return posix.join(deployTo, 'current', path);
}

/** The release-relative path of a host path under DEPLOY_TO/current/, else undefined. */
function releaseRelative(deployTo: string, path: string): string | undefined {
  const prefix = `${posix.join(deployTo, 'current')}/`;
  const normalized = posix.normalize(path);
  return normalized.startsWith(prefix) && normalized.length > prefix.length ? normalized.slice(prefix.length) : undefined;
}

/** The release id and release-relative path of a host path under DEPLOY_TO/releases/<id>/ (a kept release), else undefined. */
function keptRelative(deployTo: string, path: string): { releaseId: string; relative: string } | undefined {
  const prefix = `${posix.join(deployTo, 'releases')}/`;
  const normalized = posix.normalize(path);
  if (!normalized.startsWith(prefix)) return undefined;
  const [releaseId, ...rest] = normalized.slice(prefix.length).split('/');
  return releaseId !== undefined && isReleaseId(releaseId) && rest.length > 0 ? { releaseId, relative: rest.join('/') } : undefined;
}

function sameGlobs(spec: { include: readonly string[]; exclude: readonly string[] }, baseline: { include: readonly string[]; exclude: readonly string[] }): boolean {
  return JSON.stringify([spec.include, spec.exclude]) === JSON.stringify([baseline.include, baseline.exclude]);
}

function addAll(target: Map<string, Set<string>>, key: string, paths: readonly string[]): void {
  let set = target.get(key);
  if (set === undefined) {
    set = new Set();
    target.set(key, set);
  }
  for (const path of paths) set.add(path);
}

function count(stats: { entries: number; hashedFiles: number }, scan: ScanResult): void {
  stats.entries += scan.entries.length;
  stats.hashedFiles += scan.counters.hashedFiles;
}

function byPath(a: SnapshotEntry, b: SnapshotEntry): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

async function isDirectory(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isDirectory() === true;
}
