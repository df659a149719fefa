/**
 * Parity: how closely two environments match on the same work, apart from
 * the differences they declare. A pure comparison of what the server knows
 * (active releases, vars, secret digests, the facts agents reported), tested without I/O.
 */
import { diffManifests } from './manifest-diff.js';
import { shortId, type Manifest } from './manifest.js';

/** What an agent reports about its host (see hostFacts in src/api/schemas.ts). */
export interface HostFacts {
  /** ID and VERSION_ID of os-release ('' when unknown). */
  readonly os: { readonly id: string; readonly version: string };
  readonly kernel: string;
  readonly arch: string;
  /** Installed packages, name → version; null when the host has no package database Lockstep can read. */
  readonly packages: { readonly manager: 'dpkg' | 'rpm'; readonly installed: Readonly<Record<string, string>> } | null;
  /** Absolute host path → digest of the watched entry as it is now. */
  readonly watched: Readonly<Record<string, string>>;
  /** Units, users, sysctl values, ports, mounts, modules (absent: an agent older than these facts). */
  readonly system?: SystemFacts | undefined;
  /** Files the active release manages on the host (lockstep-release.yaml), path → digest of the rendered content as written (absent: an older agent). */
  readonly managed?: Readonly<Record<string, string>> | undefined;
}

/** The system facts compared one by one, each declared as `CATEGORY:NAME` (e.g. `service:nginx.service`, `port:443`). */
export const SYSTEM_CATEGORIES = ['service', 'user', 'group', 'sysctl', 'port', 'mount', 'module'] as const;
export type SystemCategory = (typeof SYSTEM_CATEGORIES)[number];

/** Per category, name → value; a category left out was not read (e.g. running units in a sandbox), so it is not compared. */
export type SystemFactSet = Readonly<Partial<Record<SystemCategory, Readonly<Record<string, string>>>>>;

/** System facts by source: read from files under the agent's --root, or from the live system (the kernel, systemd). */
export interface SystemFacts {
  readonly configured: SystemFactSet;
  readonly live: SystemFactSet;
}

/** One host as parity sees it. */
export interface ParityHost {
  readonly name: string;
  /** The release `current` points at, as the agent last said. */
  readonly releaseId: string | null;
  /** null: the agent has not reported facts yet. */
  readonly facts: HostFacts | null;
}

/** One environment as parity sees it. */
export interface ParityEnvironment {
  readonly name: string;
  /** The environment's active release (null: nothing deployed). */
  readonly release: { readonly id: string; readonly version: string; readonly manifest: Manifest } | null;
  readonly vars: Readonly<Record<string, string>>;
  /** Secret name → a keyed digest of its value: equal digests, equal values; never a value itself. */
  readonly secrets: Readonly<Record<string, string>>;
  /** Its `declared_differences`: var names, `secret:NAME`, `fact:NAME`, `package:NAME`, `watch:PATH`, `CATEGORY:NAME` of SYSTEM_CATEGORIES. */
  readonly declared: readonly string[];
  readonly hosts: readonly ParityHost[];
  /**
   * The names each managed-file template of the active release inserts (`vars.PORT`, `host.name`), by host
   * path: a rendered difference that comes from a declared difference is declared too (absent: none known).
   */
  readonly templates?: Readonly<Record<string, readonly string[]>> | undefined;
}

export type ParityCategory = 'release' | 'var' | 'secret' | 'fact' | 'package' | 'file' | 'watched' | SystemCategory;

/** The facts compared by name (`fact:NAME` declares one). */
export const FACT_NAMES = ['os', 'kernel', 'arch'] as const;

/** A file whose entry differs between the two active releases. */
export interface ParityFile {
  readonly path: string;
  /** The environment whose release alone has the path; null when both have it, differently. */
  readonly onlyIn: string | null;
}

