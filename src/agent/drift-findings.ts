/**
 * From the scanner's per-kind findings to what the server is told: one
 * driftFinding per path with every kind, and what the baseline expected and
 * what the host has, as wire attributes.
 */
import type { DriftEntryAttrs, DriftFinding } from '../api/schemas.js';
import type { ExpectedEntry, Finding, SnapshotEntry } from '../core/drift.js';

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
