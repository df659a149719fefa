/**
 * Makes a host's system parts those of one release, before `current` is
 * switched to it: packages first (one dpkg transaction; a managed file may
 * override what a package installed), then managed files (rendered, then
 * written atomically through the drift monitor's own-change path, so they are
 * never drift), then each `after_change` command once when any of its files
 * changed. Whatever the previous release managed and this one does not gets
 * its original back (see system-state.ts). The same call with the release a
 * host returns to is the rollback.
 */
import { createHash } from 'node:crypto';
import { chown, lstat, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ifMissing, LockstepError } from '../../core/errors.js';
import { isInside, type DeclaredPackage, type ManagedFile, type SystemParts } from '../../core/system-parts.js';
import { renderTemplate, TemplateError } from '../../core/template.js';
import { writeFileAtomic } from '../../content/atomic-file.js';
import { installDebs, installedVersions, installWithApt, PackageError, removePackages, requireDpkgDatabase } from './package-installer.js';
import type { AppliedSystem, Originals, SystemState } from './system-state.js';
import { resolveOwner } from './owner-resolver.js';

/** What applying a release's system parts needs. */
export interface SystemApplyRequest {
  /** The release whose parts to apply (null: none, every managed path and package gets its original back). */
  readonly releaseId: string | null;
  readonly parts: SystemParts | undefined;
  /** The release's directory (sources and .deb files are read from it, after its verification). */
  readonly releaseDir: string | null;
  /** DEPLOY_TO as the task says (a host path): no managed file may be written inside it. */
  readonly deployTo?: string;
  readonly host: string;
  readonly env: string;
  readonly vars: Readonly<Record<string, string>>;
  readonly secrets: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
  /** Runs one after_change command (like a hook); rejects when it fails. */
  readonly runAfterChange: (command: string, changedPaths: readonly string[]) => Promise<void>;
  /** Appends lines to the deployment's logs. */
  readonly log: (source: string, lines: readonly string[]) => void;
}

/** What applying did. */
export interface SystemApplyResult {
  readonly changedFiles: readonly string[];
  readonly restoredFiles: readonly string[];
  readonly installed: readonly string[];
  readonly removed: readonly string[];
  readonly afterChange: readonly string[];
}

/** What the activator needs from the agent. */
export interface SystemActivatorOptions {
  /** The directory treated as `/`. */
  readonly root: string;
  readonly state: SystemState;
  /**
   * Real directories no managed file may be written into: the agent's state dir (its credential, originals) and,
   * per request, DEPLOY_TO (the release trees). Checked again here because lockstep.yaml may have changed since.
   */
  readonly protectedDirs?: readonly string[];
  /** Runs a write of host paths as Lockstep's own change (the drift monitor's ownChange); without it the write just runs. */
  readonly ownChange?: <T>(hostPaths: readonly string[], change: () => Promise<T>) => Promise<T>;
  /** Runs a dpkg operation as Lockstep's own package change (the drift monitor's ownPackageChange): the package baseline moves with it. */
  readonly ownPackageChange?: <T>(change: () => Promise<T>) => Promise<T>;
}

/** Applies system parts; one at a time (the agent runs one task at a time). */
export class SystemActivator {
  constructor(private readonly options: SystemActivatorOptions) {}