/** One difference: between the environments, or (with `within`) between two hosts of one environment. */
export interface ParityDifference {
  readonly category: ParityCategory;
  /** The var, secret, fact or package name, the watched path; `release` for the release. */
  readonly name: string;
  /**
   * The values on each side, keyed by environment name (or, within an
   * environment, by host name), sorted; empty: absent (a missing var, a
   * package not installed, nothing deployed). A secret's value is never shown: `differs` on
   * both sides when both have it, else `set` on the side that has it.
   */
  readonly values: Readonly<Record<string, readonly string[]>>;
  /** Named in declared_differences, so intended. */
  readonly declared: boolean;
  /** Set when two hosts of one environment differ: `host` differs from `reference`, which holds the most common value. */
  readonly within: { readonly env: string; readonly host: string; readonly reference: string } | null;
  /** A system fact read from the live system (kernel, systemd), not from files under the agent's root. */
  readonly live?: boolean;
  /** For the release: the files that differ (at most MAX_FILES; `fileCount` says how many in all). */
  readonly files?: readonly ParityFile[];
  readonly fileCount?: number;
}

/** The comparison of two environments. */
export interface ParityResult {
  readonly a: string;
  readonly b: string;
  /** Percent (one decimal) of compared items that are equal or differ only as declared; 100 when nothing undeclared remains. */
  readonly score: number;
  /** Items compared (a var, a fact, a package, a path, a release; between the environments and within each). */
  readonly compared: number;
  readonly equal: number;
  /** Items that differ, but only as declared. */
  readonly declared: number;
  /** Items with at least one undeclared difference. */
  readonly undeclared: number;
  readonly differences: readonly ParityDifference[];
  /** What could not be compared and why (a host that reported no facts yet, an environment without hosts). */
  readonly notes: readonly string[];
}

/** At most this many differing files are listed per release difference. */
export const MAX_FILES = 1000;

const CATEGORY_ORDER: readonly ParityCategory[] = ['release', 'var', 'secret', 'fact', 'package', 'file', 'watched', ...SYSTEM_CATEGORIES];
const SOURCES = ['configured', 'live'] as const;

