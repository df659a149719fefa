/**
 * The agent's drift monitor: compares the host with its baseline and tells
 * the server. The baseline is the manifest of the release Lockstep activated
 * (for the tree `current` should point at) plus a snapshot of every `watch:`
 * path. Changes are seen three ways: a watcher (inotify) triggers a targeted
 * re-scan within a fraction of a second, a periodic scan trusting the stat
 * cache covers what a watcher misses, and a full re-hash on a longer schedule
 * covers what a stat cache misses.
 *
 * Nothing here re-takes a baseline from disk. The release baseline is set at
 * the moment Lockstep switches `current` (see `activation`); the watched
 * baselines change only through WatchBaselines (first baseline of a new watch
 * path, accept, Lockstep's own writes). Watch paths stay under watch while a
 * task runs; only reports pause while `current` is switched, until the new
 * release was scanned. Every scan, command and baseline change runs one at a
 * time; the findings are pure functions of baselines and snapshots
 * (drift-findings.ts).
 */
import { availableParallelism } from 'node:os';
import { join, posix } from 'node:path';
import type { Logger } from 'pino';
import type { AgentCommand, CommandResult, DriftFinding, DriftReport, HostSettings } from '../../api/schemas.js';
import type { BlobCache } from '../../content/blob-cache.js';
import { DEFAULT_SCAN_INTERVALS, diffAgainstManifest, dueScan, mergeRescan, type SnapshotEntry } from '../../core/drift.js';
import type { ManifestEntry } from '../../core/manifest.js';
import { scanTree, type ScanResult } from '../../fim/scanner.js';
import { loadStatCache, saveStatCache, type StatCache } from '../../fim/stat-cache.js';
import type { TreeWatcher } from '../../fim/tree-watcher.js';
import { FimWorkerPool } from '../../fim/worker-pool.js';
import { watchTree } from '../../fim/tree-watcher.js';
import { watch, type FSWatcher } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import { ENV_FILE, pointCurrent, readCurrentReleaseId } from '../activator.js';
import { deployLayout, isReleaseId, releaseDir, type DeployLayout } from '../deploy-layout.js';
import { cappedFindings, entryDigest, groupFindings, releaseFindings, releaseHostPath, watchFindings } from './drift-findings.js';
import { DriftReporter, type DriftSink, type PendingUpload } from './drift-reporter.js';
import { dropEditedCacheCopies, restoreReleaseEntry, restoreWatchEntry, type RestoreContext } from './drift-revert.js';
import { DriftStateDir, type ScanTimes, type WatchBaseline } from './drift-state.js';
import type { ManifestStore } from '../manifest-store.js';
import type { ReleaseVerifier } from '../release-verifier.js';
import { loadReleaseManifest, type ManifestFetcher } from '../release-baseline.js';
import { sleep } from '../retry.js';
import { sameGlobs, WatchBaselines } from './watch-baselines.js';
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

/** The release Lockstep last activated: the release half of the baseline. */
interface ActiveRelease {
  /** DEPLOY_TO as in the config: host paths are `${deployTo}/current/${path}`. */
  readonly deployTo: string;
  readonly releaseId: string;
}