  /** Makes the host's system parts those of `request.releaseId`; throws (after logging) when a part fails. */
  async apply(request: SystemApplyRequest): Promise<SystemApplyResult> {
    const { state } = this.options;
    const applied = await state.applied();
    const files = request.parts?.files ?? [];
    const packages = request.parts?.packages ?? [];
    if (files.length === 0 && packages.length === 0 && (applied === null || (applied.files.length === 0 && applied.packages.length === 0))) {
      return { changedFiles: [], restoredFiles: [], installed: [], removed: [], afterChange: [] };
    }
    // Rendered before anything is written: a template that cannot be rendered changes nothing.
    const rendered = await this.#render(files, request);
    const originals = await state.originals();
    const managedBefore = new Set(applied?.files.map((file) => file.path) ?? []);
    const packagesBefore = new Set(applied?.packages.map((entry) => entry.name) ?? []);
    // Everything this change may touch is recorded first, so that an interrupted change is undone completely.
    await state.writeApplied({
      releaseId: request.releaseId,
      complete: false,
      files: union([...managedBefore], files.map((file) => file.path)).map((path) => ({ path, sha256: null, mode: null })),
      packages: union([...packagesBefore], packages.map((entry) => entry.name)).map((name) => ({ name, version: null })),
    });

    // Deploy, rollback, revert and the re-apply after a failed task all pass here: never package drift.
    const applyPackages = () => this.#applyPackages(packages, packagesBefore, originals, request);
    const touchesPackages = packages.length > 0 || packagesBefore.size > 0;
    const { installed, removed, versions } = await (this.options.ownPackageChange && touchesPackages ? this.options.ownPackageChange(applyPackages) : applyPackages());
    const hostPaths = union([...managedBefore], files.map((file) => file.path));
    const { changed, restored } = await this.#own(hostPaths, () => this.#applyFiles(rendered, managedBefore, originals, request));
    const afterChange: string[] = [];
    const commands = new Map<string, string[]>();
    for (const file of files) {
      if (file.afterChange === undefined || !changed.includes(file.path)) continue;
      commands.set(file.afterChange, [...(commands.get(file.afterChange) ?? []), file.path]);
    }
    for (const [command, paths] of commands) {
      request.signal.throwIfAborted();
      await request.runAfterChange(command, paths);
      afterChange.push(command);
    }
    const done: AppliedSystem = {
      releaseId: request.releaseId,
      complete: true,
      files: rendered.map((file) => ({ path: file.spec.path, sha256: sha256(file.content), mode: file.spec.mode })),
      packages: packages.map((entry) => ({ name: entry.name, version: versions.get(entry.name) ?? entry.version })),
    };
    await state.writeApplied(done);
    if (changed.length + restored.length + installed.length + removed.length > 0) {
      request.log('system', [
        `system parts of ${request.releaseId === null ? 'no release (originals restored)' : `release ${request.releaseId.slice(0, 12)}`}: ${changed.length} file(s) written, ${restored.length} restored, ${installed.length} package(s) installed, ${removed.length} removed`,
      ]);
    }
    return { changedFiles: changed, restoredFiles: restored, installed, removed, afterChange };
  }

