/**
 * The drift feature's composition root: builds the parts of a drift monitor
 * (state dir, scanner threads, reporter, baselines, scopes, keeper,
 * publisher, command handler, scheduler) from what the agent hands over, and
 * wires each with the collaborators it uses. Nothing below this file
 * constructs another part.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { HostSettings } from '../../api/schemas.js';
import type { BlobCache } from '../../content/blob-cache.js';
import { DEFAULT_SCAN_PRIORITY, type ScanPriority } from '../../core/drift.js';
import { FimWorkerPool } from '../../fim/worker-pool.js';
import type { ManifestStore } from '../release/manifest-store.js';
import type { ManifestFetcher } from '../release/release-baseline.js';
import type { ReleaseVerifier } from '../release/release-verifier.js';
import { BaselineKeeper } from './baseline-keeper.js';
import { DriftCommandHandler } from './drift-command-handler.js';
import { DriftMonitor } from './drift-monitor.js';
import { DriftReporter, type DriftSink } from './drift-reporter.js';
import type { RestoreContext } from './drift-revert.js';
import { DriftScopes } from './drift-scopes.js';
import { DriftStateDir, type ActiveRelease } from './drift-state.js';
import { FindingsPublisher } from './findings-publisher.js';
import { PackageWatch } from './package-watch.js';
import { ScanScheduler } from './scan-scheduler.js';
import { SerialQueue } from '../../core/serial-queue.js';
import { WatchBaselines } from './watch-baselines.js';

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
  readonly verifier?: Pick<ReleaseVerifier, 'verifyTree' | 'repairPaths' | 'keptReleaseFindings' | 'recordedStatCache'>;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Reinstalls the released version of a package (`drift revert` of a package finding), as Lockstep's own package change. */
  readonly reinstallPackage?: (name: string, version: string | null) => Promise<void>;
  /** Scanner threads (default: the CPUs, at most 4). */
  readonly workers?: number;
}

/** The scanner threads' priority from the host settings (the defaults before they are known). */
export function scanPriorityOf(settings: HostSettings | null): ScanPriority {
  if (settings === null) return DEFAULT_SCAN_PRIORITY;
  const { nice, ionice, maxReadBytesPerSecond } = settings.scan;
  return { nice, ionice, maxReadBytesPerSecond };
}

/** A drift monitor for one host, its parts wired together. */
export function createDriftMonitor(options: DriftMonitorOptions): DriftMonitor {
  const { host, root, cache, settings, deployTo, signal } = options;
  const logger = options.logger.child({ part: 'drift' });
  const state = new DriftStateDir(join(options.stateDir, 'drift'));
  const queue = new SerialQueue();
  const baselines = new WatchBaselines(state, cache, logger);
  const packages = new PackageWatch(root, state, logger);
  // The scopes' watchers report to the scheduler and read the release baseline from the keeper, both built below
  // (the callbacks run only once the monitor has started).
  const scopes: DriftScopes = new DriftScopes({
    host,
    root,
    state,
    // Scans run politely (drift.scan of lockstep.yaml; the defaults until the settings arrive): the host's own work comes first.
    pool: new FimWorkerPool(options.workers ?? Math.min(4, Math.max(1, availableParallelism())), {
      priority: () => scanPriorityOf(settings()),
      onPriorityProblem: (problem) => logger.warn({ problem }, 'drift scans run at a higher priority than configured'),
      onConfigured: (reply) => logger.debug({ tid: reply.tid }, 'scanner thread configured'),
    }),
    manifests: options.manifests,
    fetchManifest: options.fetchManifest,
    verifier: options.verifier,
    packages,
    activated: (): ActiveRelease | null => keeper.activated,
    onChange: (record) => scheduler.changed(record),
    logger,
    signal,
  });
  const keeper = new BaselineKeeper({ root, state, baselines, scopes, queue, settings, deployTo, logger });
  const publisher = new FindingsPublisher({ host, deployTo, cache, scopes, keeper, reporter: new DriftReporter(options.sink, logger, signal), packages, logger });
  const commands = new DriftCommandHandler({ host, cache, fetchBlob: options.fetchBlob, verifier: options.verifier, scopes, keeper, publisher, packages, reinstallPackage: options.reinstallPackage, logger, signal });
  const scheduler = new ScanScheduler({ state, queue, scopes, keeper, publisher, commands, cache, settings, logger, signal });
  packages.watch(() => scheduler.changed(() => undefined));
  return new DriftMonitor({ scheduler, keeper, scopes, publisher, packages });
}
