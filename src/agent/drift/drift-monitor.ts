/**
 * The agent's drift monitor: compares the host with its baseline and tells
 * the server. This is the face the rest of the agent uses (agent.ts, the task
 * runner through it, fire-call duties, host facts); it only delegates, to
 * parts built by createDriftMonitor (create-drift-monitor.ts):
 * - ScanScheduler: when to scan (watcher events, the periodic loop, the full
 *   re-hash schedule), one at a time, paused around tasks, and commands;
 * - BaselineKeeper: the release baseline set at activation and the watched
 *   baselines (WatchBaselines), changed only by Lockstep's own writes
 *   (ownChange), accept and the first baseline of a new watch path;
 * - DriftScopes: the scanned scopes, their watchers and snapshots;
 * - FindingsPublisher: the pure findings (drift-findings.ts) and the reports;
 * - DriftCommandHandler: revert and accept.
 */
import type { AgentCommand, DriftFinding } from '../../api/schemas.js';
import type { BaselineKeeper } from './baseline-keeper.js';
import type { CommandOutcome } from './drift-command-handler.js';
import type { DriftScopes } from './drift-scopes.js';
import type { FindingsPublisher } from './findings-publisher.js';
import type { PackageWatch } from './package-watch.js';
import type { ScanScheduler } from './scan-scheduler.js';

export type { CommandOutcome } from './drift-command-handler.js';

/** The parts a drift monitor delegates to. */
export interface DriftMonitorParts {
  readonly scheduler: ScanScheduler;
  readonly keeper: BaselineKeeper;
  readonly scopes: DriftScopes;
  readonly publisher: FindingsPublisher;
  readonly packages: PackageWatch;
}

/** Watches one host for drift and reports it. */
export class DriftMonitor {
  readonly #parts: DriftMonitorParts;

  constructor(parts: DriftMonitorParts) {
    this.#parts = parts;
  }

  /** Starts the periodic loop; the first scan runs once settings are known (see ScanScheduler.start). */
  start(): void {
    this.#parts.scheduler.start();
  }

  /** The settings changed: new watch paths get a baseline, then a scan and a report (see ScanScheduler.settingsChanged). */
  settingsChanged(): Promise<void> {
    return this.#parts.scheduler.settingsChanged();
  }

  /** Resolves once the monitor has its first baseline and snapshot (see BaselineKeeper.baselineReady). */
  baselineReady(): Promise<void> {
    return this.#parts.keeper.baselineReady();
  }

  /** A task starts: periodic scans stop and the one under way is aborted (see ScanScheduler.pause). */
  pause(): Promise<void> {
    return this.#parts.scheduler.pause();
  }

  /** Runs the switch of `current` to `releaseId`; the release baseline moves with it (see BaselineKeeper.activation). */
  async activation<T>(deployTo: string, releaseId: string, switchRelease: () => Promise<T>): Promise<T> {
    const result = await this.#parts.keeper.activation(deployTo, releaseId, switchRelease);
    // A deployment is where the package baseline moves: the package set now is what this release runs with.
    await this.#parts.packages.refresh();
    this.#parts.packages.rebaseline(null);
    return result;
  }

  /** After a task: scans and reports with the deployment as cause, `delayMs` later (see ScanScheduler.resume). */
  resume(deploymentId: number, delayMs = 0): Promise<void> {
    return this.#parts.scheduler.resume(deploymentId, delayMs);
  }

  /** Old releases were removed from disk: the blob cache may drop their content at the next resume. */
  cachePruneDue(): void {
    this.#parts.scheduler.cachePruneDue();
  }

  /** The error that fails a host's step when the release dir differs from its manifest, or null (see DriftScopes.verifyRelease). */
  verifyRelease(deployTo: string, releaseId: string): Promise<string | null> {
    return this.#parts.scopes.verifyRelease(deployTo, releaseId);
  }

  /** Carries out a command from the server (between tasks); never throws. */
  runCommand(command: AgentCommand): Promise<CommandOutcome> {
    return this.#parts.scheduler.runCommand(command);
  }

  /** Runs an edit of host files Lockstep makes itself, recorded as baseline, never drift (see BaselineKeeper.ownChange). */
  ownChange<T>(hostPaths: readonly string[], change: () => Promise<T>): Promise<T> {
    return this.#parts.keeper.ownChange(hostPaths, change);
  }

  /**
   * Runs a package operation Lockstep makes itself (install, upgrade, downgrade, remove of release packages, or the
   * revert of a package finding) and makes the package set after it the baseline: never drift (see PackageWatch.ownChange).
   */
  ownPackageChange<T>(change: () => Promise<T>): Promise<T> {
    return this.#parts.packages.ownChange(change);
  }

  /** Absolute host path → a short digest of what is there now, for every watched entry (for parity). */
  watchedSummary(): Record<string, string> {
    return this.#parts.scopes.watchedSummary();
  }

  /** The findings of the latest scan, as last computed. */
  currentFindings(): readonly DriftFinding[] {
    return this.#parts.publisher.current();
  }

  /** Resolves when no scan or command is running or queued (tests). */
  idle(): Promise<void> {
    return this.#parts.scheduler.idle();
  }

  /** Stops reports, the loop, watchers and scanner threads, after the work under way. */
  async close(): Promise<void> {
    this.#parts.publisher.close();
    await this.#parts.scheduler.close();
    await this.#parts.keeper.close();
    this.#parts.packages.close();
    await this.#parts.packages.flushed();
    await this.#parts.scopes.close();
  }
}
