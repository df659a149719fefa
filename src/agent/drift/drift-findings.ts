/**
 * From the scanner's per-kind findings to what the server is told: one
 * driftFinding per path with every kind, and what the baseline expected and
 * what the host has, as wire attributes. Pure: the findings of a scope are a
 * function of its baseline and its snapshot.
 */
import { join, posix } from 'node:path';
import type { DriftEntryAttrs, DriftFinding } from '../../api/schemas.js';
import { diffAgainstManifest, diffSnapshot, type ExpectedEntry, type Finding, type SnapshotEntry } from '../../core/drift.js';
import type { ManifestEntry } from '../../core/manifest.js';
import { CURRENT_TMP_PREFIX, currentTarget } from '../release/activator.js';
import { isReleaseId } from '../release/deploy-layout.js';

/** At most this many findings go into one report (the schema's limit). */
export const MAX_REPORTED_FINDINGS = 10_000;

/** One scope's diff with the entries it was computed from. */
export interface ScopeDiff {
  readonly scope: DriftFinding['scope'];
  readonly findings: readonly Finding[];
  /** The baseline entry of a path (manifest or snapshot entry), if there is one. */
  readonly expected: (path: string) => ExpectedEntry | undefined;
  /** The scanned entry of a path, if there is one. */
  readonly actual: (path: string) => SnapshotEntry | undefined;
  /** The absolute host path of a scope-relative path. */
  readonly hostPath: (path: string) => string;
}

/** Findings grouped per path, in the order given (findings are sorted by path). */
export function groupFindings(diff: ScopeDiff): DriftFinding[] {
  const grouped: DriftFinding[] = [];
  let last: { path: string; kinds: string[] } | undefined;
  for (const finding of diff.findings) {
    if (last !== undefined && last.path === finding.path) {
      if (!last.kinds.includes(finding.kind)) last.kinds.push(finding.kind);
      continue;
    }
    const kinds = [finding.kind as string];
    last = { path: finding.path, kinds };
    const expected = diff.expected(finding.path);
    const actual = diff.actual(finding.path);
    grouped.push({
      scope: diff.scope,
      path: diff.hostPath(finding.path),
      kinds,
      expected: finding.kind === 'added' || expected === undefined ? null : expectedAttrs(expected),
      actual: finding.kind === 'removed' || actual === undefined ? null : snapshotAttrs(actual),
    });
  }
  return grouped;
}

/** The findings of every scope, capped at MAX_REPORTED_FINDINGS. */
export function cappedFindings(groups: readonly DriftFinding[][]): { findings: DriftFinding[]; truncated: boolean } {
  const all = groups.flat();
  return all.length > MAX_REPORTED_FINDINGS ? { findings: all.slice(0, MAX_REPORTED_FINDINGS), truncated: true } : { findings: all, truncated: false };
}

/** Wire attributes of a scanned entry (negative ids of an entry that vanished are left out). */
export function snapshotAttrs(entry: SnapshotEntry): DriftEntryAttrs {
  const attrs: DriftEntryAttrs = { type: entry.type };
  if (entry.problem !== 'vanished') {
    attrs.mode = entry.mode;
    if (entry.uid >= 0) attrs.uid = entry.uid;
    if (entry.gid >= 0) attrs.gid = entry.gid;
  }
  if (entry.type === 'file') attrs.size = entry.size;
  if (entry.sha256 !== undefined) attrs.sha256 = entry.sha256;
  if (entry.target !== undefined) attrs.target = entry.target.slice(0, 4096);
  if (entry.special !== undefined && entry.type === 'other') attrs.special = entry.special;
  if (entry.problem !== undefined) attrs.problem = entry.problem;
  if (entry.detail !== undefined) attrs.detail = entry.detail.slice(0, 500);
  return attrs;
}

/** Wire attributes of a baseline entry: a snapshot entry, or a manifest entry (no owner, no group). */
export function expectedAttrs(entry: ExpectedEntry): DriftEntryAttrs {
  if ('uid' in entry) return snapshotAttrs(entry);
  switch (entry.type) {
    case 'file':
      return { type: 'file', mode: entry.mode, size: entry.size, sha256: entry.sha256 };
    case 'dir':
      return { type: 'dir', mode: entry.mode };
    case 'symlink':
      return { type: 'symlink', target: entry.target.slice(0, 4096) };
  }
}

/** A short, baseline-independent digest of one scanned entry, for parity: type, mode, owner and content or target. */
export function entryDigest(entry: SnapshotEntry): string {
  const mode = entry.mode.toString(8).padStart(4, '0');
  const what = entry.sha256 ?? entry.target ?? entry.special ?? entry.problem ?? '';
  return `${entry.type} ${mode} ${entry.uid}:${entry.gid}${what === '' ? '' : ` ${what.slice(0, 200)}`}`;
}

/** The release half of a host as the monitor last saw it. */
export interface ReleaseView {
  readonly releaseId: string;
  /** DEPLOY_TO as in the config. */
  readonly deployTo: string;
  /** The release directory under --root. */
  readonly dir: string;
  /** What `current` points at (null: missing or not a symlink). */
  readonly pointer: string | null;
  /** The activated release's manifest (null: none trustworthy could be had, files are not checked). */
  readonly manifest: ReadonlyMap<string, ManifestEntry> | null;
  readonly snapshot: readonly SnapshotEntry[];
}