/** Compares environment `a` with environment `b`. */
export function compareEnvironments(a: ParityEnvironment, b: ParityEnvironment): ParityResult {
  const tally = new Tally();
  const notes: string[] = [];
  const declaredBetween = declarations([...a.declared, ...b.declared]);

  compareReleases(a, b, tally);
  for (const key of union(Object.keys(a.vars), Object.keys(b.vars))) {
    const values = { [a.name]: present(a.vars[key]), [b.name]: present(b.vars[key]) };
    tally.item(sameValues(values) ? [] : [{ category: 'var', name: key, values, declared: declaredBetween.var(key), within: null }]);
  }
  for (const name of union(Object.keys(a.secrets), Object.keys(b.secrets))) {
    const digestA = a.secrets[name];
    const digestB = b.secrets[name];
    if (digestA === digestB) {
      tally.item([]);
      continue;
    }
    const shown = (digest: string | undefined) => (digest === undefined ? [] : [digestA !== undefined && digestB !== undefined ? 'differs' : 'set']);
    tally.item([{ category: 'secret', name, values: { [a.name]: shown(digestA), [b.name]: shown(digestB) }, declared: declaredBetween.secret(name), within: null }]);
  }

  const factsA = reported(a, notes);
  const factsB = reported(b, notes);
  if (factsA.length > 0 && factsB.length > 0) {
    for (const fact of FACT_NAMES) {
      const values = { [a.name]: distinct(factsA.map((host) => factValue(host.facts, fact))), [b.name]: distinct(factsB.map((host) => factValue(host.facts, fact))) };
      tally.item(sameValues(values) ? [] : [{ category: 'fact', name: fact, values, declared: declaredBetween.fact(fact), within: null }]);
    }
    const packagesA = factsA.filter((host) => host.facts.packages !== null);
    const packagesB = factsB.filter((host) => host.facts.packages !== null);
    if (packagesA.length > 0 && packagesB.length > 0) {
      for (const name of union(...[...packagesA, ...packagesB].map((host) => Object.keys(host.facts.packages?.installed ?? {})))) {
        const values = { [a.name]: distinct(packagesA.map((host) => host.facts.packages?.installed[name])), [b.name]: distinct(packagesB.map((host) => host.facts.packages?.installed[name])) };
        tally.item(sameValues(values) ? [] : [{ category: 'package', name, values, declared: declaredBetween.package(name), within: null }]);
      }
    } else {
      for (const [env, hosts] of [[a.name, packagesA], [b.name, packagesB]] as const) {
        if (hosts.length === 0) notes.push(`packages not compared: no host of ${env} reported a package database (dpkg or rpm)`);
      }
    }
    const managedA = factsA.filter((host) => host.facts.managed !== undefined);
    const managedB = factsB.filter((host) => host.facts.managed !== undefined);
    if (managedA.length > 0 && managedB.length > 0) {
      for (const path of union(...[...managedA, ...managedB].map((host) => Object.keys(host.facts.managed ?? {})))) {
        const values = { [a.name]: distinct(managedA.map((host) => host.facts.managed?.[path])), [b.name]: distinct(managedB.map((host) => host.facts.managed?.[path])) };
        const declared = declaredBetween.file(path) || renderedFromDeclared([a.templates?.[path], b.templates?.[path]], declaredBetween, true);
        tally.item(sameValues(values) ? [] : [{ category: 'file', name: path, values, declared, within: null }]);
      }
    }
    for (const path of union(...[...factsA, ...factsB].map((host) => Object.keys(host.facts.watched)))) {
      const values = { [a.name]: distinct(factsA.map((host) => host.facts.watched[path])), [b.name]: distinct(factsB.map((host) => host.facts.watched[path])) };
      tally.item(sameValues(values) ? [] : [{ category: 'watched', name: path, values, declared: declaredBetween.watched(path), within: null }]);
    }
    compareSystemBetween(a.name, factsA, b.name, factsB, declaredBetween, tally);
  } else {
    const silent = [factsA.length === 0 ? a.name : undefined, factsB.length === 0 ? b.name : undefined].filter((name) => name !== undefined);
    notes.push(`host facts not compared: no host of ${silent.join(' or ')} reported any`);
  }

  for (const env of [a, b]) compareHostsWithin(env, tally);

  const differences = tally.differences.sort(byOrder);
  const score = tally.compared === 0 ? 100 : Math.floor((1000 * (tally.compared - tally.undeclared)) / tally.compared) / 10;
  return { a: a.name, b: b.name, score, compared: tally.compared, equal: tally.compared - tally.declared - tally.undeclared, declared: tally.declared, undeclared: tally.undeclared, differences, notes };
}

/** Each system category of each source, compared between the hosts of `a` and `b` that read it. */
function compareSystemBetween(a: string, factsA: readonly Reported[], b: string, factsB: readonly Reported[], declared: Declarations, tally: Tally): void {
  for (const source of SOURCES) {
    for (const category of SYSTEM_CATEGORIES) {
      const read = (hosts: readonly Reported[]) => hosts.filter((host) => host.facts.system?.[source][category] !== undefined);
      const hostsA = read(factsA);
      const hostsB = read(factsB);
      if (hostsA.length === 0 || hostsB.length === 0) continue;
      const valueOf = (host: Reported, name: string) => host.facts.system?.[source][category]?.[name];
      for (const name of union(...[...hostsA, ...hostsB].map((host) => Object.keys(host.facts.system?.[source][category] ?? {})))) {
        const values = { [a]: distinct(hostsA.map((host) => valueOf(host, name))), [b]: distinct(hostsB.map((host) => valueOf(host, name))) };
        tally.item(sameValues(values) ? [] : [{ category, name, values, declared: declared.system(category, name), within: null, ...(source === 'live' ? { live: true } : {}) }]);
      }
    }
  }
}

/** Counts compared items and collects their differences. */
class Tally {
  compared = 0;
  declared = 0;
  undeclared = 0;
  readonly differences: ParityDifference[] = [];

  /** One compared item and its differences (none: equal). */
  item(differences: readonly ParityDifference[]): void {
    this.compared += 1;
    if (differences.length === 0) return;
    if (differences.every((difference) => difference.declared)) this.declared += 1;
    else this.undeclared += 1;
    this.differences.push(...differences);
  }
}

