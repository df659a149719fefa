/**
 * When the drift monitor scans. Three ways: a watcher's event queues a
 * targeted re-scan of the changed paths, a periodic loop runs a scan trusting
 * the stat cache when one is due, and a full re-hash on a longer schedule
 * covers what a stat cache misses (the times are remembered across restarts).
 * Every scan, command and baseline change runs one at a time (SerialQueue).
 * Around a task: pause() stops periodic scans and aborts the one under way,
 * resume() scans and reports with the deployment as cause, a little later.
 */
import type { Logger } from 'pino';
import type { AgentCommand, HostSettings } from '../../api/schemas.js';
import type { BlobCache } from '../../content/blob-cache.js';
import { DEFAULT_SCAN_INTERVALS, dueScan } from '../../core/drift.js';
import { sleep } from '../retry.js';
import type { BaselineKeeper } from './baseline-keeper.js';
import type { CommandOutcome, DriftCommandHandler } from './drift-command-handler.js';
import type { DriftScopes, ScanStats } from './drift-scopes.js';
import type { DriftStateDir, ScanTimes } from './drift-state.js';
import type { FindingsPublisher } from './findings-publisher.js';
import type { SerialQueue } from '../../core/serial-queue.js';

/** What the scheduler needs. */
export interface ScanSchedulerOptions {
  readonly state: DriftStateDir;
  readonly queue: SerialQueue;
  readonly scopes: DriftScopes;
  readonly keeper: BaselineKeeper;
  readonly publisher: FindingsPublisher;
  readonly commands: DriftCommandHandler;
  /** Pruned of content nothing uses any more after releases were removed (see cachePruneDue). */
  readonly cache: BlobCache;
  /** The latest host settings (null until the server sent them: nothing is scanned before). */
  readonly settings: () => HostSettings | null;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

/** How often the periodic loop checks whether a scan is due. */
const TICK_MS = 1000;

/** Decides when to scan and runs scans and commands one at a time. */
export class ScanScheduler {
  readonly #options: ScanSchedulerOptions;
  readonly #log: Logger;
  /** Between pause() and resume(): no periodic scans (they would compete with the task), settings wait. */
  #taskRunning = false;
  #settingsDue = false;
  #times: ScanTimes = { lastScanAt: null, lastFullAt: null };
  #timesLoaded = false;
  /** A targeted re-scan is queued and has not taken the pending paths yet. */
  #flushQueued = false;
  #loop: Promise<void> | undefined;
  readonly #closed = new AbortController();
  #pendingResume: { readonly timer: NodeJS.Timeout; readonly skip: () => void } | undefined;
  /** Set when releases were pruned; the cache is pruned at the next resume (and stays due if that is cut short). */
  #cachePruneDue = false;

  constructor(options: ScanSchedulerOptions) {
    this.#options = options;
    this.#log = options.logger;
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
    return this.#options.queue.run(async () => {
      if (this.#options.settings() === null) return;
      // During a task the new settings wait for resume() (deploy_to may be changing with the task).
      if (this.#taskRunning) {
        this.#settingsDue = true;
        return;
      }
      await this.#setUp();
      const stats = await this.#scanAll(this.#dueFull());
      this.#options.keeper.becomeReady();
      void this.#options.publisher.publish({ kind: 'scan' }, stats.full, stats, true);
    }).catch((error: unknown) => {
      // A deployment started and stopped the scan (see pause): the task's resume() applies the settings.
      if (error instanceof Error && error.name === 'AbortError' && !this.#options.signal.aborted) {
        this.#settingsDue = true;
        return;
      }
      throw error;
    });
  }

