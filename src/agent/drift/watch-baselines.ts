/**
 * The baselines of the `watch:` paths, and the only code that changes them.
 * A watched baseline changes in exactly three ways: the first baseline of a
 * newly configured watch path (what is on disk when the path is first
 * watched), `lockstep drift accept` (what is on disk when the command runs),
 * and Lockstep's own writes (recorded as they are written, see
 * BaselineKeeper.ownChange). Nothing else re-takes a baseline from disk: an edit
 * at any other moment, during a task or right after one, stays drift against
 * the content it replaced. Every change is persisted at once
 * (STATE_DIR/drift/watch-baseline.json), and the content of every watched
 * file entering a baseline is copied into the blob cache so a revert can
 * restore it.
 */
import type { Logger } from 'pino';
import type { WatchSpec } from '../../api/schemas.js';
import type { BlobCache } from '../../content/blob-cache.js';
import type { SnapshotEntry } from '../../core/drift.js';
import type { DriftStateDir, WatchBaseline } from './drift-state.js';
import { storeBaselineContent } from './watch-content.js';

/** Why a baseline changed, for the log. */
export type BaselineChange = 'first' | 'accept' | 'own-write';

/** Keeps the watched baselines of one host in memory and on disk. */
export class WatchBaselines {
  readonly #state: DriftStateDir;
  readonly #cache: BlobCache;
  readonly #log: Logger;
  #baselines = new Map<string, WatchBaseline>();
  #loaded = false;

  constructor(state: DriftStateDir, cache: BlobCache, logger: Logger) {
    this.#state = state;
    this.#cache = cache;
    this.#log = logger;
  }

  /** Reads the stored baselines (once; later calls keep what is in memory). */
  async load(): Promise<void> {
    if (this.#loaded) return;
    this.#baselines = await this.#state.readWatchBaselines();
    this.#loaded = true;
  }

  /** The baseline of a watch path, if it has one taken with the spec's globs. */
  get(spec: Pick<WatchSpec, 'path' | 'include' | 'exclude'>): WatchBaseline | undefined {
    const baseline = this.#baselines.get(spec.path);
    return baseline !== undefined && sameGlobs(spec, baseline) ? baseline : undefined;
  }

  /** Every baseline entry's content hash (what the blob cache must keep for revert). */
  contentHashes(): Set<string> {
    const hashes = new Set<string>();
    for (const baseline of this.#baselines.values()) for (const entry of baseline.entries) if (entry.sha256 !== undefined) hashes.add(entry.sha256);
    return hashes;
  }

  /** The first baseline of a newly configured watch path (or one whose globs changed): what is on disk now, never drift. */
  async takeFirst(spec: WatchSpec, root: string, entries: readonly SnapshotEntry[]): Promise<WatchBaseline> {
    const baseline: WatchBaseline = { include: spec.include, exclude: spec.exclude, takenAt: new Date().toISOString(), entries: [...entries].sort(byPath) };
    this.#baselines.set(spec.path, baseline);
    this.#log.info({ path: spec.path, entries: entries.length }, 'took the baseline of a watch path (not drift)');
    await storeBaselineContent(this.#cache, root, baseline.entries, this.#log);
    await this.#save();
    return baseline;
  }

  /**
   * Makes `entries` the baseline at and under each of `relatives` of one watch path (accept, or Lockstep's own
   * write); entries of the baseline there that `entries` lacks are gone from it. Returns the new baseline.
   */
  async replace(path: string, root: string, relatives: ReadonlySet<string>, entries: readonly SnapshotEntry[], why: BaselineChange): Promise<WatchBaseline | undefined> {
    const previous = this.#baselines.get(path);
    if (previous === undefined) return undefined;
    const covered = (entry: SnapshotEntry): boolean => [...relatives].some((relative) => entry.path === relative || entry.path.startsWith(`${relative}/`));
    const taken = entries.filter(covered);
    const baseline: WatchBaseline = { ...previous, takenAt: new Date().toISOString(), entries: [...previous.entries.filter((entry) => !covered(entry)), ...taken].sort(byPath) };
    this.#baselines.set(path, baseline);
    this.#log.debug({ path, relatives: [...relatives], why }, 'watched baseline changed');
    await storeBaselineContent(this.#cache, root, taken, this.#log);
    await this.#save();
    return baseline;
  }

  /** Forgets the baselines of watch paths that are no longer configured. */
  async retain(paths: ReadonlySet<string>): Promise<void> {
    const before = this.#baselines.size;
    for (const path of [...this.#baselines.keys()]) if (!paths.has(path)) this.#baselines.delete(path);
    if (this.#baselines.size !== before) await this.#save();
  }

  async #save(): Promise<void> {
    await this.#state.writeWatchBaselines(this.#baselines);
  }
}

/** Whether a baseline was taken with the spec's include and exclude globs. */
export function sameGlobs(spec: { include: readonly string[]; exclude: readonly string[] }, baseline: { include: readonly string[]; exclude: readonly string[] }): boolean {
  return JSON.stringify([spec.include, spec.exclude]) === JSON.stringify([baseline.include, baseline.exclude]);
}

function byPath(a: SnapshotEntry, b: SnapshotEntry): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}