  async #own<T>(hostPaths: readonly string[], change: () => Promise<T>): Promise<T> {
    return this.options.ownChange ? this.options.ownChange(hostPaths, change) : change();
  }

  async #render(files: readonly ManagedFile[], request: SystemApplyRequest): Promise<{ spec: ManagedFile; content: Buffer }[]> {
    const out: { spec: ManagedFile; content: Buffer }[] = [];
    const protectedDirs = [...(this.options.protectedDirs ?? []), ...(request.deployTo === undefined ? [] : [join(this.options.root, request.deployTo)])];
    for (const spec of files) {
      if (request.releaseDir === null) throw new Error('system parts without a release dir');
      const target = join(this.options.root, spec.path);
      const inside = protectedDirs.find((dir) => isInside(target, dir) || isInside(dir, target));
      if (inside !== undefined) throw new LockstepError('failed', `managed file ${spec.path} would be written into ${inside}, which Lockstep itself keeps; manage files outside DEPLOY_TO and the agent's state dir`);
      const source = join(request.releaseDir, spec.source);
      const raw = await readFile(source);
      if (!spec.template) {
        out.push({ spec, content: raw });
        continue;
      }
      try {
        const text = renderTemplate(raw.toString('utf8'), { vars: request.vars, secrets: request.secrets, host: { name: request.host }, env: request.env });
        out.push({ spec, content: Buffer.from(text, 'utf8') });
      } catch (error) {
        if (error instanceof TemplateError) throw new LockstepError('failed', `template ${spec.source} for ${spec.path}: ${error.message}`);
        throw error;
      }
    }
    return out;
  }

  async #applyPackages(
    packages: readonly DeclaredPackage[],
    before: ReadonlySet<string>,
    originals: Originals,
    request: SystemApplyRequest,
  ): Promise<{ installed: string[]; removed: string[]; versions: Map<string, string> }> {
    const { root } = this.options;
    const leaving = [...before].filter((name) => !packages.some((entry) => entry.name === name));
    if (packages.length === 0 && leaving.length === 0) return { installed: [], removed: [], versions: new Map() };
    await requireDpkgDatabase(root);
    const current = await installedVersions(root, union(packages.map((entry) => entry.name), leaving), request.signal);
    // The version before Lockstep first managed a package is kept once.
    let newOriginals = false;
    for (const entry of packages) {
      if (entry.name in originals.packages) continue;
      originals.packages[entry.name] = current.get(entry.name) ?? null;
      newOriginals = true;
    }
    if (newOriginals) await this.options.state.writeOriginals(originals);
    const debs = packages.filter((entry): entry is Extract<DeclaredPackage, { kind: 'deb' }> => entry.kind === 'deb' && current.get(entry.name) !== entry.version);
    const apt = packages.filter((entry) => entry.kind === 'apt' && current.get(entry.name) !== entry.version);
    const installed: string[] = [];
    try {
      if (debs.length > 0) {
        if (request.releaseDir === null) throw new Error('packages without a release dir');
        const dir = request.releaseDir;
        const result = await installDebs(root, debs.map((entry) => join(dir, entry.deb)), request.signal);
        request.log('dpkg', result.output);
        installed.push(...debs.map((entry) => `${entry.name}=${entry.version}`));
      }
      if (apt.length > 0) {
        const result = await installWithApt(root, apt, request.signal);
        request.log('apt', result.output);
        installed.push(...apt.map((entry) => `${entry.name}=${entry.version}`));
      }
      // A package the release no longer declares: removed if Lockstep brought it; one the host had before stays.
      const toRemove = leaving.filter((name) => originals.packages[name] === null && current.has(name));
      const kept = leaving.filter((name) => originals.packages[name] !== null && originals.packages[name] !== undefined);
      if (kept.length > 0) request.log('system', [`left installed (the host had them before Lockstep managed them): ${kept.join(', ')}`]);
      if (toRemove.length > 0) {
        const result = await removePackages(root, toRemove, request.signal);
        request.log('dpkg', result.output);
      }
      const versions = await installedVersions(root, packages.map((entry) => entry.name), request.signal);
      const wrong = packages.filter((entry) => versions.get(entry.name) !== entry.version);
      if (wrong.length > 0) throw new LockstepError('failed', `after installing, ${wrong.map((entry) => `${entry.name} is at ${versions.get(entry.name) ?? 'nothing'}, not ${entry.version}`).join('; ')}`);
      return { installed, removed: toRemove, versions };
    } catch (error) {
      if (error instanceof PackageError) request.log('dpkg', error.output);
      throw error;
    }
  }

  async #applyFiles(
    rendered: readonly { spec: ManagedFile; content: Buffer }[],
    before: ReadonlySet<string>,
    originals: Originals,
    request: SystemApplyRequest,
  ): Promise<{ changed: string[]; restored: string[] }> {
    const { root } = this.options;
    const changed: string[] = [];
    const restored: string[] = [];
    // Originals first, all of them, before the first write.
    let newOriginals = false;
    for (const { spec } of rendered) {
      if (originals.files[spec.path] !== undefined) continue;
      originals.files[spec.path] = await this.#capture(join(root, spec.path));
      newOriginals = true;
    }
    if (newOriginals) await this.options.state.writeOriginals(originals);
    for (const { spec, content } of rendered) {
      request.signal.throwIfAborted();
      const target = join(root, spec.path);
      const owner = spec.owner === undefined ? undefined : await resolveOwner(root, spec.owner);
      if (await sameFile(target, content, spec.mode, owner)) continue;
      await mkdir(dirname(target), { recursive: true, mode: 0o755 });
      await writeFileAtomic(target, content, spec.mode);
      if (owner !== undefined) await chown(target, owner.uid, owner.gid);
      changed.push(spec.path);
    }
    const keep = new Set(rendered.map(({ spec }) => spec.path));
    for (const path of before) {
      if (keep.has(path)) continue;
      request.signal.throwIfAborted();
      const original = originals.files[path];
      const target = join(root, path);
      if (original === undefined || original.kind === 'absent') {
        if ((await ifMissing(lstat(target))) !== undefined) await rm(target, { force: true });
      } else {
        const content = await this.options.state.content(original.sha256);
        if (!(await sameFile(target, content, original.mode, original))) {
          await mkdir(dirname(target), { recursive: true, mode: 0o755 });
          await writeFileAtomic(target, content, original.mode);
          if (process.getuid?.() === 0) await chown(target, original.uid, original.gid);
        }
      }
      restored.push(path);
    }
    return { changed, restored };
  }

  /** What a path holds now, its content kept in the state dir. Anything but a regular file is refused: Lockstep manages files only. */
  async #capture(path: string): Promise<Originals['files'][string]> {
    const info = await ifMissing(lstat(path));
    if (info === undefined) return { kind: 'absent' };
    if (!info.isFile()) throw new LockstepError('failed', `${path} exists and is not a regular file; a managed file can only replace a file`);
    const sha = await this.options.state.saveContent(await readFile(path));
    return { kind: 'file', sha256: sha, mode: info.mode & 0o7777, uid: info.uid, gid: info.gid };
  }
}

async function sameFile(path: string, content: Buffer, mode: number, owner: { uid: number; gid: number } | undefined): Promise<boolean> {
  const info = await ifMissing(lstat(path));
  if (info === undefined || !info.isFile() || (info.mode & 0o7777) !== mode || info.size !== content.length) return false;
  if (owner !== undefined && (info.uid !== owner.uid || info.gid !== owner.gid)) return false;
  return (await readFile(path)).equals(content);
}

function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}