  /**
   * A task starts: periodic scans stop until resume(), and a scan under way is aborted (a full re-hash of a large
   * tree must not hold up a rollback); resolves when no scan is running any more. Watchers keep running: an edit
   * during the task is drift like any other.
   */
  async pause(): Promise<void> {
    this.#taskRunning = true;
    this.#options.scopes.abortScans();
    this.#cancelResume();
    await this.#options.queue.idle();
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

  /** Old releases were removed from disk: the blob cache may drop their content at the next resume. */
  cachePruneDue(): void {
    this.#cachePruneDue = true;
  }

  /** Carries out a command from the server (between tasks); never throws. */
  async runCommand(command: AgentCommand): Promise<CommandOutcome> {
    const { keeper, publisher, commands } = this.#options;
    let delivered: Promise<void> = Promise.resolve();
    const outcome = await this.#options.queue
      .run(async (): Promise<CommandOutcome> => {
        if (!keeper.ready) return { ok: false, error: 'the agent has no drift baseline yet (it waits for its settings from the server); try again in a moment' };
        // A command right after a switch (before the delayed resume) first scans the new release.
        if (!keeper.settled()) await this.#scanAll(false);
        const cause = { kind: 'command', commandId: command.id } as const;
        switch (command.kind) {
          case 'drift-scan': {
            const stats = await this.#scanAll(command.full);
            delivered = publisher.publish(cause, stats.full, stats, true);
            return { ok: true, detail: `scanned ${stats.entries} entries${command.full ? ' (full re-hash)' : ''}, ${publisher.current().length} drifted` };
          }
          case 'drift-revert': {
            const result = await commands.revert(command.paths);
            delivered = publisher.publish(cause, false, result.stats, true);
            return result.outcome;
          }
          case 'drift-accept': {
            const result = await commands.accept(command.paths);
            delivered = publisher.publish(cause, false, result.stats, true);
            return result.outcome;
          }
          case 'release-capture':
            // The agent runs captures itself (agent.ts); one that reaches the monitor is a wiring mistake.
            return { ok: false, error: 'the drift monitor does not capture releases' };
        }
      })
      .catch((error: unknown): CommandOutcome => {
        this.#log.error({ err: error, command }, 'drift command failed');
        return { ok: false, error: `the agent could not carry out the command: ${error instanceof Error ? error.message : String(error)}`.slice(0, 4000) };
      });
    // The server learns the confirming re-scan before the result, as the protocol says.
    await delivered;
    return outcome;
  }

  /** A watcher saw a change: `record` notes its paths, and one targeted re-scan of every noted path is queued. */
  changed(record: () => void): void {
    // Before the first baseline the first scan covers everything.
    if (!this.#options.keeper.ready) return;
    record();
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    const { scopes, publisher } = this.#options;
    void this.#options.queue
      .run(async () => {
        this.#flushQueued = false;
        const { release, watched } = scopes.takePending();
        const stats = await scopes.rescan(release, watched);
        void publisher.publish({ kind: 'watch' }, false, stats, false);
      })
      .catch((error: unknown) => this.#scanFailed(error, 'targeted drift re-scan failed'));
  }

  /** Resolves when no scan or command is running or queued (tests). */
  idle(): Promise<void> {
    return this.#options.queue.idle(() => this.#flushQueued);
  }

  /** Stops the periodic loop and waits for the work under way. */
  async close(): Promise<void> {
    this.#cancelResume();
    this.#closed.abort();
    await this.#options.queue.idle();
    await this.#loop;
  }

  #cancelResume(): void {
    if (this.#pendingResume === undefined) return;
    clearTimeout(this.#pendingResume.timer);
    this.#pendingResume.skip();
    this.#pendingResume = undefined;
  }

  #resumeNow(deploymentId: number): Promise<void> {
    return this.#options.queue.run(async () => {
      this.#taskRunning = false;
      if (this.#options.settings() === null) return;
      if (this.#settingsDue || !this.#options.keeper.ready) {
        this.#settingsDue = false;
        await this.#setUp();
      }
      const stats = await this.#scanAll(false);
      this.#log.info({ deploymentId, entries: stats.entries, hashedFiles: stats.hashedFiles, hashedBytes: stats.hashedBytes, elapsedMs: Math.round(stats.elapsedMs) }, 'scanned for drift after the task');
      this.#options.keeper.becomeReady();
      // Not awaited: delivery retries while the server is away, and must not hold up the next scan.
      void this.#options.publisher.publish({ kind: 'deployment', deploymentId }, false, stats, true);
      if (this.#cachePruneDue) await this.#pruneCache();
    });
  }

  async #setUp(): Promise<void> {
    await this.#options.keeper.setUp();
    if (!this.#timesLoaded) {
      this.#times = await this.#options.state.readScanTimes();
      this.#timesLoaded = true;
    }
  }

  /** Removes cached content that neither a release on disk nor a watched baseline uses (see BlobCache.prune). */
  async #pruneCache(): Promise<void> {
    const baseline = this.#options.keeper.contentHashes();
    try {
      const { removedFiles, removedBytes } = await this.#options.cache.prune((hash) => baseline.has(hash), this.#options.scopes.scanSignal);
      this.#cachePruneDue = false;
      if (removedFiles > 0) this.#log.info({ removedFiles, removedBytes }, 'removed content no release on disk uses from the blob cache');
    } catch (error) {
      this.#scanFailed(error, 'could not prune the blob cache');
    }
  }

  #dueFull(): boolean {
    return dueScan(Date.now(), this.#times.lastScanAt, this.#times.lastFullAt, this.#intervals()) === 'full';
  }

  #intervals(): { periodicMs: number; fullMs: number } {
    return this.#options.settings()?.scan ?? DEFAULT_SCAN_INTERVALS;
  }

  /** Scans every scope whole (`full`: every file re-hashed) and remembers when. */
  async #scanAll(full: boolean): Promise<ScanStats & { full: boolean }> {
    const stats = await this.#options.scopes.scanAll(full);
    const now = Date.now();
    this.#times = { lastScanAt: now, lastFullAt: full ? now : this.#times.lastFullAt };
    await this.#options.state.writeScanTimes(this.#times).catch((error: unknown) => this.#log.warn({ err: error }, 'could not remember the scan time'));
    return { ...stats, full };
  }

  #scanFailed(error: unknown, message: string): void {
    if (error instanceof Error && error.name === 'AbortError') this.#log.debug('drift scan stopped: a deployment started');
    else this.#log.error({ err: error }, message);
  }

  async #periodic(): Promise<void> {
    const signal = AbortSignal.any([this.#options.signal, this.#closed.signal]);
    while (!signal.aborted) {
      await sleep(TICK_MS, signal).catch(() => undefined); // aborted: the loop condition ends it
      if (signal.aborted || this.#taskRunning || !this.#options.keeper.ready) continue;
      const due = dueScan(Date.now(), this.#times.lastScanAt, this.#times.lastFullAt, this.#intervals());
      if (due === null) continue;
      await this.#options.queue
        .run(async () => {
          if (this.#taskRunning) return;
          const stats = await this.#scanAll(due === 'full');
          // Sent even when nothing changed: the server's keep-alive for this host's drift state.
          void this.#options.publisher.publish({ kind: 'scan' }, stats.full, stats, true);
        })
        .catch((error: unknown) => this.#scanFailed(error, 'periodic drift scan failed'));
    }
  }
}
