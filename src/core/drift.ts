/**
 * Drift: what a host's watched tree looks like (a snapshot), and the pure
 * comparison of a snapshot with a baseline snapshot or a release manifest.
 * No I/O here; the scanner in src/fim/ produces snapshots.
 */
import type { ForbiddenEntryType, ManifestEntry } from './manifest.js';

/** The kind of an entry as the scanner sees it (lstat; symlinks never followed). */
export type SnapshotEntryType = 'file' | 'dir' | 'symlink' | 'other';

/** What an `other` entry is: a release never contains these, a host may. */
export type SpecialKind = ForbiddenEntryType | 'unknown';

/**
 * Why an entry could not be fully verified: `unreadable` (open/read failed),
 * `vanished` (listed, then gone before it was examined), `loop` (a directory
 * seen twice by device and inode, e.g. through a bind mount; not descended),
 * `too-large` (above the hashing size cap; size and metadata still compared).
 */
export type EntryProblem = 'unreadable' | 'vanished' | 'loop' | 'too-large';

/** One entry of a snapshot. `path` is relative to the scanned root, '/'-separated. */
export interface SnapshotEntry {
  readonly path: string;
  readonly type: SnapshotEntryType;
  /** Permission bits including setuid, setgid and sticky (0..0o7777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** Files only, when hashed. */
  readonly sha256?: string;
  /** Symlinks only. */
  readonly target?: string;
  /** `other` entries only. */
  readonly special?: SpecialKind;
  readonly problem?: EntryProblem;
  /** A short cause for a problem (an errno code, the cap). */
  readonly detail?: string;
}

/** The attributes a finding compares, as expected and as found. */
export type Finding =
  | { readonly kind: 'added'; readonly path: string; readonly expected: null; readonly actual: SnapshotEntry }
  | { readonly kind: 'removed'; readonly path: string; readonly expected: ExpectedEntry; readonly actual: null }
  | { readonly kind: 'type'; readonly path: string; readonly expected: SnapshotEntryType; readonly actual: SnapshotEntryType }
  | { readonly kind: 'content'; readonly path: string; readonly expected: ContentDigest; readonly actual: ContentDigest }
  | { readonly kind: 'target'; readonly path: string; readonly expected: string; readonly actual: string }
  | { readonly kind: 'mode'; readonly path: string; readonly expected: number; readonly actual: number }
  | { readonly kind: 'owner'; readonly path: string; readonly expected: number; readonly actual: number }
  | { readonly kind: 'group'; readonly path: string; readonly expected: number; readonly actual: number }
  | {
      readonly kind: EntryProblem;
      readonly path: string;
      /** The expected digest, when there is one to verify against. */
      readonly expected: ContentDigest | null;
      readonly actual: { readonly detail: string };
    };

/** The kinds of findings, in the order findings of one path are listed. */
export const FINDING_KINDS = ['added', 'removed', 'type', 'target', 'content', 'mode', 'owner', 'group', 'unreadable', 'vanished', 'loop', 'too-large'] as const;

/** Size and hash of a file's content; `sha256` is absent when it was not hashed (too large, unreadable). */
export interface ContentDigest {
  readonly size: number;
  readonly sha256?: string;
}

/**
 * What the baseline says about a path: a snapshot entry, or a manifest entry
 * (no owner or group: a release does not say who owns its files).
 */
export type ExpectedEntry = SnapshotEntry | ManifestEntry;

/** Findings of `actual` against `baseline`, sorted by path and then by kind. */
export function diffSnapshot(baseline: Iterable<SnapshotEntry>, actual: Iterable<SnapshotEntry>): Finding[] {
  return diffEntries(baseline, actual, true);
}

/**
 * Findings of a scanned release tree against its manifest. uid and gid are not
 * compared (a manifest has no owner); neither are symlink modes (always 0777 on Linux).
 */
export function diffAgainstManifest(manifest: Iterable<ManifestEntry>, actual: Iterable<SnapshotEntry>): Finding[] {
  return diffEntries(manifest, actual, false);
}

function diffEntries(expected: Iterable<ExpectedEntry>, actual: Iterable<SnapshotEntry>, compareOwner: boolean): Finding[] {
  const found = new Map<string, SnapshotEntry>();
  for (const entry of actual) found.set(entry.path, entry);
  const findings: Finding[] = [];
  const seen = new Set<string>();
  for (const want of expected) {
    seen.add(want.path);
    const have = found.get(want.path);
    if (have === undefined) {
      findings.push({ kind: 'removed', path: want.path, expected: want, actual: null });
      continue;
    }
    compareEntry(want, have, compareOwner, findings);
  }
  for (const have of found.values()) {
    if (seen.has(have.path)) continue;
    findings.push({ kind: 'added', path: have.path, expected: null, actual: have });
    if (have.problem !== undefined) findings.push(problemFinding(have, null));
  }
  return sortFindings(findings);
}

