/**
 * From snapshots and baselines to a drift report: computes the findings (the
 * pure functions of drift-findings.ts over what the scopes last scanned and
 * what the baseline keeper holds), remembers the last ones sent, and hands a
 * report to the DriftReporter when they changed (or always, when asked).
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { DriftFinding, DriftReport } from '../../api/schemas.js';
import type { BlobCache } from '../../content/blob-cache.js';
import type { BaselineKeeper } from './baseline-keeper.js';
import { cappedFindings, releaseFindings, releaseRelative, watchFindings } from './drift-findings.js';
import type { DriftReporter, PendingUpload } from './drift-reporter.js';
import { dropEditedCacheCopies } from './drift-revert.js';
import type { DriftScopes, ScanStats } from './drift-scopes.js';
import type { PackageWatch } from './package-watch.js';
import { scopeHostPath } from './watch-scope.js';

/** What the publisher needs. */
export interface FindingsPublisherOptions {
  readonly host: string;
  /** DEPLOY_TO as the settings or the last task said (null: unknown); used while no release was activated. */
  readonly deployTo: () => string | null;
  /** The blob cache release files are hard-linked with (see dropEditedCacheCopies). */
  readonly cache: BlobCache;
  readonly scopes: DriftScopes;
  readonly keeper: BaselineKeeper;
  readonly reporter: Pick<DriftReporter, 'send'>;
  /** Adds package findings and attributes the file changes of package operations to them (see PackageWatch). */
  readonly packages?: Pick<PackageWatch, 'apply' | 'uploads'> | undefined;
  readonly logger: Logger;
}

/** Computes the findings and reports them. */
export class FindingsPublisher {
  readonly #options: FindingsPublisherOptions;
  readonly #log: Logger;
  /** The findings as last published. */
  #findings: DriftFinding[] = [];
  /** The findings (and truncation) of the last report sent, to skip unchanged routine reports. */
  #lastSent: string | undefined;
  #closed = false;

  constructor(options: FindingsPublisherOptions) {
    this.#options = options;
    this.#log = options.logger;
  }

  /** The findings of the latest scan, as last published. */
  current(): readonly DriftFinding[] {
    return this.#findings;
  }

  /** Every finding of the current snapshots against the baselines (see drift-findings.ts). */
  compute(): { findings: DriftFinding[]; truncated: boolean; uploads: PendingUpload[] } {
    const { scopes, keeper } = this.#options;
    const groups: DriftFinding[][] = [];
    let uploads: PendingUpload[] = [];
    const release = scopes.release;
    if (release !== null && release.snapshot !== null) {
      const found = releaseFindings({ ...release, snapshot: release.snapshot });
      groups.push(found.findings);
      uploads = found.uploads;
    }
    const deployTo = keeper.activated?.deployTo ?? this.#options.deployTo();
    const heldBack = keeper.heldBack();
    if (release !== null) groups.push([...scopes.kept]);
    for (const watched of scopes.watched.values()) {
      // A watched scope is added only once it has its baseline (see BaselineKeeper).
      const baseline = keeper.watchBaseline(watched.scope.spec)?.entries ?? [];
      groups.push(watchFindings({ baseline, snapshot: watched.snapshot, hostPath: (path) => scopeHostPath(watched.scope, path) }, deployTo, heldBack));
    }
    const packages = this.#options.packages;
    return { ...cappedFindings(packages === undefined ? groups : [packages.apply(groups.flat())]), uploads: [...uploads, ...(packages?.uploads() ?? [])] };
  }

  /** Computes the findings and queues a report when they changed (or always, with `force`); resolves when it was delivered. */
  publish(cause: DriftReport['cause'], full: boolean, stats: ScanStats, force: boolean): Promise<void> {
    // While `current` is switched, or the new release was not scanned yet, the host is between two releases:
    // a report now would close and re-open items. The scan after the switch reports (resume, command).
    if (this.#closed || !this.#options.keeper.settled()) return Promise.resolve();
    const { findings, truncated, uploads } = this.compute();
    this.#findings = findings;
    const key = JSON.stringify([findings, truncated]);
    if (!force && key === this.#lastSent) return Promise.resolve();
    if (key !== this.#lastSent && findings.length > 0) {
      this.#log.warn({ drifted: findings.length, paths: findings.slice(0, 5).map((finding) => finding.path) }, 'drift found');
      void this.#dropEditedCacheCopies(findings);
    }
    this.#lastSent = key;
    return this.#options.reporter.send(
      {
        host: this.#options.host,
        releaseId: this.#options.scopes.release?.releaseId ?? null,
        full,
        cause,
        findings,
        truncated,
        stats: { entries: stats.entries, hashedFiles: stats.hashedFiles, elapsedMs: Math.round(stats.elapsedMs * 1000) / 1000 },
      },
      uploads,
    );
  }

  /** No report goes out any more (the monitor is closing). */
  close(): void {
    this.#closed = true;
  }

  /** Keeps content edited in place in a release file out of the blob cache it is hard-linked with (see dropEditedCacheCopies). */
  async #dropEditedCacheCopies(findings: readonly DriftFinding[]): Promise<void> {
    const release = this.#options.scopes.release;
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
}
