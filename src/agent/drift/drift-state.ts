/**
 * What the drift monitor keeps in STATE_DIR/drift/ between runs: the
 * baseline snapshot of each watch path (watch-baseline.json), when the last
 * scans ran (scans.json), the release Lockstep made current (activated.json),
 * and one stat cache file per scanned root. Every
 * file is written atomically; a missing or corrupt one counts as absent (a
 * baseline is then taken again, which is logged, never reported as drift),
 * while one that cannot be read (permission, I/O) is an error.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../content/atomic-file.js';
import { ifMissing } from '../../core/errors.js';
import type { SnapshotEntry } from '../../core/drift.js';

const FORMAT = 1;

/** The baseline of one watch path: its entries relative to the watch path's parent. */
export interface WatchBaseline {
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  readonly takenAt: string;
  readonly entries: readonly SnapshotEntry[];
}

/** The release Lockstep last activated: the release half of the baseline. */
export interface ActiveRelease {
  /** DEPLOY_TO as in the config: host paths are `${deployTo}/current/${path}`. */
  readonly deployTo: string;
  readonly releaseId: string;
}

/** When the last scans finished (epoch ms), remembered so a restart does not re-hash everything at once. */
export interface ScanTimes {
  readonly lastScanAt: number | null;
  readonly lastFullAt: number | null;
}

/** The drift monitor's files in one directory. */
export class DriftStateDir {
  constructor(readonly dir: string) {}

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Watch path → baseline; empty when none was taken yet. */
  async readWatchBaselines(): Promise<Map<string, WatchBaseline>> {
    const value = await this.#readJson('watch-baseline.json');
    const result = new Map<string, WatchBaseline>();
    if (!isRecord(value) || value.format !== FORMAT || !isRecord(value.paths)) return result;
    for (const [path, baseline] of Object.entries(value.paths)) {
      if (isRecord(baseline) && Array.isArray(baseline.entries) && Array.isArray(baseline.include) && Array.isArray(baseline.exclude)) {
        result.set(path, baseline as unknown as WatchBaseline);
      }
    }
    return result;
  }

  async writeWatchBaselines(baselines: ReadonlyMap<string, WatchBaseline>): Promise<void> {
    await writeFileAtomic(join(this.dir, 'watch-baseline.json'), JSON.stringify({ format: FORMAT, paths: Object.fromEntries(baselines) }), 0o600);
  }

  async readScanTimes(): Promise<ScanTimes> {
    const value = await this.#readJson('scans.json');
    if (!isRecord(value)) return { lastScanAt: null, lastFullAt: null };
    return { lastScanAt: numberOrNull(value.lastScanAt), lastFullAt: numberOrNull(value.lastFullAt) };
  }

  async writeScanTimes(times: ScanTimes): Promise<void> {
    await writeFileAtomic(join(this.dir, 'scans.json'), JSON.stringify(times), 0o600);
  }

  /** The release Lockstep last made current under `deployTo` (so a hand re-pointed `current` shows after a restart too). */
  async readActivated(): Promise<ActiveRelease | undefined> {
    const value = await this.#readJson('activated.json');
    return isRecord(value) && typeof value.deployTo === 'string' && typeof value.releaseId === 'string' ? { deployTo: value.deployTo, releaseId: value.releaseId } : undefined;
  }

  async writeActivated(activated: ActiveRelease): Promise<void> {
    await writeFileAtomic(join(this.dir, 'activated.json'), JSON.stringify(activated), 0o600);
  }

  /** The package set at the last deployment or accept (name → version); undefined when none was taken yet. */
  async readPackageBaseline(): Promise<Record<string, string> | undefined> {
    const value = await this.#readJson('package-baseline.json');
    if (!isRecord(value) || !isRecord(value.installed)) return undefined;
    return Object.fromEntries(Object.entries(value.installed).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
  }

  async writePackageBaseline(installed: Readonly<Record<string, string>>): Promise<void> {
    await writeFileAtomic(join(this.dir, 'package-baseline.json'), JSON.stringify({ installed }), 0o600);
  }

  /** The stat cache file of a scanned root (`release`, or a watch path). */
  cacheFile(name: string): string {
    return join(this.dir, `cache-${createHash('sha256').update(name).digest('hex').slice(0, 16)}.json`);
  }

  async #readJson(name: string): Promise<unknown> {
    const text = await ifMissing(readFile(join(this.dir, name), 'utf8'));
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return undefined; // a torn or corrupt file: as if absent (see above)
    }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}
