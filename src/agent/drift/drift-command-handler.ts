/**
 * `lockstep drift revert` and `drift accept` on the host. A revert puts
 * drifted paths back to their baseline (release files through the verifier,
 * with every tree sharing an edited inode; `current` back to the activated
 * release; watched files from their baseline copies, see drift-revert.ts) and
 * re-scans them to prove it. An accept makes what is on disk now the baseline
 * of watched paths (through the baseline keeper); release files cannot be
 * accepted, only adopted.
 */
import { join, posix } from 'node:path';
import type { Logger } from 'pino';
import type { CommandResult, DriftFinding } from '../../api/schemas.js';
import type { BlobCache } from '../../content/blob-cache.js';
import { pointCurrent } from '../release/activator.js';
import type { ReleaseVerifier } from '../release/release-verifier.js';
import type { BaselineKeeper } from './baseline-keeper.js';
import { keptRelative, releaseRelative } from './drift-findings.js';
import { restoreReleaseEntry, restoreWatchEntry, type RestoreContext } from './drift-revert.js';
import { addPaths, type DriftScopes, type ScanStats } from './drift-scopes.js';
import type { FindingsPublisher } from './findings-publisher.js';
import type { PackageWatch } from './package-watch.js';
import { packageNameOf } from '../../core/drift-items.js';

/** The outcome of a command, as the server is told (without the host). */
export type CommandOutcome = Omit<CommandResult, 'host'>;

/** A command's outcome with what its re-scan did (for the report that follows it). */
export interface HandledCommand {
  readonly outcome: CommandOutcome;
  readonly stats: ScanStats;
}

/** What the handler needs. */
export interface DriftCommandHandlerOptions {
  readonly host: string;
  readonly cache: BlobCache;
  /** For a blob a revert needs that the cache lacks or holds corrupted. */
  readonly fetchBlob?: RestoreContext['fetchBlob'] | undefined;
  /** Proves a release tree before `current` goes back to it, and repairs release trees with every tree sharing an edited inode. */
  readonly verifier?: Pick<ReleaseVerifier, 'verifyTree' | 'repairPaths'> | undefined;
  readonly scopes: DriftScopes;
  readonly keeper: BaselineKeeper;
  readonly publisher: Pick<FindingsPublisher, 'current' | 'compute'>;
  /** The package baseline (accept of a package finding). */
  readonly packages?: Pick<PackageWatch, 'rebaseline' | 'attributedPaths'> | undefined;
  /** Reinstalls the released version of a package (`drift revert` of a package finding), through DriftMonitor.ownPackageChange. */
  readonly reinstallPackage?: ((name: string, version: string | null) => Promise<void>) | undefined;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

/** Carries out revert and accept commands (the scheduler runs them one at a time with the scans). */
export class DriftCommandHandler {
  readonly #options: DriftCommandHandlerOptions;
  readonly #log: Logger;

  constructor(options: DriftCommandHandlerOptions) {
    this.#options = options;
    this.#log = options.logger;
  }

