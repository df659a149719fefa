/**
 * The system parts a release may carry besides its tree: managed files
 * (host paths written from a file of the release, optionally a template) and
 * OS packages (a .deb of the release, or a name and version for the host's
 * apt). They travel in the manifest (`system`), so the release id covers
 * them, and every boundary checks them with `systemPartsProblems`.
 */
import { posix } from 'node:path';
import { pathProblem, type ManifestEntry, type ManifestProblem } from './manifest.js';

/** One host file a release manages. */
export interface ManagedFile {
  /** Absolute host path (under the agent's --root). */
  readonly path: string;
  /** A file of the release tree (relative path). */
  readonly source: string;
  /** Permission bits of the written file (0..0777). */
  readonly mode: number;
  /** `user` or `user:group`, resolved on the host; absent: the file keeps its owner (or gets the agent's). */
  readonly owner?: string | undefined;
  /** Whether `source` is a Mustache template rendered on the host (see template.ts). */
  readonly template: boolean;
  /** Run once per deployment, in the release dir like hooks, when any file naming it changed. */
  readonly afterChange?: string | undefined;
}

/** A package installed from a .deb file of the release: its bytes are the release's, so every environment installs the same. */
export interface DebPackage {
  readonly kind: 'deb';
  /** The .deb in the release tree (relative path). */
  readonly deb: string;
  /** Package name, version and architecture, read from the .deb's control file when the release was created. */
  readonly name: string;
  readonly version: string;
  readonly architecture: string;
}
/** A package the host's apt resolves by name and exact version. */
export interface AptPackage {
  readonly kind: 'apt';
  readonly name: string;
  readonly version: string;
}
/** One package a release declares. */
export type DeclaredPackage = DebPackage | AptPackage;

/** What a release declares about the host beyond its tree. */
export interface SystemParts {
  readonly files: readonly ManagedFile[];
  readonly packages: readonly DeclaredPackage[];
}

/** The name of the optional file in a release dir that declares its system parts. */
export const RELEASE_PARTS_FILE = 'lockstep-release.yaml';

const OWNER = /^([a-z_][a-z0-9_-]*\$?|\d+)(:([a-z_][a-z0-9_-]*\$?|\d+))?$/;
/** dpkg's rules for package names (policy 5.6.1). */
export const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
/** dpkg's rules for versions: [epoch:]upstream[-revision], upstream starting with a digit. */
export const PACKAGE_VERSION = /^(\d+:)?\d[A-Za-z0-9.+~:-]*$/;

/** The canonical form: files sorted by path, packages by name, only the fields of each kind. */
export function canonicalSystemParts(parts: SystemParts): SystemParts {
  const files = [...parts.files]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((file): ManagedFile => ({
      path: file.path,
      source: file.source,
      mode: file.mode,
      template: file.template,
      ...(file.owner === undefined ? {} : { owner: file.owner }),
      ...(file.afterChange === undefined ? {} : { afterChange: file.afterChange }),
    }));
  const packages = [...parts.packages]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((declared): DeclaredPackage =>
      declared.kind === 'deb'
        ? { kind: 'deb', deb: declared.deb, name: declared.name, version: declared.version, architecture: declared.architecture }
        : { kind: 'apt', name: declared.name, version: declared.version },
    );
  return { files, packages };
}

/** Why a managed host path is not acceptable, or undefined. */
export function hostPathProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return 'must be an absolute host path (starting with /)';
  if (path.includes('\0')) return 'contains a NUL byte';
  if (path.split('/').includes('..')) return 'must not contain ".." segments';
  if (path === '/' || path.endsWith('/')) return 'must name a file, not a directory';
  if (posix.normalize(path) !== path) return 'must be normalized (no "//" or "." segments)';
  return undefined;
}

/** Whether `path` is `dir` or inside it (both absolute, normalized). */
export function isInside(path: string, dir: string): boolean {
  const base = dir.endsWith('/') ? dir : `${dir}/`;
  return path === dir || path.startsWith(base);
}

/**
 * Every problem of a release's system parts against its tree (all of them):
 * host paths, sources and .deb files that must be files of the release,
 * modes, owners, package names and versions, duplicates. `deployTo`, when
 * known, is refused as a place for managed files: the release tree lives there.
 */
