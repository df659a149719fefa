/**
 * The package half of the drift monitor: reads dpkg's status database under
 * --root (the same parser as the host facts), the file lists of
 * ROOT/var/lib/dpkg/info and dpkg.log when the database changed, and keeps the
 * package baseline (STATE_DIR/drift/package-baseline.json). The baseline is
 * taken on the very first start, at every deployment, on `drift accept` of a
 * package and after Lockstep's own package operations (ownChange): nothing
 * else moves it, so a package changed by anyone else is drift.
 */
import { watch, type FSWatcher } from 'node:fs';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { DriftFinding } from '../../api/schemas.js';
import { ifMissing } from '../../core/errors.js';
import { parseDpkgStatus } from '../host-facts.js';
import type { DriftStateDir } from './drift-state.js';
import { packageNameOf } from '../../core/drift-items.js';
import { aptArchives, cachedDeb } from '../system/host-capture.js';
import { changedPackages, parseConffiles, parseDpkgLog, parseMd5sums, withPackageFindings, type DpkgOperation } from './package-findings.js';

/** A cached .deb of a changed package's new version, hashed. */
interface CachedDeb {
  readonly file: string;
  readonly architecture: string;
  readonly size: number;
  readonly sha256: string;
}

/** Reads packages and holds their baseline. */
export class PackageWatch {
  readonly #root: string;
  readonly #state: DriftStateDir;
  readonly #log: Logger;
  #signature: string | undefined;
  /** null: the host has no dpkg database (no package drift). */
  #installed: Record<string, string> | null = null;
  #baseline: Record<string, string> | undefined;
  /** The stored baseline was looked for (once: a host without dpkg has none to read every scan). */
  #baselineRead = false;
  #operations: ReadonlyMap<string, DpkgOperation> = new Map();
  /** Package → the paths of its file list; a removed package's list is kept while the baseline still has it. */
  #files = new Map<string, readonly string[]>();
  #owners = new Map<string, string>();
  /** Conffiles of the installed packages: host path → md5 dpkg recorded. */
  #conffiles = new Map<string, string>();
  /** Packaged files of changed packages whose content is no longer what dpkg recorded (hand edits after the operation). */
  #edited = new Set<string>();
  /** host path → md5 of its content, with the size and mtime it was computed for. */
  readonly #md5Cache = new Map<string, { readonly signature: string; readonly md5: string }>();
  #attributed = new Map<string, string[]>();
  /** `name=version` → the .deb apt left in its cache for that version (null: none), hashed for drift adopt; per archives dir state. */
  #debs = new Map<string, CachedDeb | null>();
  #archivesSignature: string | undefined;
  /** Lockstep's own package operations under way: their changes are not drift, and become the baseline when they end. */
  #ownPending = 0;
  #watcher: FSWatcher | undefined;
  /** The writes of the baseline file, one after the other (the last one wins). */
  #persisted: Promise<void> = Promise.resolve();

  constructor(root: string, state: DriftStateDir, logger: Logger) {
    this.#root = root;
    this.#state = state;
    this.#log = logger;
  }

