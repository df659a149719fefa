/**
 * Verification before every switch: proves that a release tree on disk is
 * exactly its manifest before `current` is pointed at it, and repairs it from
 * verified blobs when it is not.
 *
 * Cheap by design: each release has a stat record (see stat-record.ts), so a
 * tree nobody touched is one lstat per entry; only entries whose lstat differs
 * from the record are hashed (in the scanner's worker threads).
 *
 * Release files are hard links into the agent's blob cache (ext4 has no
 * reflinks), so one inode may sit in several kept trees and the cache. An
 * in-place edit through any of them edits all of them: every repair therefore
 * also repairs every other tree whose record holds an edited inode, and the
 * cache copy is checked (dropped and fetched again when it does not hash).
 *
 * Lockstep's own hard links change the shared inodes' ctime and link count
 * too (staging a release links the inodes kept releases use; pruning unlinks
 * them). Those changes are recorded as they are made ("carried" into every
 * record holding the inode), but only when the inode still matched its record
 * just before, so a rollback to an untouched kept release stays a stat walk.
 */
import type { BigIntStats } from 'node:fs';
import { lstatSync, readdirSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Logger } from 'pino';
import type { DriftFinding } from '../../api/schemas.js';
import type { BlobCache } from '../../content/blob-cache.js';
import { diffAgainstManifest, type Finding, type SnapshotEntry } from '../../core/drift.js';
import { ifMissing, ifMissingSync, LockstepError } from '../../core/errors.js';
import { SerialQueue } from '../../core/serial-queue.js';
import { shortId, type Manifest, type ManifestEntry } from '../../core/manifest.js';
import { scanTree } from '../../fim/scanner.js';
import { FimWorkerPool } from '../../fim/worker-pool.js';
import { releaseDir, releasesOnDisk, type DeployLayout } from './deploy-layout.js';
import { groupFindings } from '../drift/drift-findings.js';
import { dropEditedCacheCopies, restoreReleaseEntry, type RestoreContext } from '../drift/drift-revert.js';
import type { ManifestStore } from './manifest-store.js';
import { loadReleaseManifest, type ManifestFetcher } from './release-baseline.js';
import { StatCache } from '../../fim/stat-cache.js';
import { sameButLinks, scannerSignature, signatureInode, signatureLinks, statSignature, StatRecordStore, type StatRecord, type StatSignature } from './stat-record.js';

/** What the verifier needs from the agent. */
export interface ReleaseVerifierOptions {
  /** The agent's state dir; records go to STATE_DIR/stat-records/. */
  readonly stateDir: string;
  readonly cache: BlobCache;
  /** Manifests of staged releases, for a tree that has no stat record yet. */
  readonly manifests: ManifestStore;
  /** For a manifest the store lacks. */
  readonly fetchManifest?: ManifestFetcher;
  /** For a blob the cache lacks or holds edited. */
  readonly fetchBlob?: RestoreContext['fetchBlob'];
  readonly logger: Logger;
  /** Hashing threads (default: 2); the verifier closes only a pool it made. */
  readonly pool?: FimWorkerPool;
}

/** What verifying a tree did. */
export interface VerifyOutcome {
  /** Entries whose lstat differed from the record and were hashed. */
  readonly rehashed: number;
  /** Paths (`releases/<id>/<path>`, relative to DEPLOY_TO) put back as their manifest says, in this and every tree sharing an edited inode. */
  readonly repaired: readonly string[];
}

/** One hard-linked file of a tree being staged: the cache file it was linked from, and that file's lstat just before the first link. */
export interface StagedLink {
  readonly path: string;
  readonly source: string;
  readonly before: BigIntStats;
}

/** A staged tree, before it gets its release name. */
export interface StagedTree {
  readonly layout: DeployLayout;
  readonly releaseId: string;
  readonly manifest: Manifest;
  /** Where the tree is now (the staging dir). */
  readonly dir: string;
  /** The files linked from cache copies that existed before this staging. */
  readonly links: ReadonlyMap<string, StagedLink>;
  /** The blobs downloaded (and hash-checked) by this staging. */
  readonly fetched: ReadonlySet<string>;
}

