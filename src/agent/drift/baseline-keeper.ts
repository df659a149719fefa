/**
 * The drift baseline of one host and the only ways it changes. The release
 * half is the release Lockstep activated, set at the moment `current` is
 * switched (activation) and remembered in activated.json; only on the very
 * first start is it read from what `current` points at. The watched half is
 * WatchBaselines: the first baseline of a newly configured watch path,
 * `drift accept`, and Lockstep's own writes (ownChange), read back the moment
 * they return. Nothing here re-takes a baseline from disk at any other moment,
 * so an edit at any moment is drift.
 */
import { posix } from 'node:path';
import { lstat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { HostSettings, WatchSpec } from '../../api/schemas.js';
import { atomicTmpPrefix } from '../../content/atomic-file.js';
import { ifMissing } from '../../core/errors.js';
import type { ScanResult } from '../../fim/scanner.js';
import { ENV_FILE, readCurrentReleaseId } from '../release/activator.js';
import { SECRETS_DIR } from '../release/secret-files.js';
import { deployLayout, isReleaseId, releaseDir } from '../release/deploy-layout.js';
import { addPaths, type DriftScopes, type ScanStats } from './drift-scopes.js';
import type { ActiveRelease, DriftStateDir, WatchBaseline } from './drift-state.js';
import type { SerialQueue } from '../../core/serial-queue.js';
import type { WatchBaselines } from './watch-baselines.js';
import { scopeHostPath, scopeRelative, watchScope } from './watch-scope.js';

/** What the baseline keeper needs. */
export interface BaselineKeeperOptions {
  /** The directory treated as `/`. */
  readonly root: string;
  readonly state: DriftStateDir;
  readonly baselines: WatchBaselines;
  readonly scopes: DriftScopes;
  /** The monitor's one-at-a-time queue: a baseline changes between scans, never during one. */
  readonly queue: SerialQueue;
  /** The latest host settings (null until the server sent them). */
  readonly settings: () => HostSettings | null;
  /** DEPLOY_TO as the settings or the last task said (null: unknown). */
  readonly deployTo: () => string | null;
  readonly logger: Logger;
}

/** Holds the release baseline, the watched baselines and Lockstep's own changes under way. */
export class BaselineKeeper {
  readonly #options: BaselineKeeperOptions;
  readonly #log: Logger;
  /** The release Lockstep activated (the release baseline); set at the moment of the switch. */
  #activated: ActiveRelease | null = null;
  #activatedLoaded = false;
  /** The writes of activated.json, one after the other. */
  #rememberActivated: Promise<void> = Promise.resolve();
  /** Switches of `current` under way: no report goes out while the host is between two releases. */
  #switching = 0;
  /** Host paths Lockstep itself is changing now (see ownChange), with how many changes are under way. */
  readonly #ownPending = new Map<string, number>();
  /** Whether the first baseline and snapshot were taken. */
  #ready = false;
  readonly #firstBaseline: { readonly promise: Promise<void>; readonly resolve: () => void };

  constructor(options: BaselineKeeperOptions) {
    this.#options = options;
    this.#log = options.logger;
    let resolveFirst = (): void => undefined;
    const promise = new Promise<void>((resolve) => (resolveFirst = resolve));
    this.#firstBaseline = { promise, resolve: resolveFirst };
  }

  /** The release Lockstep activated, or null (none yet, or DEPLOY_TO unknown). */
  get activated(): ActiveRelease | null {
    return this.#activated;
  }

  /** Whether the first baseline and snapshot were taken (before, watchers' events are covered by the first scan). */
  get ready(): boolean {
    return this.#ready;
  }

  /** The first baseline and snapshot were taken. */
  becomeReady(): void {
    this.#ready = true;
    this.#firstBaseline.resolve();
  }

  /** Resolves once the first baseline and snapshot were taken (host facts wait for it: no "(absent)" after a restart). */
  baselineReady(): Promise<void> {
    return this.#firstBaseline.promise;
  }

  /** Brings the scopes in line with settings and disk: the activated release, and a baseline for every new watch path. */
  async setUp(): Promise<void> {
    await this.#options.state.open();
    await this.#options.baselines.load();
    await this.#setUpActivated();
    await this.#options.scopes.syncRelease();
    await this.#setUpWatched();
  }

  /**
   * Runs `switchRelease` (lockstep.env and shared/secrets/ written, `current` re-pointed to `releaseId`) as Lockstep's own change:
   * the release baseline becomes that release's manifest the moment `current` switched, and what the switch
   * wrote under watch paths is recorded as it is written. No report goes out while `current` is being switched.
   */
  async activation<T>(deployTo: string, releaseId: string, switchRelease: () => Promise<T>): Promise<T> {
    this.#switching++;
    try {
      const result = await this.ownChange([posix.join(deployTo, 'shared', ENV_FILE), posix.join(deployTo, 'shared', SECRETS_DIR)], switchRelease);
      this.#setActivated({ deployTo, releaseId });
      // Not awaited (a rollback must not wait for an fsync), but in order: the last switch is what is remembered.
      // A task cut short before it is written is handed out again and switches again.
      const state = this.#options.state;
      this.#rememberActivated = this.#rememberActivated.then(() =>
        state
          .open()
          .then(() => state.writeActivated({ deployTo, releaseId }))
          .catch((error: unknown) => this.#log.warn({ err: error }, 'could not remember the active release')),
      );
      return result;
    } finally {
      this.#switching--;
    }
  }

  /** Whether reports may go out: no switch under way, and the activated release was scanned since it became active. */
  settled(): boolean {
    if (this.#switching > 0) return false;
    if (this.#activated === null) return true;
    const release = this.#options.scopes.release;
    return release !== null && release.snapshot !== null;
  }

  /** The baseline of a watch path (taken with the spec's globs). */
  watchBaseline(spec: Pick<WatchSpec, 'path' | 'include' | 'exclude'>): WatchBaseline | undefined {
    return this.#options.baselines.get(spec);
  }

  /** Every watched baseline entry's content hash (what the blob cache must keep for revert). */
  contentHashes(): Set<string> {
    return this.#options.baselines.contentHashes();
  }

  /** While Lockstep changes watched paths: whether a host path is one of them, above one, or the temporary file one is written through; findings there wait. */
  heldBack(): ((hostPath: string) => boolean) | undefined {
    if (this.#ownPending.size === 0) return undefined;
    return (hostPath) => {
      for (const path of this.#ownPending.keys()) if (path === hostPath || path.startsWith(`${hostPath}/`) || isTemporarySibling(path, hostPath)) return true;
      return false;
    };
  }

  /** `drift accept`: re-scans these watched paths and makes what is on disk now their baseline. */
  async accept(byScope: ReadonlyMap<string, ReadonlySet<string>>): Promise<ScanStats> {
    const scopes = this.#options.scopes;
    // Re-scan first, so that the baseline is exactly what is on disk.
    const stats = await scopes.rescan(new Set(), byScope);
    for (const [path, relatives] of byScope) {
      const watched = scopes.watched.get(path);
      if (watched !== undefined) await this.#options.baselines.replace(path, watched.scope.root, relatives, watched.snapshot, 'accept');
    }
    return stats;
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

  /** Waits for the last activated.json write. */
  async close(): Promise<void> {
    await this.#rememberActivated;
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
    const state = this.#options.state;
    const remembered = await state.readActivated();
    if (remembered !== undefined && remembered.deployTo === deployTo && isReleaseId(remembered.releaseId) && (await isDirectory(releaseDir(layout, remembered.releaseId)))) {
      return this.#setActivated(remembered);
    }
    const releaseId = (await ifMissing(readCurrentReleaseId(layout))) ?? null;
    if (releaseId === null) return this.#setActivated(null);
    this.#setActivated({ deployTo, releaseId });
    await state.writeActivated({ deployTo, releaseId }).catch((error: unknown) => this.#log.warn({ err: error }, 'could not remember the active release'));
  }

  /** Makes `activated` the release baseline; the scan state of another release is dropped (rebuilt by the scopes). */
  #setActivated(activated: ActiveRelease | null): void {
    this.#activated = activated;
    this.#options.scopes.keepRelease(activated);
  }

  /** Watches every configured watch path: a stored baseline is used as it is; a path without one gets its first baseline. */
  async #setUpWatched(): Promise<void> {
    const { scopes, baselines } = this.#options;
    const specs = this.#options.settings()?.watch ?? [];
    scopes.retainWatched(specs);
    for (const spec of specs) {
      if (scopes.watched.has(spec.path)) continue;
      const { watched, scan } = await scopes.openWatched(spec);
      const stored = baselines.get(spec);
      if (stored === undefined) await baselines.takeFirst(spec, watched.scope.root, scan.entries);
      if (stored === undefined && scan.rootError === undefined && !scan.entries.some((entry) => entry.path === watched.scope.base)) {
        this.#log.warn({ path: spec.path }, 'watch path does not exist; its appearance will be reported as drift');
      }
      scopes.addWatched(watched);
    }
    await baselines.retain(new Set(specs.map((spec) => spec.path)));
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
    await this.#options.queue.run(async () => {
      if (!this.#ready) return; // the first baseline, still to come, takes them as they are
      const late = await this.#readBack(paths, (watchPath) => !early.has(watchPath));
      for (const [path, scan] of [...early, ...late]) {
        const watched = this.#options.scopes.watched.get(path);
        if (watched === undefined) continue;
        this.#options.scopes.mergeWatched(path, scan);
        await this.#options.baselines.replace(path, watched.scope.root, new Set(scan.scannedPaths), scan.entries, 'own-write');
      }
      await this.#rereadTemporarySiblings(paths);
    });
  }

  /**
   * The temporary files the writes went through (writeFileAtomic), if a scan saw them meanwhile, are read again
   * into the snapshot only, never into the baseline: gone, they leave it; still there, they are drift like any
   * file Lockstep did not write.
   */
  async #rereadTemporarySiblings(paths: readonly string[]): Promise<void> {
    const siblings = new Map<string, Set<string>>();
    for (const watched of this.#options.scopes.watched.values()) {
      for (const entry of watched.snapshot) {
        const hostPath = scopeHostPath(watched.scope, entry.path);
        if (paths.some((path) => isTemporarySibling(path, hostPath))) addPaths(siblings, watched.scope.spec.path, [entry.path]);
      }
    }
    if (siblings.size > 0) await this.#options.scopes.rescan(new Set(), siblings);
  }

  /** Scans what is at `paths` now, per watch path (those `wanted`), hashing every file whatever its stat says. */
  async #readBack(paths: readonly string[], wanted: (watchPath: string) => boolean): Promise<Map<string, ScanResult>> {
    const byScope = new Map<string, Set<string>>();
    for (const path of paths) {
      const located = this.#options.scopes.locateWatched(path);
      if (located === undefined || !wanted(located.watched.scope.spec.path)) continue;
      const { watched, relative } = located;
      const baseline = this.watchBaseline(watched.scope.spec)?.entries ?? [];
      // A directory Lockstep had to create for them (not in the baseline) is its own change too, with what is in it.
      const parts = relative.split('/');
      const added = parts.slice(0, -1).map((_, index) => parts.slice(0, index + 1).join('/')).find((ancestor) => !baseline.some((entry) => entry.path === ancestor));
      addPaths(byScope, watched.scope.spec.path, [added ?? relative]);
    }
    const written = new Map<string, ScanResult>();
    for (const [path, relatives] of byScope) {
      const scan = await this.#options.scopes.readBack(path, [...relatives]);
      if (scan !== undefined) written.set(path, scan);
    }
    return written;
  }
}

/** Whether `hostPath` is a temporary file `written` is written through (see writeFileAtomic). */
function isTemporarySibling(written: string, hostPath: string): boolean {
  return posix.dirname(hostPath) === posix.dirname(written) && posix.basename(hostPath).startsWith(atomicTmpPrefix(posix.basename(written)));
}

async function isDirectory(path: string): Promise<boolean> {
  return (await ifMissing(lstat(path)))?.isDirectory() === true;
}