  /** Restores the drifted paths selected by `paths` (null: every one) and re-scans them. */
  async revert(paths: readonly string[] | null): Promise<HandledCommand> {
    const { scopes, keeper, verifier, signal } = this.#options;
    const { selected, notes } = this.#select(paths);
    // Parents before children: a directory must exist again before its files are restored into it.
    selected.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const context: RestoreContext = { cache: this.#options.cache, signal, ...(this.#options.fetchBlob === undefined ? {} : { fetchBlob: this.#options.fetchBlob }) };
    const failures: string[] = [];
    const rescanRelease = new Set<string>();
    const rescanWatched = new Map<string, Set<string>>();
    // Release paths repaired through the verifier, per release tree: with every tree and cache copy sharing an edited inode.
    const repairs = new Map<string, { paths: string[]; findings: DriftFinding[] }>();
    for (const finding of selected) {
      const release = scopes.release;
      try {
        const kept = release === null ? undefined : keptRelative(release.deployTo, finding.path);
        const current = release === null ? undefined : releaseRelative(release.deployTo, finding.path);
        if (finding.scope === 'package') {
          const name = packageNameOf(finding.path) ?? finding.path;
          const reinstall = this.#options.reinstallPackage;
          if (reinstall === undefined) throw new Error(`a package cannot be reverted yet; make ${finding.expected?.version ?? 'its absence'} the released version through a release, or accept ${name}'s new version with lockstep drift accept`);
          await reinstall(name, finding.expected?.version ?? null);
        } else if (finding.scope === 'release' && release !== null && finding.path === posix.join(release.deployTo, 'current')) {
          // Back to the release Lockstep activated, proven to be its manifest, with one rename (a revert is Lockstep's own change).
          await verifier?.verifyTree(release.layout, release.releaseId, signal);
          await pointCurrent(release.layout, release.releaseId);
          await scopes.readPointer();
        } else if (finding.scope === 'release' && verifier !== undefined && release !== null && (kept !== undefined || current !== undefined)) {
          const [releaseId, relative] = kept !== undefined ? [kept.releaseId, kept.relative] : [release.releaseId, current as string];
          const repair = repairs.get(releaseId) ?? { paths: [], findings: [] };
          repair.paths.push(relative);
          repair.findings.push(finding);
          repairs.set(releaseId, repair);
          if (kept === undefined) rescanRelease.add(relative);
        } else if (finding.scope === 'release') {
          if (release === null || release.manifest === null || current === undefined) throw new Error('it is not part of the active release any more');
          await restoreReleaseEntry(join(release.dir, current), release.manifest.get(current) ?? null, context);
          rescanRelease.add(current);
        } else {
          const located = scopes.locateWatched(finding.path);
          if (located === undefined) throw new Error('it is not under a watch path any more');
          const { watched, relative } = located;
          const baseline = keeper.watchBaseline(watched.scope.spec)?.entries ?? [];
          await restoreWatchEntry(join(watched.scope.root, relative), baseline.find((entry) => entry.path === relative) ?? null, context);
          addPaths(rescanWatched, watched.scope.spec.path, [relative]);
        }
      } catch (error) {
        failures.push(`${finding.path}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    for (const [releaseId, repair] of repairs) {
      const release = scopes.release;
      if (verifier === undefined || release === null) break;
      await verifier.repairPaths(release.layout, releaseId, repair.paths, signal).catch((error: unknown) => {
        for (const finding of repair.findings) failures.push(`${finding.path}: ${error instanceof Error ? error.message : String(error)}`);
      });
    }
    if (repairs.size > 0) await scopes.checkKept();
    const stats = await scopes.rescan(rescanRelease, rescanWatched);
    const stillDrifted = this.#afterRescan(selected);
    for (const path of stillDrifted) if (!failures.some((failure) => failure.startsWith(`${path}: `))) failures.push(`${path}: still differs after the revert`);
    const restored = selected.length - failures.length;
    this.#log.info({ restored, failures }, 'drift reverted');
    const detail = [`restored ${restored} of ${selected.length} drifted ${selected.length === 1 ? 'path' : 'paths'}`, ...notes].join('; ').slice(0, 4000);
    return failures.length === 0
      ? { outcome: { ok: true, detail }, stats }
      : { outcome: { ok: false, error: `could not restore ${failures.join('; ')}`.slice(0, 4000), detail }, stats };
  }

  /** Makes what is on disk now the baseline of the watched paths selected by `paths`; refuses release files. */
  async accept(paths: readonly string[]): Promise<HandledCommand> {
    const { scopes, keeper } = this.#options;
    const release = scopes.release;
    const findings = this.#options.publisher.current();
    const releaseFile = paths.find((path) => findings.some((finding) => finding.scope === 'release' && finding.path === posix.normalize(path)) || (release !== null && releaseRelative(release.deployTo, path) !== undefined));
    if (releaseFile !== undefined) {
      const error = `${releaseFile} is a release file: release files cannot be accepted; adopt it instead with \`lockstep drift adopt ${this.#options.host} --version V --reason TEXT\``;
      return { outcome: { ok: false, error }, stats: { entries: 0, hashedFiles: 0, hashedBytes: 0, elapsedMs: 0 } };
    }
    const { selected, notes } = this.#select(paths);
    const byScope = new Map<string, Set<string>>();
    const packageNames = selected.filter((finding) => finding.scope === 'package').map((finding) => packageNameOf(finding.path) ?? finding.path);
    // Accepting a package accepts the watched files its operation changed with it: they are its new version's.
    const hostPaths = [...selected.filter((finding) => finding.scope !== 'package').map((finding) => finding.path), ...(this.#options.packages?.attributedPaths(packageNames) ?? [])];
    for (const path of hostPaths) {
      const located = scopes.locateWatched(path);
      if (located !== undefined) addPaths(byScope, located.watched.scope.spec.path, [located.relative]);
    }
    const stats = await keeper.accept(byScope);
    if (packageNames.length > 0) this.#options.packages?.rebaseline(packageNames);
    this.#log.info({ accepted: selected.map((finding) => finding.path) }, 'drift accepted into the baseline');
    const detail = [`accepted ${selected.length} ${selected.length === 1 ? 'path' : 'paths'} into the baseline`, ...notes].join('; ').slice(0, 4000);
    return { outcome: { ok: true, detail }, stats };
  }

  /** Open findings selected by command paths (a path also selects the findings under it); the rest are notes. */
  #select(paths: readonly string[] | null): { selected: DriftFinding[]; notes: string[] } {
    const findings = this.#options.publisher.current();
    if (paths === null) return { selected: [...findings], notes: [] };
    const selected = new Map<string, DriftFinding>();
    const notes: string[] = [];
    for (const path of paths) {
      const normalized = posix.normalize(path);
      const matching = findings.filter((finding) => finding.path === normalized || finding.path.startsWith(`${normalized}/`));
      if (matching.length === 0) notes.push(`${path} has no open drift (ignored)`);
      for (const finding of matching) selected.set(`${finding.scope}:${finding.path}`, finding);
    }
    return { selected: [...selected.values()], notes };
  }

  /** The paths among `selected` that still drift after the re-scan. */
  #afterRescan(selected: readonly DriftFinding[]): string[] {
    const { findings } = this.#options.publisher.compute();
    const now = new Set(findings.map((finding) => `${finding.scope}:${finding.path}`));
    return selected.filter((finding) => now.has(`${finding.scope}:${finding.path}`)).map((finding) => finding.path);
  }
}