/** The outcome of comparing one tree with its record. */
interface Inspection {
  readonly record: StatRecord;
  readonly manifest: ReadonlyMap<string, ManifestEntry>;
  /** Differences from the manifest, by path (relative to the tree). */
  readonly findings: readonly Finding[];
  /** What the paths with findings hold now. */
  readonly actual: ReadonlyMap<string, SnapshotEntry>;
  /** The lstat of each manifest entry seen by the walk (undefined: missing). */
  readonly seen: ReadonlyMap<string, StatSignature | undefined>;
  readonly rehashed: number;
  /** Whether stats were refreshed (an entry hashed and found right): the record is worth saving. */
  readonly refreshed: boolean;
}

/** What a stat walk found (see ReleaseVerifier.#walk). */
interface Walk {
  readonly dir: string;
  readonly record: StatRecord;
  readonly manifest: ReadonlyMap<string, ManifestEntry>;
  readonly seen: Map<string, StatSignature | undefined>;
  /** Paths whose lstat differs from the record, or that are not in the manifest: to be hashed. */
  readonly suspicious: Set<string>;
  /** Directories with the wrong mode (no hash needed to tell). */
  readonly ownFindings: Finding[];
  readonly actual: Map<string, SnapshotEntry>;
  readonly dirsChanged: Map<string, StatSignature>;
  /** Directories with entries the manifest lacks. */
  readonly extraDirs: Set<string>;
}

/** The differences of a tree about to be left, by path: the lstat signature then (null: missing). */
export type LeavingSnapshot = ReadonlyMap<string, StatSignature | null>;

/** Synchronous lstats between two yields to the event loop. */
const LSTAT_BATCH = 1000;
/** Files whose ctime is this close to now are not trusted by their stat next time (the clock that stamps ctime is coarse). */
const RACY_WINDOW_NS = 1_000_000_000n;

/** Verifies release trees against their stat records and manifests, and repairs them. */
export class ReleaseVerifier {
  readonly #records: StatRecordStore;
  readonly #options: ReleaseVerifierOptions;
  readonly #pool: FimWorkerPool;
  readonly #ownPool: boolean;
  readonly #queue = new SerialQueue();

  constructor(options: ReleaseVerifierOptions) {
    this.#options = options;
    this.#records = new StatRecordStore(join(options.stateDir, 'stat-records'));
    this.#ownPool = options.pool === undefined;
    this.#pool = options.pool ?? new FimWorkerPool(2);
  }