function compareEntry(want: ExpectedEntry, have: SnapshotEntry, compareOwner: boolean, findings: Finding[]): void {
  const path = want.path;
  const wantType = want.type;
  // A vanished entry has no attributes worth comparing: it was there, and then not.
  if (have.problem === 'vanished') {
    findings.push(problemFinding(have, digestOf(want)));
    return;
  }
  if (wantType !== have.type || ('special' in want && want.special !== have.special)) {
    findings.push({ kind: 'type', path, expected: wantType, actual: have.type });
    if (compareOwner) pushOwner(want, have, findings);
    if (have.problem !== undefined) findings.push(problemFinding(have, null));
    return;
  }
  switch (want.type) {
    case 'symlink': {
      const wantTarget = want.target ?? '';
      const haveTarget = have.target ?? '';
      if (wantTarget !== haveTarget) findings.push({ kind: 'target', path, expected: wantTarget, actual: haveTarget });
      break;
    }
    case 'file': {
      const wantDigest = digestOf(want);
      const haveDigest = digestOf(have);
      if (wantDigest !== null && haveDigest !== null && digestsDiffer(wantDigest, haveDigest)) {
        findings.push({ kind: 'content', path, expected: wantDigest, actual: haveDigest });
      }
      break;
    }
    default:
      break;
  }
  if (want.type !== 'symlink' && want.mode !== have.mode) findings.push({ kind: 'mode', path, expected: want.mode, actual: have.mode });
  if (compareOwner) pushOwner(want, have, findings);
  if (have.problem !== undefined) findings.push(problemFinding(have, digestOf(want)));
}

function pushOwner(want: ExpectedEntry, have: SnapshotEntry, findings: Finding[]): void {
  if (!('uid' in want)) return;
  if (want.uid !== have.uid) findings.push({ kind: 'owner', path: want.path, expected: want.uid, actual: have.uid });
  if (want.gid !== have.gid) findings.push({ kind: 'group', path: want.path, expected: want.gid, actual: have.gid });
}

function digestOf(entry: ExpectedEntry): ContentDigest | null {
  if (entry.type !== 'file') return null;
  return entry.sha256 === undefined ? { size: entry.size } : { size: entry.size, sha256: entry.sha256 };
}

/** Sizes always compare; hashes only when both sides have one (a too-large file has none). */
function digestsDiffer(a: ContentDigest, b: ContentDigest): boolean {
  if (a.size !== b.size) return true;
  return a.sha256 !== undefined && b.sha256 !== undefined && a.sha256 !== b.sha256;
}

function problemFinding(entry: SnapshotEntry, expected: ContentDigest | null): Finding {
  const problem = entry.problem ?? 'unreadable';
  return { kind: problem, path: entry.path, expected, actual: { detail: entry.detail ?? problem } };
}

const KIND_ORDER = new Map<string, number>(FINDING_KINDS.map((kind, index) => [kind, index]));

function sortFindings(findings: Finding[]): Finding[] {
  return findings.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : (KIND_ORDER.get(a.kind) ?? 0) - (KIND_ORDER.get(b.kind) ?? 0)));
}

/**
 * A snapshot after a targeted re-scan: every entry of `previous` at or under
 * one of `scannedPaths` is replaced by what the re-scan found there (nothing,
 * if the path is gone). The root itself is the empty path ''.
 */
export function mergeRescan(previous: Iterable<SnapshotEntry>, scannedPaths: readonly string[], rescanned: Iterable<SnapshotEntry>): SnapshotEntry[] {
  const covered = (path: string): boolean => scannedPaths.some((scanned) => scanned === '' || path === scanned || path.startsWith(`${scanned}/`));
  const merged = new Map<string, SnapshotEntry>();
  for (const entry of previous) if (!covered(entry.path)) merged.set(entry.path, entry);
  for (const entry of rescanned) merged.set(entry.path, entry);
  return [...merged.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** How often scans run when nothing triggers them (milliseconds). */
export interface ScanIntervals {
  /** A scan that trusts the stat cache: covers what a watcher can miss. */
  readonly periodicMs: number;
  /** A scan that ignores the cache and re-hashes every file. */
  readonly fullMs: number;
}

/** The defaults of the issue: a periodic scan every 5 minutes, a full re-hash every 24 hours. */
export const DEFAULT_SCAN_INTERVALS: ScanIntervals = { periodicMs: 5 * 60_000, fullMs: 24 * 60 * 60_000 };

/** The I/O scheduling class of scanner threads: idle (only when the disk is otherwise idle), best-effort, or none (left as is). */
export type IoniceClass = 'idle' | 'best-effort' | 'none';

/** How politely the drift scanner's threads run: lockstep.yaml's `drift.scan` (see docs/drift.md). */
export interface ScanPriority {
  /** The threads' nice value, 0..19 (higher yields more CPU to other processes). */
  readonly nice: number;
  readonly ionice: IoniceClass;
  /** Bytes per second the threads may read to hash files, together; null: no cap. */
  readonly maxReadBytesPerSecond: number | null;
}

/** The defaults of issue 12: nice 10, the idle I/O class, no read-rate cap. */
export const DEFAULT_SCAN_PRIORITY: ScanPriority = { nice: 10, ionice: 'idle', maxReadBytesPerSecond: null };

/** Which scan is due at `now` given when the last ones finished (epoch ms; null = never): a full one wins. */
export function dueScan(now: number, lastScanAt: number | null, lastFullAt: number | null, intervals: ScanIntervals = DEFAULT_SCAN_INTERVALS): 'full' | 'periodic' | null {
  if (lastFullAt === null || now - lastFullAt >= intervals.fullMs) return 'full';
  const last = Math.max(lastScanAt ?? lastFullAt, lastFullAt);
  return now - last >= intervals.periodicMs ? 'periodic' : null;
}