/** A file whose content should reach the server with the report (see DriftReporter). */
export interface ReleaseUpload {
  readonly sha256: string;
  readonly size: number;
  readonly file: string;
}

/** `${deployTo}/current/${path}`: how the server names a release file on this host. */
export function releaseHostPath(deployTo: string, path: string): string {
  return posix.join(deployTo, 'current', path);
}

/** The release-relative path of a host path under DEPLOY_TO/current/, else undefined. */
export function releaseRelative(deployTo: string, path: string): string | undefined {
  const prefix = `${posix.join(deployTo, 'current')}/`;
  const normalized = posix.normalize(path);
  return normalized.startsWith(prefix) && normalized.length > prefix.length ? normalized.slice(prefix.length) : undefined;
}

/** The release id and release-relative path of a host path under DEPLOY_TO/releases/<id>/ (a kept release), else undefined. */
export function keptRelative(deployTo: string, path: string): { releaseId: string; relative: string } | undefined {
  const prefix = `${posix.join(deployTo, 'releases')}/`;
  const normalized = posix.normalize(path);
  if (!normalized.startsWith(prefix)) return undefined;
  const [releaseId, ...rest] = normalized.slice(prefix.length).split('/');
  return releaseId !== undefined && isReleaseId(releaseId) && rest.length > 0 ? { releaseId, relative: rest.join('/') } : undefined;
}

/**
 * The release scope's findings: `current` pointing anywhere but the activated release (kind `target`), and the
 * active tree against its manifest; with the content of added and changed files to upload for `drift adopt`.
 */
export function releaseFindings(release: ReleaseView): { findings: DriftFinding[]; uploads: ReleaseUpload[] } {
  const findings: DriftFinding[] = [];
  const uploads: ReleaseUpload[] = [];
  if (release.pointer !== currentTarget(release.releaseId)) {
    findings.push({
      scope: 'release',
      path: posix.join(release.deployTo, 'current'),
      kinds: ['target'],
      expected: { type: 'symlink', target: currentTarget(release.releaseId) },
      actual: release.pointer === null ? null : { type: 'symlink', target: release.pointer.slice(0, 4096) },
    });
  }
  const manifest = release.manifest;
  if (manifest === null) return { findings, uploads };
  const actual = new Map(release.snapshot.map((entry) => [entry.path, entry]));
  const files = groupFindings({
    scope: 'release',
    findings: diffAgainstManifest(manifest.values(), release.snapshot),
    expected: (path) => manifest.get(path),
    actual: (path) => actual.get(path),
    hostPath: (path) => releaseHostPath(release.deployTo, path),
  });
  const prefix = `${posix.join(release.deployTo, 'current')}/`;
  for (const finding of files) {
    const sha256 = finding.actual?.sha256;
    if (sha256 === undefined || finding.actual?.type !== 'file' || !(finding.kinds.includes('added') || finding.kinds.includes('content'))) continue;
    uploads.push({ sha256, size: finding.actual.size ?? 0, file: join(release.dir, finding.path.slice(prefix.length)) });
  }
  findings.push(...files);
  return { findings, uploads };
}

/** One watch path as the monitor last saw it. */
export interface WatchView {
  readonly baseline: readonly SnapshotEntry[];
  readonly snapshot: readonly SnapshotEntry[];
  /** The absolute host path of a scope-relative path. */
  readonly hostPath: (path: string) => string;
}

/**
 * A watch scope's findings against its baseline. Paths the release scope owns (`deployTo`'s `current`, its
 * temporary sibling and `releases/`, when a watch path covers DEPLOY_TO) are left to it, and so are the paths
 * Lockstep is writing right now (`heldBack`).
 */
export function watchFindings(view: WatchView, deployTo: string | null, heldBack: (hostPath: string) => boolean = () => false): DriftFinding[] {
  const actual = new Map(view.snapshot.map((entry) => [entry.path, entry]));
  const expected = new Map(view.baseline.map((entry) => [entry.path, entry]));
  return groupFindings({
    scope: 'watch',
    findings: diffSnapshot(view.baseline, view.snapshot),
    expected: (path) => expected.get(path),
    actual: (path) => actual.get(path),
    hostPath: view.hostPath,
  }).filter((finding) => !(deployTo !== null && ownedByRelease(deployTo, finding.path)) && !heldBack(finding.path));
}

/**
 * Whether a host path belongs to the release scope: `current` (a hand re-point is its `target` finding), the
 * temporary link a switch renames over it, and everything under `releases/` (trees Lockstep stages and prunes,
 * checked against their manifests). A watch path covering DEPLOY_TO leaves these out, so that one change is one
 * finding and staging a release is not drift.
 */
export function ownedByRelease(deployTo: string, hostPath: string): boolean {
  const base = posix.normalize(deployTo);
  const path = posix.normalize(hostPath);
  const inside = (name: string): boolean => path === posix.join(base, name) || path.startsWith(`${posix.join(base, name)}/`);
  return inside('current') || inside('releases') || (posix.dirname(path) === base && posix.basename(path).startsWith(CURRENT_TMP_PREFIX));
}