export function systemPartsProblems(parts: SystemParts, entries: readonly ManifestEntry[], deployTo?: string): ManifestProblem[] {
  const problems: ManifestProblem[] = [];
  const files = new Set(entries.filter((entry) => entry.type === 'file').map((entry) => entry.path));
  const paths = new Set<string>();
  parts.files.forEach((file, index) => {
    const where = `system.files[${index}]`;
    const hostProblem = hostPathProblem(file.path);
    if (hostProblem) problems.push({ path: `${where}.path`, problem: `${file.path}: ${hostProblem}` });
    else if (deployTo !== undefined && (isInside(file.path, deployTo) || isInside(deployTo, file.path))) {
      problems.push({ path: `${where}.path`, problem: `${file.path} is inside deploy_to (${deployTo}), where the release tree itself lives; manage files outside it` });
    }
    if (paths.has(file.path)) problems.push({ path: `${where}.path`, problem: `${file.path} is managed twice` });
    paths.add(file.path);
    const sourceProblem = pathProblem(file.source);
    if (sourceProblem) problems.push({ path: `${where}.source`, problem: `${file.source}: ${sourceProblem}` });
    else if (!files.has(file.source)) problems.push({ path: `${where}.source`, problem: `${file.source} is not a file of the release` });
    if (!Number.isInteger(file.mode) || file.mode < 0 || file.mode > 0o777) problems.push({ path: `${where}.mode`, problem: 'mode must be permission bits between 0 and 0777' });
    if (file.owner !== undefined && !OWNER.test(file.owner)) problems.push({ path: `${where}.owner`, problem: `owner "${file.owner}" must be user or user:group (names or numeric ids)` });
    if (file.afterChange !== undefined && (file.afterChange.trim() === '' || file.afterChange.length > 4096)) {
      problems.push({ path: `${where}.after_change`, problem: 'after_change must be a command of 1 to 4096 characters' });
    }
  });
  const names = new Set<string>();
  parts.packages.forEach((declared, index) => {
    const where = `system.packages[${index}]`;
    if (!PACKAGE_NAME.test(declared.name)) problems.push({ path: `${where}.name`, problem: `"${declared.name}" is not a package name (lowercase letters, digits, + . -)` });
    if (!PACKAGE_VERSION.test(declared.version)) problems.push({ path: `${where}.version`, problem: `"${declared.version}" is not a package version` });
    if (names.has(declared.name)) problems.push({ path: `${where}.name`, problem: `package ${declared.name} is declared twice` });
    names.add(declared.name);
    if (declared.kind === 'deb') {
      const debProblem = pathProblem(declared.deb);
      if (debProblem) problems.push({ path: `${where}.deb`, problem: `${declared.deb}: ${debProblem}` });
      else if (!files.has(declared.deb)) problems.push({ path: `${where}.deb`, problem: `${declared.deb} is not a file of the release` });
      else if (!declared.deb.endsWith('.deb')) problems.push({ path: `${where}.deb`, problem: `${declared.deb} does not end in .deb` });
    }
  });
  return problems;
}

/** The change to one package between two releases' declarations (or a host's installed set). */
export type PackageChange =
  | { readonly action: 'install'; readonly name: string; readonly to: string }
  | { readonly action: 'upgrade' | 'downgrade'; readonly name: string; readonly from: string; readonly to: string }
  | { readonly action: 'remove'; readonly name: string; readonly from: string };

/**
 * What moving from `from` to `to` does to packages: installs, upgrades,
 * downgrades (by dpkg's version order) and removals, sorted by name.
 * Unchanged packages are left out.
 */
export function packageChanges(from: ReadonlyMap<string, string>, to: ReadonlyMap<string, string>): PackageChange[] {
  const changes: PackageChange[] = [];
  for (const [name, version] of to) {
    const before = from.get(name);
    if (before === undefined) changes.push({ action: 'install', name, to: version });
    else if (before !== version) changes.push({ action: compareDebianVersions(version, before) > 0 ? 'upgrade' : 'downgrade', name, from: before, to: version });
  }
  for (const [name, version] of from) if (!to.has(name)) changes.push({ action: 'remove', name, from: version });
  return changes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Package name → version of a release's declarations. */
export function declaredVersions(parts: SystemParts | undefined): Map<string, string> {
  return new Map((parts?.packages ?? []).map((declared) => [declared.name, declared.version]));
}

/** dpkg's version order (deb-version(7)): negative when a < b, 0 when equal, positive when a > b. */
export function compareDebianVersions(a: string, b: string): number {
  const split = (version: string) => {
    const colon = version.indexOf(':');
    const epoch = colon > 0 ? Number(version.slice(0, colon)) : 0;
    const rest = colon > 0 ? version.slice(colon + 1) : version;
    const dash = rest.lastIndexOf('-');
    return { epoch, upstream: dash >= 0 ? rest.slice(0, dash) : rest, revision: dash >= 0 ? rest.slice(dash + 1) : '0' };
  };
  const left = split(a);
  const right = split(b);
  if (left.epoch !== right.epoch) return left.epoch - right.epoch;
  return comparePart(left.upstream, right.upstream) || comparePart(left.revision, right.revision);
}

function order(char: string | undefined): number {
  if (char === undefined) return 0;
  if (char === '~') return -1;
  if (/[A-Za-z]/.test(char)) return char.charCodeAt(0);
  return char.charCodeAt(0) + 256;
}

function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // The non-digit prefixes, character by character ('~' sorts before everything, even the end).
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const left = i < a.length && !isDigit(a[i]) ? order(a[i]) : 0;
      const right = j < b.length && !isDigit(b[j]) ? order(b[j]) : 0;
      if (left !== right) return left - right;
      if (i < a.length && !isDigit(a[i])) i++;
      if (j < b.length && !isDigit(b[j])) j++;
    }
    let left = '';
    let right = '';
    while (i < a.length && isDigit(a[i])) left += a[i++];
    while (j < b.length && isDigit(b[j])) right += b[j++];
    const difference = Number(left || '0') - Number(right || '0');
    if (difference !== 0) return difference;
  }
  return 0;
}

function isDigit(char: string | undefined): boolean {
  return char !== undefined && char >= '0' && char <= '9';
}