  /** Stops the hashing threads (when the verifier made them). */
  async close(): Promise<void> {
    await this.#queue.idle();
    if (this.#ownPool) await this.#pool.close();
  }

  /**
   * Takes the stat record of a freshly staged tree and carries the links it
   * made into the records of the kept trees that share those inodes. A linked
   * file is trusted by its stat only if its cache copy matched a record (or
   * was linked nowhere) just before the link and only the link changed it;
   * every other file is left to be hashed by the verification before the switch.
   */
  recordStaged(tree: StagedTree): Promise<void> {
    return this.#exclusive(async () => {
      const others = await this.#recordsOnDisk(tree.layout, tree.releaseId);
      const holders = holdersByInode(others);
      const after = new Map<string, StatSignature>();
      const linksPerInode = new Map<string, number>();
      for (const entry of tree.manifest.entries) {
        const signature = statSignature(lstatSync(join(tree.dir, entry.path), { bigint: true }));
        after.set(entry.path, signature);
        if (entry.type === 'file') linksPerInode.set(signatureInode(signature), (linksPerInode.get(signatureInode(signature)) ?? 0) + 1);
      }
      const stats = new Map<string, StatSignature | null>();
      const dirty = new Set<StatRecord>();
      const carried = new Map<string, boolean>();
      for (const entry of tree.manifest.entries) {
        const signature = after.get(entry.path) as StatSignature;
        const link = tree.links.get(entry.path);
        if (entry.type !== 'file') {
          stats.set(entry.path, signature); // made here, by this staging
          continue;
        }
        const inode = signatureInode(signature);
        if (link === undefined) {
          // A cache copy made by this staging: trusted when its blob was downloaded and checked just now and the copy is
          // linked nowhere else; else (its blob may be linked, and edited, in another tree) it is hashed before the switch.
          const fresh = tree.fetched.has(entry.sha256) && signatureLinks(signature) === (linksPerInode.get(inode) ?? 0) + 1;
          stats.set(entry.path, fresh ? signature : null);
          continue;
        }
        let trusted = carried.get(inode);
        if (trusted === undefined) {
          const before = statSignature(link.before);
          const shared = holders.get(inode) ?? [];
          const untouched = signatureInode(before) === inode && sameButLinks(before, signature) && signatureLinks(signature) === signatureLinks(before) + (linksPerInode.get(inode) ?? 0);
          const matching = shared.filter((holder) => holder.record.stats.get(holder.path) === before);
          trusted = untouched && (shared.length === 0 ? signatureLinks(before) === 1 : matching.length > 0);
          if (trusted) {
            for (const holder of matching) {
              holder.record.stats.set(holder.path, signature);
              dirty.add(holder.record);
            }
          }
          carried.set(inode, trusted);
        }
        stats.set(entry.path, trusted ? signature : null);
      }
      for (const record of dirty) await this.#records.write(record);
      await this.#records.write({ releaseId: tree.releaseId, manifest: tree.manifest, stats });
    });
  }

  /**
   * Proves that DEPLOY_TO/releases/<id> is exactly its manifest, repairing
   * what is not (and every tree sharing an edited inode) from verified blobs.
   * Throws when the tree cannot be made right; only then is the switch refused.
   */
  verifyTree(layout: DeployLayout, releaseId: string, signal: AbortSignal): Promise<VerifyOutcome> {
    return this.#exclusive(async () => {
      const inspection = await this.#inspect(layout, releaseId, undefined, signal);
      if (inspection.findings.length === 0) {
        if (inspection.refreshed) await this.#records.write(inspection.record);
        return { rehashed: inspection.rehashed, repaired: [] };
      }
      const repaired = await this.#repair(layout, inspection, undefined, signal);
      const again = await this.#inspect(layout, releaseId, undefined, signal);
      const left = again.findings[0];
      if (left !== undefined) throw new LockstepError('failed', `release ${shortId(releaseId)} still differs from its manifest after a repair (${left.path}: ${left.kind})`);
      await this.#records.write(again.record);
      return { rehashed: inspection.rehashed + again.rehashed, repaired };
    });
  }

  /**
   * Repairs the given paths of a release tree (a drift revert): each path
   * with a difference, what is under it, and every entry of any kept tree
   * that shares an edited inode. Returns what was repaired.
   */
  repairPaths(layout: DeployLayout, releaseId: string, paths: readonly string[], signal: AbortSignal): Promise<readonly string[]> {
    return this.#exclusive(async () => {
      const inspection = await this.#inspect(layout, releaseId, undefined, signal);
      const selected = (path: string): boolean => paths.some((wanted) => path === wanted || path.startsWith(`${wanted}/`));
      const repaired = await this.#repair(layout, inspection, selected, signal);
      if (inspection.refreshed || repaired.length > 0) await this.#records.write(inspection.record);
      return repaired;
    });
  }

  /**
   * Before a switch: what differs from its record in the tree about to be
   * left (the active one), by lstat only. Those differences are drift of
   * `current`; what changes in the tree after this is drift of a kept release.
   */
  snapshotLeaving(layout: DeployLayout, releaseId: string, signal: AbortSignal): Promise<LeavingSnapshot> {
    return this.#exclusive(async () => {
      const walk = await this.#walk(layout, releaseId, undefined, signal);
      const snapshot = new Map<string, StatSignature | null>();
      for (const path of [...walk.suspicious, ...walk.ownFindings.map((finding) => finding.path)]) {
        const info = lstatIfThere(join(walk.dir, path));
        snapshot.set(path, info === undefined ? null : statSignature(info));
      }
      return snapshot;
    });
  }

  /**
   * After a switch: puts the tree just left back to its manifest where it
   * differed before the switch (`leaving`: that was drift of `current`,
   * reported and then closed by the deployment, or adopted). An entry changed
   * since is an edit of a kept release: left in place, reported as its drift.
   * Returns what was repaired.
   */
  repairLeftBehind(layout: DeployLayout, releaseId: string, leaving: LeavingSnapshot, signal: AbortSignal): Promise<readonly string[]> {
    return this.#exclusive(async () => {
      const inspection = await this.#inspect(layout, releaseId, undefined, signal);
      const dir = releaseDir(layout, releaseId);
      const unchangedSince = (path: string): boolean => {
        // A path counts by itself, or by an added directory above it (removed whole).
        for (let at = path; at !== '.' && at !== ''; at = posix.dirname(at)) {
          const then = leaving.get(at);
          if (then === undefined || (at !== path && inspection.manifest.has(at))) continue;
          const info = lstatIfThere(join(dir, at));
          return (info === undefined ? null : statSignature(info)) === then;
        }
        return false;
      };
      const kept = [...new Set(inspection.findings.map((finding) => finding.path))].filter((path) => !unchangedSince(path));
      const repaired = await this.#repair(layout, inspection, (path) => !kept.includes(path), signal);
      if (kept.length > 0) this.#options.logger.warn({ release: shortId(releaseId), paths: kept.slice(0, 20) }, 'the release just left was changed during the switch: left in place, reported as drift of a kept release');
      if (inspection.refreshed || repaired.length > 0) await this.#records.write(inspection.record);
      return repaired;
    });
  }

  /**
   * The drift of the kept (not active) release trees, as findings with paths
   * `${deployTo}/releases/<id>/<path>`: a stat walk of each against its record,
   * hashing only what changed. A kept file edited in place is the cache copy
   * too: that copy is dropped at once, so no later staging links it.
   */
  keptReleaseFindings(layout: DeployLayout, deployTo: string, activeReleaseId: string | null, signal: AbortSignal): Promise<DriftFinding[]> {
    return this.#exclusive(async () => {
      const findings: DriftFinding[] = [];
      for (const releaseId of await releasesOnDisk(layout)) {
        if (releaseId === activeReleaseId) continue;
        let inspection: Inspection;
        try {
          inspection = await this.#inspect(layout, releaseId, undefined, signal);
        } catch (error) {
          if (signal.aborted) throw error;
          this.#options.logger.warn({ err: error, release: shortId(releaseId) }, 'cannot check a kept release for drift');
          continue;
        }
        if (inspection.refreshed) await this.#records.write(inspection.record);
        await this.#dropEditedCopies(layout, inspection);
        findings.push(
          ...groupFindings({
            scope: 'release',
            findings: inspection.findings,
            expected: (path) => inspection.manifest.get(path),
            actual: (path) => inspection.actual.get(path),
            hostPath: (path) => posix.join(deployTo, 'releases', releaseId, path),
          }),
        );
      }
      return findings;
    });
  }

  /**
   * The scanner's stat cache of a release tree, seeded from its stat record: each file Lockstep recorded (at
   * staging, or hashed and found right since) with its manifest hash. The check after activation and the drift
   * baseline of a new release are then a stat walk that hashes only what changed since the record (issue 12:
   * hash each file once per deployment). Empty when the release has no record.
   */
  recordedStatCache(layout: DeployLayout, releaseId: string): Promise<StatCache> {
    return this.#exclusive(async () => {
      const dir = releaseDir(layout, releaseId);
      const cache = new StatCache(dir);
      const record = await this.#records.read(releaseId);
      if (record === undefined) return cache;
      for (const entry of record.manifest.entries) {
        const signature = record.stats.get(entry.path);
        if (entry.type === 'file' && signature !== null && signature !== undefined) cache.set(entry.path, scannerSignature(signature), entry.sha256);
      }
      return cache;
    });
  }

  /**
   * Runs `remove`, which deletes a release tree (pruning), and carries the
   * unlinks into the records of the trees that share its inodes. Edited files
   * of the doomed tree take their cache copies with them.
   */
  removingRelease(layout: DeployLayout, releaseId: string, remove: () => Promise<void>, signal: AbortSignal): Promise<void> {
    return this.#exclusive(async () => {
      const record = await this.#records.read(releaseId);
      let clean = new Map<string, { before: StatSignature; links: number }>();
      if (record !== undefined) {
        try {
          const inspection = await this.#inspect(layout, releaseId, undefined, signal);
          await this.#dropEditedCopies(layout, inspection);
          clean = unchangedInodes(inspection);
        } catch (error) {
          if (signal.aborted) throw error;
          // The kept trees that share its inodes are then hashed at their next check instead.
          this.#options.logger.warn({ err: error, release: shortId(releaseId) }, 'could not check a release before pruning it');
        }
      }
      await remove();
      await this.#records.remove(releaseId);
      if (clean.size === 0) return;
      const others = await this.#recordsOnDisk(layout, releaseId);
      const dirty = new Set<StatRecord>();
      for (const [inode, holders] of holdersByInode(others)) {
        const gone = clean.get(inode);
        const first = holders[0];
        if (gone === undefined || first === undefined) continue;
        const now = lstatIfThere(join(releaseDir(layout, first.record.releaseId), first.path));
        if (now === undefined) continue;
        const after = statSignature(now);
        if (signatureInode(after) !== inode || !sameButLinks(gone.before, after) || signatureLinks(after) !== signatureLinks(gone.before) - gone.links) continue;
        for (const holder of holders) {
          if (holder.record.stats.get(holder.path) !== gone.before) continue;
          holder.record.stats.set(holder.path, after);
          dirty.add(holder.record);
        }
      }
      for (const changed of dirty) await this.#records.write(changed);
    });
  }

  /** Deletes the records of releases no longer on disk. */
  retain(layout: DeployLayout): Promise<void> {
    return this.#exclusive(async () => this.#records.retain(await releasesOnDisk(layout)));
  }

  // ---- inspection ----

  /**
   * Compares a tree with its record: an lstat per entry, a listing of each
   * directory whose lstat changed (for added entries), and a hash of every
   * file whose lstat changed (or of every path in `forced`).
   */
  async #inspect(layout: DeployLayout, releaseId: string, forced: ReadonlySet<string> | undefined, signal: AbortSignal): Promise<Inspection> {
    const { dir, record, manifest, seen, suspicious, ownFindings, actual, dirsChanged, extraDirs } = await this.#walk(layout, releaseId, forced, signal);
    let rehashed = 0;
    let scanned: readonly SnapshotEntry[] = [];
    if (suspicious.size > 0) {
      const scan = await scanTree(dir, { pool: this.#pool, paths: [...suspicious], signal });
      if (scan.rootError !== undefined) throw new LockstepError('failed', `cannot read release ${shortId(releaseId)}: ${scan.rootError}`);
      scanned = scan.entries;
      rehashed = scan.counters.hashedFiles;
    }
    const expected = [...suspicious].map((path) => manifest.get(path)).filter((entry): entry is ManifestEntry => entry !== undefined);
    const findings = [...diffAgainstManifest(expected, scanned), ...ownFindings].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    for (const entry of scanned) actual.set(entry.path, entry);

    // What was hashed (or listed) and found right is trusted by its stat from now on, if it held still meanwhile.
    const wrong = new Set(findings.map((finding) => finding.path));
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    let refreshed = false;
    for (const path of [...suspicious, ...dirsChanged.keys()]) {
      if (!manifest.has(path) || wrong.has(path) || extraDirs.has(path)) continue;
      const before = seen.get(path);
      const info = lstatIfThere(join(dir, path));
      if (info === undefined || before === undefined || statSignature(info) !== before || info.ctimeNs >= nowNs - RACY_WINDOW_NS) continue;
      record.stats.set(path, before);
      refreshed = true;
    }
    return { record, manifest, findings, actual, seen, rehashed, refreshed };
  }

  /** The stat walk of a tree against its record: what differs, without hashing anything. */
  async #walk(layout: DeployLayout, releaseId: string, forced: ReadonlySet<string> | undefined, signal: AbortSignal): Promise<Walk> {
    const dir = releaseDir(layout, releaseId);
    const root = await ifMissing(lstat(dir));
    if (root === undefined || !root.isDirectory()) throw new LockstepError('failed', `release ${shortId(releaseId)} is not staged on this host`);
    const record = (await this.#records.read(releaseId)) ?? (await this.#recordFromManifest(releaseId, signal));
    const manifest = new Map(record.manifest.entries.map((entry) => [entry.path, entry]));
    const seen = new Map<string, StatSignature | undefined>();
    const suspicious = new Set<string>();
    const ownFindings: Finding[] = [];
    const actual = new Map<string, SnapshotEntry>();
    const listed: string[] = [''];
    const dirsChanged = new Map<string, StatSignature>();
    let count = 0;
    for (const entry of record.manifest.entries) {
      if (++count % LSTAT_BATCH === 0) {
        await new Promise((resolve) => setImmediate(resolve));
        signal.throwIfAborted();
      }
      const info = lstatIfThere(join(dir, entry.path));
      const signature = info === undefined ? undefined : statSignature(info);
      seen.set(entry.path, signature);
      if (info !== undefined && signature === record.stats.get(entry.path) && forced?.has(entry.path) !== true) continue;
      if (entry.type === 'dir' && info?.isDirectory() === true) {
        // A directory keeps its inode; its own lstat and a listing say all there is to check.
        listed.push(entry.path);
        const mode = Number(info.mode) & 0o7777;
        if (mode !== entry.mode) {
          ownFindings.push({ kind: 'mode', path: entry.path, expected: entry.mode, actual: mode });
          actual.set(entry.path, { path: entry.path, type: 'dir', mode, uid: Number(info.uid), gid: Number(info.gid), size: 0 });
        } else if (signature !== undefined) {
          dirsChanged.set(entry.path, signature);
        }
        continue;
      }
      suspicious.add(entry.path);
    }
    // Entries added to a directory changed its ctime (the root's changes at every activation: always listed).
    const extraDirs = new Set<string>();
    for (const path of listed) {
      const names = ifMissingSync(() => readdirSync(path === '' ? dir : join(dir, path)));
      if (names === undefined) continue;
      for (const name of names) {
        const child = path === '' ? name : `${path}/${name}`;
        if (!manifest.has(child)) {
          suspicious.add(child);
          if (path !== '') extraDirs.add(path);
        }
      }
    }
    return { dir, record, manifest, seen, suspicious, ownFindings, actual, dirsChanged, extraDirs };
  }

  /** A record for a tree staged without one (by an older agent, or before a crash): every entry is hashed once. */
  async #recordFromManifest(releaseId: string, signal: AbortSignal): Promise<StatRecord> {
    const { manifests, fetchManifest, logger } = this.#options;
    const entries = await loadReleaseManifest(releaseId, manifests, fetchManifest, logger, signal);
    if (entries === undefined) throw new LockstepError('failed', `cannot verify release ${shortId(releaseId)}: its manifest is neither stored on this host nor available from the server`);
    // loadReleaseManifest stored it, with its app and version, when it had to fetch it.
    const stored = await manifests.read(releaseId);
    const record: StatRecord = { releaseId, manifest: { app: stored?.app ?? '', version: stored?.version ?? '', entries }, stats: new Map(entries.map((entry) => [entry.path, null])) };
    await this.#records.write(record);
    return record;
  }

  // ---- repair ----

  /**
   * Puts the paths with findings back (only those `selected` says, when
   * given), then every entry of every other kept tree whose record holds an
   * inode that was wrong here. Returns the repaired paths relative to DEPLOY_TO.
   */
  async #repair(layout: DeployLayout, inspection: Inspection, selected: ((path: string) => boolean) | undefined, signal: AbortSignal): Promise<string[]> {
    const suspectInodes = new Set<string>();
    const repaired = await this.#repairTree(layout, inspection, selected, suspectInodes, signal);
    if (suspectInodes.size === 0) return repaired;
    for (const other of await releasesOnDisk(layout)) {
      if (other === inspection.record.releaseId) continue;
      const record = await this.#records.read(other);
      if (record === undefined) continue;
      // Sharing by the record, or by what is on disk now (an entry not trusted by its stat has no recorded inode).
      const otherDir = releaseDir(layout, other);
      const sharing = new Set(
        record.manifest.entries
          .filter((entry) => entry.type === 'file')
          .filter((entry) => {
            const recorded = record.stats.get(entry.path);
            if (recorded !== null && recorded !== undefined && suspectInodes.has(signatureInode(recorded))) return true;
            const now = lstatIfThere(join(otherDir, entry.path));
            return now !== undefined && suspectInodes.has(String(now.ino));
          })
          .map((entry) => entry.path),
      );
      if (sharing.size === 0) continue;
      const theirs = await this.#inspect(layout, other, sharing, signal);
      repaired.push(...(await this.#repairTree(layout, theirs, (path) => sharing.has(path), new Set(), signal)));
      await this.#records.write(theirs.record);
    }
    if (repaired.length > 0) this.#options.logger.warn({ repaired: repaired.slice(0, 20), count: repaired.length }, 'release files differed from their manifest and were put back from verified blobs');
    return repaired;
  }

  async #repairTree(layout: DeployLayout, inspection: Inspection, selected: ((path: string) => boolean) | undefined, suspectInodes: Set<string>, signal: AbortSignal): Promise<string[]> {
    const { record, manifest } = inspection;
    const dir = releaseDir(layout, record.releaseId);
    const context: RestoreContext = { cache: this.#options.cache, signal, linkFromCache: true, ...(this.#options.fetchBlob === undefined ? {} : { fetchBlob: this.#options.fetchBlob }) };
    const paths = [...new Set(inspection.findings.map((finding) => finding.path))].filter((path) => selected === undefined || selected(path)).sort();
    const repaired: string[] = [];
    for (const path of paths) {
      const recorded = record.stats.get(path);
      if (recorded !== null && recorded !== undefined && manifest.get(path)?.type === 'file') suspectInodes.add(signatureInode(recorded));
      // The inode now there, if it is the recorded one, is the edited one (shared with other trees and the cache).
      const now = inspection.seen.get(path);
      if (now !== undefined && manifest.get(path)?.type === 'file') suspectInodes.add(signatureInode(now));
      await restoreReleaseEntry(join(dir, path), manifest.get(path) ?? null, context).catch((error: unknown) => {
        if (signal.aborted) throw error;
        throw new LockstepError('failed', `cannot put back releases/${record.releaseId}/${path} as release ${shortId(record.releaseId)} says: ${error instanceof Error ? error.message : String(error)}`);
      });
      const info = manifest.has(path) ? lstatSync(join(dir, path), { bigint: true }) : undefined;
      // A restored file was just linked from a cache copy made or checked now: hashed once more at the next check rather than trusted within the clock's granularity.
      if (info !== undefined) record.stats.set(path, info.isFile() ? null : statSignature(info));
      repaired.push(`releases/${record.releaseId}/${path}`);
    }
    return repaired;
  }

  /** Drops the cache copies that share an inode with a file of the tree whose content or mode differs. */
  async #dropEditedCopies(layout: DeployLayout, inspection: Inspection): Promise<void> {
    const dir = releaseDir(layout, inspection.record.releaseId);
    for (const finding of inspection.findings) {
      const entry = inspection.manifest.get(finding.path);
      if (entry?.type !== 'file' || (finding.kind !== 'content' && finding.kind !== 'mode')) continue;
      const dropped = await dropEditedCacheCopies(this.#options.cache, entry.sha256, entry.mode, join(dir, finding.path));
      if (dropped > 0) this.#options.logger.warn({ release: shortId(inspection.record.releaseId), path: finding.path }, 'a kept release file was edited in place, and with it its cached copy: dropped from the cache');
    }
  }

  async #recordsOnDisk(layout: DeployLayout, except: string): Promise<StatRecord[]> {
    const records: StatRecord[] = [];
    for (const releaseId of await releasesOnDisk(layout)) {
      if (releaseId === except) continue;
      const record = await this.#records.read(releaseId);
      if (record !== undefined) records.push(record);
    }
    return records;
  }

  /** Runs `work` after everything queued before it; one at a time. */
  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    return this.#queue.run(work);
  }
}