/** How the monitor scans the active release. */
interface ReleaseState extends ActiveRelease {
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

interface WatchState {
  readonly scope: WatchScope;
  readonly cache: StatCache;
  /** The baseline as WatchBaselines last returned it. */
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
  readonly #baselines: WatchBaselines;
  #chain: Promise<unknown> = Promise.resolve();
  #ready = false;
  readonly #firstBaseline: { readonly promise: Promise<void>; readonly resolve: () => void };
  /** Between pause() and resume(): no periodic scans (they would compete with the task), settings wait. */
  #taskRunning = false;
  #settingsDue = false;
  /** The release Lockstep activated (the release baseline); set at the moment of the switch. */
  #activated: ActiveRelease | null = null;
  #activatedLoaded = false;
  /** The writes of activated.json, one after the other. */
  #rememberActivated: Promise<void> = Promise.resolve();
  /** How the active release is scanned; rebuilt (see #syncRelease) when it is not the activated one. */
  #release: ReleaseState | null = null;
  /** Switches of `current` under way: no report goes out while the host is between two releases. */
  #switching = 0;
  readonly #watched = new Map<string, WatchState>();
  #times: ScanTimes = { lastScanAt: null, lastFullAt: null };
  #timesLoaded = false;
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
    this.#baselines = new WatchBaselines(this.#state, options.cache, this.#log);
    let resolveFirst = (): void => undefined;
    const promise = new Promise<void>((resolve) => (resolveFirst = resolve));
    this.#firstBaseline = { promise, resolve: resolveFirst };
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
      if (this.#options.settings() === null) return;
      // During a task the new settings wait for resume() (deploy_to may be changing with the task).
      if (this.#taskRunning) {
        this.#settingsDue = true;
        return;
      }
      await this.#setUp();
      const stats = await this.#scanAll(this.#dueFull());
      this.#becomeReady();
      void this.#publish({ kind: 'scan' }, stats.full, stats, true);
    });
  }

  /** Resolves once the monitor has its first baseline and snapshot (host facts wait for it: no "(absent)" after a restart). */
  baselineReady(): Promise<void> {
    return this.#firstBaseline.promise;
  }

  /**
   * A task starts: periodic scans stop until resume(), and a scan under way is aborted (a full re-hash of a large
   * tree must not hold up a rollback); resolves when no scan is running any more. Watchers keep running: an edit
   * during the task is drift like any other.
   */
  async pause(): Promise<void> {
    this.#taskRunning = true;
    this.#scanAbort.abort(new DOMException('a deployment started', 'AbortError'));
    this.#scanAbort = new AbortController();
    this.#cancelResume();
    await this.#chain.catch(() => undefined);
  }

  /**
   * Runs `switchRelease` (lockstep.env written, `current` re-pointed to `releaseId`) as Lockstep's own change:
   * the release baseline becomes that release's manifest the moment `current` switched, and what the switch
   * wrote under watch paths is recorded as it is written. No report goes out while `current` is being switched;
   * the new tree is scanned (against its manifest, never taken as a baseline) at the next resume() or command.
   */
  async activation<T>(deployTo: string, releaseId: string, switchRelease: () => Promise<T>): Promise<T> {
    this.#switching++;
    try {
      const result = await this.ownChange([posix.join(deployTo, 'shared', ENV_FILE)], switchRelease);
      this.#setActivated({ deployTo, releaseId });
      // Not awaited (a rollback must not wait for an fsync), but in order: the last switch is what is remembered.
      // A task cut short before it is written is handed out again and switches again.
      this.#rememberActivated = this.#rememberActivated.then(() =>
        this.#state
          .open()
          .then(() => this.#state.writeActivated({ deployTo, releaseId }))
          .catch((error: unknown) => this.#log.warn({ err: error }, 'could not remember the active release')),
      );
      return result;
    } finally {
      this.#switching--;
    }
  }

  /**
   * After a task (any outcome): scans the host and reports with the deployment as cause, `delayMs` later. The
   * delay lets the rollout's own reports and the other hosts' switches go first (measured: re-scanning and
   * reporting at once made a 20-host rollback's server window twice as long); a task arriving meanwhile cancels
   * it, and its own resume() reports instead. The delay postpones the report only: edits made meanwhile are
   * compared with the baselines the task left, so they are drift.
   */
  resume(deploymentId: number, delayMs = 0): Promise<void> {
    this.#cancelResume();
    if (delayMs <= 0) return this.#resumeNow(deploymentId);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pendingResume = undefined;
        this.#resumeNow(deploymentId).then(resolve, (error: unknown) => {
          this.#scanFailed(error, 'could not scan for drift after a task');
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
      this.#taskRunning = false;
      if (this.#options.settings() === null) return;
      if (this.#settingsDue || !this.#ready) {
        this.#settingsDue = false;
        await this.#setUp();
      }
      const stats = await this.#scanAll(false);
      this.#becomeReady();
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
    const baseline = this.#baselines.contentHashes();
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
      // A command right after a switch (before the delayed resume) first scans the new release.
      if (!this.#releaseSettled()) await this.#scanAll(false);
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
    this.#cancelResume();
    this.#closed.abort();
    await this.#chain.catch(() => undefined);
    await this.#rememberActivated;
    this.#closeRelease();
    for (const state of this.#watched.values()) state.watcher?.close();
    await this.#pool.close();
    await this.#loop;
  }

  // ---- baselines ----

  #becomeReady(): void {
    this.#ready = true;
    this.#firstBaseline.resolve();
  }

  /** Brings the scopes in line with settings and disk: the activated release, and a baseline for every new watch path. */
  async #setUp(): Promise<void> {
    await this.#state.open();
    await this.#baselines.load();
    if (!this.#timesLoaded) {
      this.#times = await this.#state.readScanTimes();
      this.#timesLoaded = true;
    }
    await this.#setUpActivated();
    await this.#syncRelease();
    await this.#setUpWatched();
  }

  /**
   * The release Lockstep made current, remembered from its last switch, so that `current` re-pointed by hand
   * (even while the agent was down) is drift. Only when nothing is remembered for this DEPLOY_TO (the first
   * start) is what `current` points at taken.
   */
  async #setUpActivated(): Promise<void> {
    const deployTo = this.#options.deployTo();
    if (this.#activatedLoaded && this.#activated?.deployTo === deployTo) return;
    this.#activatedLoaded = true;
    if (deployTo === null) return this.#setActivated(null);
    const layout = deployLayout(this.#options.root, deployTo);
    const remembered = await this.#state.readActivated();
    if (remembered !== undefined && remembered.deployTo === deployTo && isReleaseId(remembered.releaseId) && (await isDirectory(releaseDir(layout, remembered.releaseId)))) {
      return this.#setActivated(remembered);
    }
    const releaseId = await readCurrentReleaseId(layout).catch(() => null);
    if (releaseId === null) return this.#setActivated(null);
    this.#setActivated({ deployTo, releaseId });
    await this.#state.writeActivated({ deployTo, releaseId }).catch((error: unknown) => this.#log.warn({ err: error }, 'could not remember the active release'));
  }

  /** Makes `activated` the release baseline; the scan state of another release is dropped (rebuilt by #syncRelease). */
  #setActivated(activated: ActiveRelease | null): void {
    this.#activated = activated;
    const release = this.#release;
    if (release !== null && (activated === null || release.releaseId !== activated.releaseId || release.deployTo !== activated.deployTo)) this.#closeRelease();
  }

  #closeRelease(): void {
    this.#release?.watcher?.close();
    this.#release?.pointerWatcher?.close();
    this.#release = null;
    this.#pendingRelease.clear();
  }

  /** Whether reports may go out: no switch under way, and the activated release was scanned since it became active. */
  #releaseSettled(): boolean {
    if (this.#switching > 0) return false;
    if (this.#activated === null) return true;
    return this.#release !== null && this.#release.snapshot !== null;
  }

  /** Builds the scan state of the activated release (its manifest, watchers) when it has none; its tree is scanned by the caller. */
  async #syncRelease(): Promise<void> {
    const activated = this.#activated;
    if (activated === null || this.#release !== null) return;
    const { deployTo, releaseId } = activated;
    const layout = deployLayout(this.#options.root, deployTo);
    const entries = await loadReleaseManifest(releaseId, this.#options.manifests, this.#options.fetchManifest, this.#log, this.#options.signal);
    const dir = releaseDir(layout, releaseId);
    const loaded = await loadStatCache(this.#state.cacheFile(RELEASE_CACHE), dir);
    // Another switch may have happened while the manifest loaded: then that one is built next time.
    if (this.#activated !== activated) return;
    const state: ReleaseState = {
      releaseId,
      deployTo,
      layout,
      pointer: null,
      pointerWatcher: undefined,
      dir,
      manifest: entries === undefined ? null : new Map(entries.map((entry) => [entry.path, entry])),
      cache: loaded.cache,
      snapshot: null,
      watcher: undefined,
    };
    this.#release = state;
    // Watchers first, then the scan (by the caller): an edit made in between is seen by one or the other.
    state.watcher = watchTree(dir, {
      onChange: (paths) => this.#onChange(() => paths.forEach((path) => this.#pendingRelease.add(path))),
      onWatchError: (path, code) => this.#log.warn({ path: releaseHostPath(deployTo, path), code }, 'cannot watch a release directory; the periodic scan still covers it'),
    });
    await state.watcher.ready;
    if (this.#release !== state) return state.watcher.close(); // switched again meanwhile
    try {
      state.pointerWatcher = watch(layout.deployTo, { persistent: false }, (_event, name) => {
        if (name === 'current') this.#onChange(() => undefined);
      });
      state.pointerWatcher.on('error', () => undefined);
    } catch (error) {
      this.#log.warn({ err: error, path: deployTo }, 'cannot watch the deploy directory; the periodic scan still checks current');
    }
  }

  /** Watches every configured watch path: a stored baseline is used as it is; a path without one gets its first baseline. */
  async #setUpWatched(): Promise<void> {
    const specs = this.#options.settings()?.watch ?? [];
    const wanted = new Map(specs.map((spec) => [spec.path, spec]));
    for (const [path, state] of this.#watched) {
      const spec = wanted.get(path);
      if (spec !== undefined && sameGlobs(spec, state.scope.spec)) continue;
      state.watcher?.close();
      this.#watched.delete(path);
    }
    for (const spec of specs) {
      if (this.#watched.has(spec.path)) continue;
      const scope = watchScope(this.#options.root, spec);
      const cache = (await loadStatCache(this.#state.cacheFile(`watch:${spec.path}`), scope.root)).cache;
      const watcher = await watchScopeChanges(
        scope,
        (paths) => this.#onChange(() => addAll(this.#pendingWatch, spec.path, paths)),
        (path, code) => this.#log.warn({ path, code }, 'cannot watch a directory (out of inotify watches?); the periodic scan still covers it'),
      );
      const scan = await this.#scanScope(scope, cache, false);
      const stored = this.#baselines.get(spec);
      const baseline = stored ?? (await this.#baselines.takeFirst(spec, scope.root, scan.entries));
      if (stored === undefined && scan.rootError === undefined && !scan.entries.some((entry) => entry.path === scope.base)) {
        this.#log.warn({ path: spec.path }, 'watch path does not exist; its appearance will be reported as drift');
      }
      this.#watched.set(spec.path, { scope, cache, baseline, snapshot: scan.entries, watcher });
    }
    await this.#baselines.retain(new Set(wanted.keys()));
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
    await this.#syncRelease();
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

  /** Scans a watch scope (only `paths`, if given); without a stat cache every file is hashed. */
  async #scanScope(scope: WatchScope, cache: StatCache | undefined, full: boolean, paths?: readonly string[], signal?: AbortSignal): Promise<ScanResult> {
    const scan = await scanTree(scope.root, { ...(cache ? { cache } : {}), pool: this.#pool, full, paths: paths ?? [scope.base], include: scope.include, exclude: scope.exclude, ...(signal ? { signal } : {}) });
    if (cache) await saveStatCache(this.#state.cacheFile(`watch:${scope.spec.path}`), cache).catch((error: unknown) => this.#log.warn({ err: error }, 'could not save the stat cache'));
    return scan.rootError === undefined ? scan : { ...scan, entries: [] };
  }

  /** Reads where `current` points now. */
  async #readPointer(release: ReleaseState): Promise<void> {
    release.pointer = await readlink(release.layout.currentLink).catch(() => null);
  }

  /** Re-scans the given paths of each scope and merges the results into the snapshots. */
  async #rescan(release: ReadonlySet<string>, watched: ReadonlyMap<string, ReadonlySet<string>>): Promise<ScanStats> {
    const started = performance.now();
    const stats = { entries: 0, hashedFiles: 0, elapsedMs: 0 };
    // A release not scanned since it became active is scanned whole later (resume, command); nothing to merge into.
    const state = this.#release;
    if (state !== null && state.snapshot !== null) {
      await this.#readPointer(state);
      if (release.size > 0) {
        const scan = await scanTree(state.dir, { cache: state.cache, pool: this.#pool, paths: [...release], signal: this.#scanAbort.signal });
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

  #scanFailed(error: unknown, message: string): void {
    if (error instanceof Error && error.name === 'AbortError') this.#log.debug('drift scan stopped: a deployment started');
    else this.#log.error({ err: error }, message);
  }

  #onChange(record: () => void): void {
    // Before the first baseline the first scan covers everything.
    if (!this.#ready) return;
    record();
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    void this.#exclusive(async () => {
      this.#flushQueued = false;
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
      if (signal.aborted || this.#taskRunning || !this.#ready) continue;
      const due = dueScan(Date.now(), this.#times.lastScanAt, this.#times.lastFullAt, this.#intervals());
      if (due === null) continue;
      await this.#exclusive(async () => {
        if (this.#taskRunning) return;
        const stats = await this.#scanAll(due === 'full');
        // Sent even when nothing changed: the server's keep-alive for this host's drift state.
        void this.#publish({ kind: 'scan' }, stats.full, stats, true);
      }).catch((error: unknown) => this.#scanFailed(error, 'periodic drift scan failed'));
    }
  }

  // ---- findings and reports ----

  /** Every finding of the current snapshots against the baselines (see drift-findings.ts). */
  #computeFindings(): { findings: DriftFinding[]; truncated: boolean; uploads: PendingUpload[] } {
    const groups: DriftFinding[][] = [];
    let uploads: PendingUpload[] = [];
    const release = this.#release;
    if (release !== null && release.snapshot !== null) {
      const found = releaseFindings({ ...release, snapshot: release.snapshot });
      groups.push(found.findings);
      uploads = found.uploads;
    }
    const deployTo = this.#activated?.deployTo ?? this.#options.deployTo();
    const heldBack = this.#ownPending.size === 0 ? undefined : (path: string) => this.#heldBack(path);
    if (release !== null) groups.push(this.#kept);
    for (const state of this.#watched.values()) {
      groups.push(watchFindings({ baseline: state.baseline.entries, snapshot: state.snapshot, hostPath: (path) => scopeHostPath(state.scope, path) }, deployTo, heldBack));
    }
    return { ...cappedFindings(groups), uploads };
  }

  /** Computes the findings and queues a report when they changed (or always, with `force`); resolves when it was delivered. */
  #publish(cause: DriftReport['cause'], full: boolean, stats: ScanStats, force: boolean): Promise<void> {
    // While `current` is switched, or the new release was not scanned yet, the host is between two releases:
    // a report now would close and re-open items. The scan after the switch reports (resume, command).
    if (this.#closed.signal.aborted || !this.#releaseSettled()) return Promise.resolve();
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
          // Back to the release Lockstep activated, proven to be its manifest, with one rename (a revert is Lockstep's own change).
          await verifier?.verifyTree(this.#release.layout, this.#release.releaseId, this.#options.signal);
          await pointCurrent(this.#release.layout, this.#release.releaseId);
          await this.#readPointer(this.#release);
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
   * Runs `change`, an edit of host files that Lockstep makes itself (the fire-call sshd trust, lockstep.env at a
   * switch), and records what it wrote as the baseline of those watched paths the moment the change returns:
   * Lockstep's own changes are never drift, while an edit of the same files a moment later is. The written paths
   * are read back at once, not behind a queued scan, and nothing but them. Paths outside every watch path are not
   * affected.
   */
  async ownChange<T>(hostPaths: readonly string[], change: () => Promise<T>): Promise<T> {
    // The change itself does not wait for a running scan (a revocation must reach sshd at once); what a scan sees
    // of these paths meanwhile is held back until they are in the baseline.
    const paths = hostPaths.map((path) => posix.normalize(path));
    for (const path of paths) this.#ownPending.set(path, (this.#ownPending.get(path) ?? 0) + 1);
    try {
      return await change();
    } finally {
      // Also after a failed change: what it wrote before failing is Lockstep's too.
      await this.#recordOwnWrite(paths).catch((error: unknown) => this.#log.error({ err: error, paths }, "could not record Lockstep's own change in the watched baseline; it will show as drift"));
      for (const path of paths) {
        const count = (this.#ownPending.get(path) ?? 1) - 1;
        if (count > 0) this.#ownPending.set(path, count);
        else this.#ownPending.delete(path);
      }
    }
  }

  /**
   * Reads back the watched entries at `paths` (just written by Lockstep) and makes them their baseline. Paths
   * under a watch path that is already watched are read back at once; those under one whose baseline is being
   * taken right now (the first start, a new watch path) are read back after it, so that a baseline scanned just
   * before the write does not make the write drift.
   */
  async #recordOwnWrite(paths: readonly string[]): Promise<void> {
    const watchSpecs = this.#options.settings()?.watch ?? [];
    if (!paths.some((path) => watchSpecs.some((spec) => scopeRelative(watchScope(this.#options.root, spec), path) !== undefined))) return;
    const early = this.#ready ? await this.#readBack(paths, () => true) : new Map<string, ScanResult>();
    await this.#exclusive(async () => {
      if (!this.#ready) return; // the first baseline, still to come, takes them as they are
      const late = await this.#readBack(paths, (watchPath) => !early.has(watchPath));
      for (const [path, scan] of [...early, ...late]) {
        const state = this.#watched.get(path);
        if (state === undefined) continue;
        state.snapshot = mergeRescan(state.snapshot, scan.scannedPaths, scan.entries);
        state.baseline = (await this.#baselines.replace(path, state.scope.root, new Set(scan.scannedPaths), scan.entries, 'own-write')) ?? state.baseline;
      }
    });
  }

  /** Scans what is at `paths` now, per watch path (those `wanted`), hashing every file whatever its stat says. */
  async #readBack(paths: readonly string[], wanted: (watchPath: string) => boolean): Promise<Map<string, ScanResult>> {
    const byScope = new Map<string, Set<string>>();
    for (const path of paths) {
      const located = this.#locateWatched(path);
      if (located === undefined || !wanted(located.state.scope.spec.path)) continue;
      const { state, relative } = located;
      // A directory Lockstep had to create for them (not in the baseline) is its own change too, with what is in it.
      const parts = relative.split('/');
      const added = parts.slice(0, -1).map((_, index) => parts.slice(0, index + 1).join('/')).find((ancestor) => !state.baseline.entries.some((entry) => entry.path === ancestor));
      addAll(byScope, state.scope.spec.path, [added ?? relative]);
    }
    const written = new Map<string, ScanResult>();
    for (const [path, relatives] of byScope) {
      const state = this.#watched.get(path);
      if (state !== undefined) written.set(path, await this.#scanScope(state.scope, undefined, true, [...relatives]));
    }
    return written;
  }

  /** Whether a watched host path is (or is a directory above) a path Lockstep is changing right now. */
  #heldBack(hostPath: string): boolean {
    for (const path of this.#ownPending.keys()) if (path === hostPath || path.startsWith(`${hostPath}/`)) return true;
    return false;
  }

  /** `drift accept`: re-scans these watched paths and makes what is on disk now their baseline. */
  async #takeIntoBaseline(byScope: ReadonlyMap<string, ReadonlySet<string>>): Promise<ScanStats> {
    // Re-scan first, so that the baseline is exactly what is on disk.
    const stats = await this.#rescan(new Set(), byScope);
    for (const [path, relatives] of byScope) {
      const state = this.#watched.get(path);
      if (state === undefined) continue;
      state.baseline = (await this.#baselines.replace(path, state.scope.root, relatives, state.snapshot, 'accept')) ?? state.baseline;
    }
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

async function isDirectory(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isDirectory() === true;
}
