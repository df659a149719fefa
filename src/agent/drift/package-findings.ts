/**
 * Package drift, pure: the packages installed, upgraded or removed since the
 * package baseline become one `package` finding each, and the file findings
 * dpkg made in the same operation (files the package owns, its
 * /var/lib/dpkg/info/PKG.* files) are folded into it; a finding on a packaged
 * file that no package change explains stays, marked with its owner.
 */
import { posix } from 'node:path';
import type { DriftEntryAttrs, DriftFinding } from '../../api/schemas.js';
import { packageItemPath } from '../../core/drift-items.js';

/** One package operation as dpkg's log records it. */
export interface DpkgOperation {
  /** install, upgrade, remove or purge. */
  readonly action: string;
  /** `YYYY-MM-DD HH:MM:SS`, the host's local time as dpkg wrote it. */
  readonly at: string;
}

/** What the package half of the host looks like for one computation. */
export interface PackageView {
  /** name → version at the last deployment or accept. */
  readonly baseline: Readonly<Record<string, string>>;
  /** name → version now. */
  readonly installed: Readonly<Record<string, string>>;
  /** The last operation per package name (with and without `:arch`), from dpkg.log. */
  readonly operations: ReadonlyMap<string, DpkgOperation>;
  /** The package owning a host path (from ROOT/var/lib/dpkg/info/*.list), if any. */
  readonly ownerOf: (hostPath: string) => string | undefined;
  /**
   * Whether a packaged file's content differs from what dpkg recorded for it (md5sums, conffiles): then it was
   * edited by hand after the package operation, and stays a file finding.
   */
  readonly editedAfterDpkg: (hostPath: string) => boolean;
}

const DPKG_INFO = '/var/lib/dpkg/info/';
/** dpkg's own bookkeeping, rewritten by every package operation. */
const DPKG_BOOKKEEPING = ['/var/lib/dpkg', '/var/log/dpkg.log', '/var/cache/debconf'];

/**
 * The last install/upgrade/remove/purge of each package in dpkg.log(5) text
 * (`2024-05-01 10:00:00 upgrade nginx:amd64 1.22.1-9 1.22.1-9+deb12u1`),
 * keyed by `name:arch` and by `name`.
 */
export function parseDpkgLog(text: string): Map<string, DpkgOperation> {
  const operations = new Map<string, DpkgOperation>();
  for (const line of text.split('\n')) {
    const match = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (install|upgrade|remove|purge) (\S+) /.exec(line);
    if (!match?.[1] || !match[2] || !match[3]) continue;
    const operation = { action: match[2], at: match[1] };
    operations.set(match[3], operation);
    operations.set(match[3].split(':')[0] ?? match[3], operation);
  }
  return operations;
}

/** The package names whose version differs from the baseline (installed, upgraded, downgraded or removed), sorted. */
export function changedPackages(view: Pick<PackageView, 'baseline' | 'installed'>): string[] {
  const names = new Set([...Object.keys(view.baseline), ...Object.keys(view.installed)]);
  return [...names].filter((name) => view.baseline[name] !== view.installed[name]).sort();
}

/**
 * The package findings of `view` with the file findings attributed to them:
 * a file finding on a path a changed package owns (or its dpkg info file)
 * is left out and counted in the package's finding (`attributed` names them per package); dpkg's own database and
 * log are left out whenever a package changed; any other finding on a packaged
 * path is kept with `ownedBy`.
 */
export function withPackageFindings(fileFindings: readonly DriftFinding[], view: PackageView): { findings: DriftFinding[]; attributed: Map<string, string[]> } {
  const changed = new Set(changedPackages(view));
  const attributed = new Map<string, string[]>();
  const kept: DriftFinding[] = [];
  for (const finding of fileFindings) {
    const owner = finding.scope === 'package' ? undefined : ownerOfPath(finding.path, view.ownerOf);
    if (owner !== undefined && changed.has(owner) && !view.editedAfterDpkg(finding.path)) {
      attributed.set(owner, [...(attributed.get(owner) ?? []), finding.path]);
      continue;
    }
    if (changed.size > 0 && DPKG_BOOKKEEPING.some((path) => finding.path === path || finding.path.startsWith(`${path}/`))) continue;
    kept.push(owner === undefined ? finding : markOwner(finding, owner));
  }
  const packages = [...changed].map((name) => packageFinding(name, view, attributed.get(name)?.length ?? 0));
  return { findings: [...packages, ...kept], attributed };
}

/** The owner of a path: from dpkg's file lists, or the package of a /var/lib/dpkg/info/PKG.* file. */
function ownerOfPath(path: string, ownerOf: (hostPath: string) => string | undefined): string | undefined {
  if (path.startsWith(DPKG_INFO)) {
    const file = posix.basename(path);
    const dot = file.lastIndexOf('.');
    if (dot > 0) return file.slice(0, dot);
  }
  return ownerOf(path);
}

function markOwner(finding: DriftFinding, owner: string): DriftFinding {
  if (finding.actual !== null) return { ...finding, actual: { ...finding.actual, ownedBy: owner } };
  if (finding.expected !== null) return { ...finding, expected: { ...finding.expected, ownedBy: owner } };
  return finding;
}

function packageFinding(name: string, view: PackageView, files: number): DriftFinding {
  const before = view.baseline[name];
  const after = view.installed[name];
  const operation = view.operations.get(name) ?? view.operations.get(name.split(':')[0] ?? name);
  const how = operation === undefined ? 'not in dpkg.log (changed by another tool, or the log was rotated)' : `${operation.action} by dpkg at ${operation.at} (dpkg.log)`;
  const detail = `${how}${files > 0 ? `; ${files} ${files === 1 ? 'file' : 'files'} changed with it` : ''}`;
  const attrs = (version: string, withDetail: boolean): DriftEntryAttrs => ({ type: 'other', special: 'package', version, ...(withDetail ? { detail: detail.slice(0, 500) } : {}) });
  return {
    scope: 'package',
    path: packageItemPath(name),
    kinds: ['package'],
    expected: before === undefined ? null : attrs(before, after === undefined),
    actual: after === undefined ? null : attrs(after, true),
  };
}

/** `MD5  relative/path` lines of ROOT/var/lib/dpkg/info/PKG.md5sums: absolute host path → md5. */
export function parseMd5sums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^([0-9a-f]{32}) {2}(.+)$/.exec(line);
    if (match?.[1] && match[2]) sums.set(`/${match[2].replace(/^\/+/, '')}`, match[1]);
  }
  return sums;
}

/** The Conffiles of every installed package in a dpkg status file: host path → md5 as installed (conffiles are not in md5sums). */
export function parseConffiles(status: string): Map<string, string> {
  const sums = new Map<string, string>();
  for (const match of status.matchAll(/^Conffiles:\n((?:[ \t].*\n?)*)/gm)) {
    for (const line of (match[1] ?? '').split('\n')) {
      const [path, md5] = line.trim().split(/\s+/);
      if (path?.startsWith('/') && md5 !== undefined && /^[0-9a-f]{32}$/.test(md5)) sums.set(path, md5);
    }
  }
  return sums;
}