function compareReleases(a: ParityEnvironment, b: ParityEnvironment, tally: Tally): void {
  if (a.release?.id === b.release?.id) return tally.item([]);
  const values = { [a.name]: a.release ? [releaseLabel(a.release)] : [], [b.name]: b.release ? [releaseLabel(b.release)] : [] };
  let files: ParityFile[] = [];
  if (a.release && b.release) {
    const diff = diffManifests(a.release.manifest, b.release.manifest);
    files = [
      ...diff.removed.map((path) => ({ path, onlyIn: a.name })),
      ...diff.added.map((path) => ({ path, onlyIn: b.name })),
      ...diff.changed.map((path) => ({ path, onlyIn: null })),
    ].sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  }
  // An active release is never a declared difference: parity is the proof that production runs what passed test.
  tally.item([{ category: 'release', name: 'release', values, declared: false, within: null, files: files.slice(0, MAX_FILES), fileCount: files.length }]);
}

function releaseLabel(release: { readonly id: string; readonly version: string }): string {
  return `${release.version} (${shortId(release.id)})`;
}

type Reported = ParityHost & { readonly facts: HostFacts };

function reported(env: ParityEnvironment, notes: string[]): Reported[] {
  if (env.hosts.length === 0) notes.push(`${env.name} has no hosts`);
  const missing = env.hosts.filter((host) => host.facts === null).map((host) => host.name);
  if (missing.length > 0) notes.push(`no facts reported yet by ${missing.join(', ')} (${env.name})`);
  return env.hosts.filter((host): host is Reported => host.facts !== null);
}

function factValue(facts: HostFacts, fact: (typeof FACT_NAMES)[number]): string {
  switch (fact) {
    case 'os':
      return `${facts.os.id} ${facts.os.version}`.trim();
    case 'kernel':
      return facts.kernel;
    case 'arch':
      return facts.arch;
  }
}

/**
 * Hosts of one environment that differ from the others. Per item the most
 * common value is the reference (a tie goes to the value of the first host
 * by name), and every host holding another value is one difference.
 */
function compareHostsWithin(env: ParityEnvironment, tally: Tally): void {
  const declared = declarations(env.declared);
  const hosts = [...env.hosts].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const item = (category: ParityCategory, name: string, valueOf: (host: Reported) => string | undefined, among: readonly Reported[], isDeclared: boolean, live = false) => {
    if (among.length < 2) return;
    const byHost = among.map((host) => ({ host: host.name, value: valueOf(host) }));
    const counts = new Map<string | undefined, number>();
    for (const { value } of byHost) counts.set(value, (counts.get(value) ?? 0) + 1);
    let reference = byHost[0] as { host: string; value: string | undefined };
    for (const candidate of byHost) if ((counts.get(candidate.value) ?? 0) > (counts.get(reference.value) ?? 0)) reference = candidate;
    tally.item(
      byHost
        .filter((entry) => entry.value !== reference.value)
        .map((entry) => ({
          category,
          name,
          values: { [reference.host]: present(reference.value), [entry.host]: present(entry.value) },
          declared: isDeclared,
          within: { env: env.name, host: entry.host, reference: reference.host },
          ...(live ? { live: true } : {}),
        })),
    );
  };

  // A host's release counts even without facts: it comes from its heartbeats.
  const all = hosts.map((host) => ({ ...host, facts: host.facts ?? EMPTY_FACTS }));
  item('release', 'release', (host) => (host.releaseId === null ? undefined : host.releaseId === env.release?.id ? releaseLabel(env.release) : shortId(host.releaseId)), all, false);
  const withFacts = hosts.filter((host): host is Reported => host.facts !== null);
  for (const fact of FACT_NAMES) item('fact', fact, (host) => factValue(host.facts, fact), withFacts, declared.fact(fact));
  const withPackages = withFacts.filter((host) => host.facts.packages !== null);
  for (const name of union(...withPackages.map((host) => Object.keys(host.facts.packages?.installed ?? {})))) {
    item('package', name, (host) => host.facts.packages?.installed[name], withPackages, declared.package(name));
  }
  const withManaged = withFacts.filter((host) => host.facts.managed !== undefined);
  for (const path of union(...withManaged.map((host) => Object.keys(host.facts.managed ?? {})))) {
    item('file', path, (host) => host.facts.managed?.[path], withManaged, declared.file(path) || renderedFromDeclared([env.templates?.[path]], declared, false));
  }
  for (const path of union(...withFacts.map((host) => Object.keys(host.facts.watched)))) {
    item('watched', path, (host) => host.facts.watched[path], withFacts, declared.watched(path));
  }
  for (const source of SOURCES) {
    for (const category of SYSTEM_CATEGORIES) {
      const among = withFacts.filter((host) => host.facts.system?.[source][category] !== undefined);
      for (const name of union(...among.map((host) => Object.keys(host.facts.system?.[source][category] ?? {})))) {
        item(category, name, (host) => host.facts.system?.[source][category]?.[name], among, declared.system(category, name), source === 'live');
      }
    }
  }
}