  /** Calls `onChange` when dpkg's database directory changes (a package operation); the periodic scan covers a failed watch. */
  watch(onChange: () => void): void {
    try {
      this.#watcher = watch(join(this.#root, 'var/lib/dpkg'), { persistent: false }, (_event, name) => {
        if (name === 'status') onChange();
      });
      this.#watcher.on('error', (error) => this.#log.warn({ err: error }, 'the watch on the dpkg database failed; the periodic scan still checks packages'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.#log.warn({ err: error }, 'cannot watch the dpkg database; the periodic scan still checks packages');
    }
  }

  /** Re-reads the package database if it changed (a stat otherwise); the first read without a stored baseline becomes it. */
  async refresh(): Promise<void> {
    const status = join(this.#root, 'var/lib/dpkg/status');
    const info = await ifMissing(stat(status, { bigint: true }));
    const signature = info === undefined ? 'none' : `${info.size}:${info.mtimeNs}:${info.ino}`;
    if (signature !== this.#signature || (this.#baseline === undefined && this.#installed !== null)) {
      const text = info === undefined ? undefined : await ifMissing(readFile(status, 'utf8'));
      this.#installed = text === undefined ? null : parseDpkgStatus(text);
      this.#conffiles = parseConffiles(text ?? '');
      this.#signature = signature;
      if (this.#installed !== null) {
        await this.#readFileLists();
        this.#operations = parseDpkgLog((await ifMissing(readFile(join(this.#root, 'var/log/dpkg.log'), 'utf8'))) ?? '');
      }
      if (this.#baseline === undefined && !this.#baselineRead) {
        this.#baselineRead = true;
        this.#baseline = await this.#state.readPackageBaseline();
        if (this.#baseline === undefined && this.#installed !== null) this.rebaseline(null);
      }
    }
    await this.#checkPackagedFiles();
    await this.#findDebs();
  }

  /**
   * For each changed package, the .deb of its new version in apt's cache (hashed once; looked for again only when the
   * cache directory changed): uploaded with the report, so that `drift adopt` can declare exactly those bytes.
   */
  async #findDebs(): Promise<void> {
    if (this.#installed === null || this.#baseline === undefined) return;
    const info = await ifMissing(stat(aptArchives(this.#root), { bigint: true }));
    const signature = info === undefined ? 'none' : `${info.mtimeNs}:${info.ino}`;
    if (signature !== this.#archivesSignature) this.#debs.clear();
    this.#archivesSignature = signature;
    if (info === undefined) return;
    for (const name of changedPackages({ baseline: this.#baseline, installed: this.#installed })) {
      const version = this.#installed[name];
      if (version === undefined || this.#debs.has(`${name}=${version}`)) continue;
      const found = await cachedDeb(this.#root, name, version, AbortSignal.timeout(60_000)).catch((error: unknown) => {
        this.#log.warn({ err: error, name }, 'could not read the cached .deb of a changed package');
        return undefined;
      });
      const sha256 = found === undefined ? undefined : createHash('sha256').update(await readFile(found.file)).digest('hex');
      this.#debs.set(`${name}=${version}`, found === undefined || sha256 === undefined ? null : { ...found, sha256 });
    }
  }

  /** The cached .deb files of the changed packages' new versions, for the report's uploads. */
  uploads(): { sha256: string; size: number; file: string }[] {
    return [...this.#debs.values()].filter((deb): deb is CachedDeb => deb !== null).map(({ sha256, size, file }) => ({ sha256, size, file }));
  }

  /**
   * Compares the files of the changed packages with the md5 dpkg recorded for them (a stat per file; hashed only when
   * size or mtime moved): a file dpkg wrote is the package operation's, one edited since is a hand edit.
   */
  async #checkPackagedFiles(): Promise<void> {
    const edited = new Set<string>();
    if (this.#installed !== null && this.#baseline !== undefined) {
      for (const name of changedPackages({ baseline: this.#baseline, installed: this.#installed })) {
        if (this.#installed[name] === undefined) continue;
        const sums = parseMd5sums((await ifMissing(readFile(join(this.#root, 'var/lib/dpkg/info', `${name}.md5sums`), 'utf8'))) ?? '');
        for (const path of this.#files.get(name) ?? []) {
          const expected = sums.get(path) ?? this.#conffiles.get(path);
          if (expected === undefined) continue;
          const md5 = await this.#md5(path);
          if (md5 !== undefined && md5 !== expected) edited.add(path);
        }
      }
    }
    this.#edited = edited;
  }

  async #md5(hostPath: string): Promise<string | undefined> {
    const file = join(this.#root, hostPath);
    const info = await ifMissing(stat(file, { bigint: true }));
    if (info === undefined || !info.isFile()) return undefined;
    const signature = `${info.size}:${info.mtimeNs}:${info.ino}`;
    const cached = this.#md5Cache.get(hostPath);
    if (cached?.signature === signature) return cached.md5;
    const content = await ifMissing(readFile(file));
    if (content === undefined) return undefined;
    const md5 = createHash('md5').update(content).digest('hex');
    this.#md5Cache.set(hostPath, { signature, md5 });
    return md5;
  }

  /** The findings of the other scopes with the package findings added and the files dpkg changed attributed to them. */
  apply(findings: readonly DriftFinding[]): DriftFinding[] {
    const installed = this.#installed;
    if (installed === null || this.#baseline === undefined) return [...findings];
    // While Lockstep installs packages itself the database is between two states: no package drift then.
    const baseline = this.#ownPending > 0 ? installed : this.#baseline;
    const result = withPackageFindings(findings, { baseline, installed, operations: this.#operations, ownerOf: (path) => this.#owners.get(path), editedAfterDpkg: (path) => this.#edited.has(path) });
    this.#attributed = result.attributed;
    // A package finding whose new version's .deb is in apt's cache names it (uploaded with the report) for drift adopt.
    return result.findings.map((finding) => {
      const name = finding.scope === 'package' ? packageNameOf(finding.path) : undefined;
      const deb = name === undefined || finding.actual?.version === undefined ? undefined : this.#debs.get(`${name}=${finding.actual.version}`);
      if (deb === undefined || deb === null || finding.actual === null) return finding;
      return { ...finding, actual: { ...finding.actual, sha256: deb.sha256, size: deb.size, architecture: deb.architecture } };
    });
  }

  /** The host paths of file findings last folded into the package findings of `names` (accepted with them). */
  attributedPaths(names: readonly string[]): string[] {
    return names.flatMap((name) => this.#attributed.get(name) ?? []);
  }

  /** Makes the installed versions of `names` (null: every package) the baseline; a name no longer installed leaves it. */
  rebaseline(names: readonly string[] | null): void {
    const installed = this.#installed ?? {};
    let next: Record<string, string>;
    if (names === null) next = { ...installed };
    else {
      next = { ...(this.#baseline ?? installed) };
      for (const name of names) {
        const version = installed[name];
        if (version === undefined) delete next[name];
        else next[name] = version;
      }
    }
    this.#baseline = next;
    this.#pruneFiles();
    // In memory at once (the next findings use it); written in order without holding up a switch or a rollback.
    const state = this.#state;
    this.#persisted = this.#persisted.then(() =>
      state
        .open()
        .then(() => state.writePackageBaseline(next))
        .catch((error: unknown) => this.#log.warn({ err: error }, 'could not save the package baseline')),
    );
  }

  /** Resolves once every baseline change was written (tests, shutdown). */
  flushed(): Promise<void> {
    return this.#persisted;
  }

  /**
   * Runs `change`, a package operation Lockstep makes itself (release packages, a revert), and makes the package
   * set after it the baseline: never drift. This is the one way such operations move the package baseline.
   */
  async ownChange<T>(change: () => Promise<T>): Promise<T> {
    this.#ownPending++;
    try {
      // Only the packages this operation changed move: another package changed by hand before it stays drift.
      this.#signature = undefined;
      await this.refresh();
      const before = { ...(this.#installed ?? {}) };
      try {
        return await change();
      } finally {
        this.#signature = undefined;
        await this.refresh();
        const after = this.#installed ?? {};
        const changed = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((name) => before[name] !== after[name]);
        if (this.#baseline === undefined) this.rebaseline(null);
        else if (changed.length > 0) this.rebaseline(changed);
      }
    } finally {
      this.#ownPending--;
    }
  }

  /** Stops the watch on the database. */
  close(): void {
    this.#watcher?.close();
  }

  async #readFileLists(): Promise<void> {
    const directory = join(this.#root, 'var/lib/dpkg/info');
    const files = new Map<string, readonly string[]>();
    for (const name of ((await ifMissing(readdir(directory))) ?? []).filter((file) => file.endsWith('.list'))) {
      const text = await ifMissing(readFile(join(directory, name), 'utf8'));
      if (text !== undefined) files.set(name.slice(0, -'.list'.length), text.split('\n').filter((path) => path.startsWith('/')));
    }
    // A removed package's list is gone with it; its files stay attributed while the baseline still names it.
    for (const [name, paths] of this.#files) if (!files.has(name) && !files.has(name.split(':')[0] ?? name)) files.set(name, paths);
    this.#files = files;
    this.#pruneFiles();
  }

  /** Drops the lists of packages neither installed nor in the baseline, and rebuilds path → owner. */
  #pruneFiles(): void {
    const known = (name: string) => [name, name.split(':')[0] ?? name].some((key) => this.#installed?.[key] !== undefined || this.#baseline?.[key] !== undefined);
    const owners = new Map<string, string>();
    for (const [name, paths] of this.#files) {
      if (!known(name)) {
        this.#files.delete(name);
        continue;
      }
      // dpkg lists as `name` what the status database calls `name` (or `name:arch` for multiarch): findings use the status name.
      const owner = this.#installed?.[name] !== undefined || this.#baseline?.[name] !== undefined ? name : (name.split(':')[0] ?? name);
      for (const path of paths) if (!owners.has(path)) owners.set(path, owner);
    }
    this.#owners = owners;
  }
}