interface Holder {
  readonly record: StatRecord;
  readonly path: string;
}

/** Inode → the record entries that hold it (files only: directories and symlinks are never shared). */
function holdersByInode(records: readonly StatRecord[]): Map<string, Holder[]> {
  const holders = new Map<string, Holder[]>();
  for (const record of records) {
    for (const entry of record.manifest.entries) {
      if (entry.type !== 'file') continue;
      const signature = record.stats.get(entry.path);
      if (signature === null || signature === undefined) continue;
      const inode = signatureInode(signature);
      const list = holders.get(inode) ?? [];
      list.push({ record, path: entry.path });
      holders.set(inode, list);
    }
  }
  return holders;
}

/** The inodes of a tree's files that still matched its record, with how many of its entries link each. */
function unchangedInodes(inspection: Inspection): Map<string, { before: StatSignature; links: number }> {
  const inodes = new Map<string, { before: StatSignature; links: number }>();
  for (const entry of inspection.record.manifest.entries) {
    if (entry.type !== 'file') continue;
    const signature = inspection.seen.get(entry.path);
    if (signature === undefined || inspection.record.stats.get(entry.path) !== signature) continue;
    const inode = signatureInode(signature);
    const known = inodes.get(inode);
    inodes.set(inode, { before: signature, links: (known?.links ?? 0) + 1 });
  }
  return inodes;
}


/** A bigint lstat, or undefined when nothing is there (also when a parent was replaced by a file). */
function lstatIfThere(path: string): BigIntStats | undefined {
  try {
    return lstatSync(path, { bigint: true, throwIfNoEntry: false });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw error;
  }
}