const EMPTY_FACTS: HostFacts = { os: { id: '', version: '' }, kernel: '', arch: '', packages: null, watched: {} };

type Declarations = ReturnType<typeof declarations>;

/** Which differences a list of declared_differences entries declares. */
function declarations(entries: readonly string[]) {
  const set = new Set(entries);
  const watchPaths = entries.filter((entry) => entry.startsWith('watch:')).map((entry) => entry.slice('watch:'.length).replace(/\/+$/, ''));
  return {
    var: (key: string) => set.has(key),
    secret: (name: string) => set.has(`secret:${name}`),
    fact: (name: string) => set.has(`fact:${name}`),
    package: (name: string) => set.has(`package:${name}`),
    file: (path: string) => set.has(`file:${path}`),
    // A declared directory declares everything under it.
    watched: (path: string) => watchPaths.some((declared) => path === declared || path.startsWith(`${declared}/`)),
    // `port:443` declares 443/tcp and 443/udp; `port:443/tcp` only the one.
    system: (category: SystemCategory, name: string) => set.has(`${category}:${name}`) || (category === 'port' && set.has(`port:${name.split('/')[0] ?? ''}`)),
  };
}

/**
 * Whether a managed file's rendered content may differ because its template inserts something declared
 * to differ: a declared var (`vars.NAME`) or secret (`secret:NAME`), the host's name (hosts always
 * differ), or, between environments, the environment's name.
 */
function renderedFromDeclared(templates: readonly (readonly string[] | undefined)[], declared: Declarations, betweenEnvironments: boolean): boolean {
  return templates.some((names) =>
    (names ?? []).some(
      (name) =>
        name === 'host.name' ||
        (betweenEnvironments && name === 'env') ||
        (name.startsWith('vars.') && declared.var(name.slice('vars.'.length))) ||
        (name.startsWith('secrets.') && declared.secret(name.slice('secrets.'.length))),
    ),
  );
}

function present(value: string | undefined): string[] {
  return value === undefined ? [] : [value];
}

function distinct(values: readonly (string | undefined)[]): string[] {
  return [...new Set(values.filter((value): value is string => value !== undefined))].sort();
}

function union(...lists: readonly (readonly string[])[]): string[] {
  return [...new Set(lists.flat())].sort();
}

function sameValues(values: Readonly<Record<string, readonly string[]>>): boolean {
  const [first, ...rest] = Object.values(values).map((list) => list.join('\n'));
  return rest.every((other) => other === first);
}

function byOrder(x: ParityDifference, y: ParityDifference): number {
  return (
    CATEGORY_ORDER.indexOf(x.category) - CATEGORY_ORDER.indexOf(y.category) ||
    Number(x.within !== null) - Number(y.within !== null) ||
    (x.within?.env ?? '').localeCompare(y.within?.env ?? '') ||
    (x.name < y.name ? -1 : x.name > y.name ? 1 : 0) ||
    (x.within?.host ?? '').localeCompare(y.within?.host ?? '')
  );
}
