/**
 * The host's half of `lockstep release capture`: the installed package set
 * (dpkg's status database under --root), the .deb files apt left in
 * ROOT/var/cache/apt/archives (NAME_VERSION_ARCH.deb, the epoch's colon
 * written %3a) checked against their control fields, and the given files;
 * every .deb and file is uploaded before the answer lists them, so the server
 * can make the release from the answer alone.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import type { CommandResult } from '../../api/schemas.js';
import { ifMissing } from '../../core/errors.js';
import { MAX_UPLOAD_BYTES } from '../drift/drift-reporter.js';
import { parseDpkgStatus } from '../host-facts.js';
import { dpkgAdminDir, requireDpkgDatabase } from './package-installer.js';

const run = promisify(execFile);

/** What was captured, as the command result carries it. */
export type Captured = NonNullable<CommandResult['capture']>;

/** What a capture needs from the agent. */
export interface CaptureContext {
  readonly root: string;
  readonly host: string;
  /** Uploads one blob to the server (it checks the hash). */
  readonly upload: (sha256: string, content: Uint8Array, signal: AbortSignal) => Promise<unknown>;
  readonly signal: AbortSignal;
}

/** apt's cache directory under the host root. */
export function aptArchives(root: string): string {
  return join(root, 'var/cache/apt/archives');
}

/** Captures the package set (when `packages`) and the files at `paths`; throws with one line saying what is wrong. */
export async function captureHost(context: CaptureContext, packages: boolean, paths: readonly string[]): Promise<Captured> {
  const files: Captured['files'] = [];
  // Files first: a path that cannot be captured fails the command before any .deb is uploaded.
  for (const path of paths) {
    if (!posix.isAbsolute(path)) throw new Error(`${path} is not an absolute host path`);
    const file = join(context.root, path);
    const info = await ifMissing(lstat(file));
    if (info === undefined) throw new Error(`${path} does not exist on ${context.host}`);
    if (!info.isFile()) throw new Error(`${path} is not a regular file on ${context.host}; capture files one by one (--path FILE)`);
    if (info.size > MAX_UPLOAD_BYTES) throw new Error(`${path} is larger than the ${MAX_UPLOAD_BYTES >> 20} MiB an agent may upload`);
    const content = await readFile(file);
    files.push({ path, mode: info.mode & 0o7777, ...(await uploaded(context, content)) });
  }
  if (!packages) return { packages: [], files };
  await requireDpkgDatabase(context.root);
  const installed = parseDpkgStatus(await readFile(join(dpkgAdminDir(context.root), 'status'), 'utf8'));
  const cached = (await ifMissing(readdir(aptArchives(context.root)))) ?? [];
  const captured: Captured['packages'] = [];
  for (const [name, version] of Object.entries(installed).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    context.signal.throwIfAborted();
    const found = await cachedDeb(context.root, name, version, context.signal, cached);
    const deb = found === undefined ? undefined : { ...(await uploaded(context, await readFile(found.file))), architecture: found.architecture };
    captured.push({ name: name.split(':')[0] ?? name, version, ...(deb === undefined ? {} : { deb }) });
  }
  return { packages: captured, files };
}

/**
 * The .deb of package `name` at `version` that apt left in ROOT/var/cache/apt/archives (NAME_VERSION_ARCH.deb,
 * the epoch's colon written %3a), proven by its control fields; undefined when there is none (or it is larger than an
 * agent may upload). `listing`: the directory's names when the caller read them already.
 */
export async function cachedDeb(root: string, name: string, version: string, signal: AbortSignal, listing?: readonly string[]): Promise<{ file: string; architecture: string; size: number } | undefined> {
  const bare = name.split(':')[0] ?? name;
  const prefix = `${bare}_${version.replaceAll(':', '%3a')}_`;
  const names = listing ?? (await ifMissing(readdir(aptArchives(root)))) ?? [];
  for (const candidate of names.filter((file) => file.startsWith(prefix) && file.endsWith('.deb'))) {
    const file = join(aptArchives(root), candidate);
    // The name says which package it is; its control fields prove it (a stale or partial download is skipped).
    const fields = await debFields(file, signal);
    if (fields === undefined || fields.name !== bare || fields.version !== version) continue;
    const info = await ifMissing(lstat(file));
    if (info === undefined || !info.isFile() || info.size > MAX_UPLOAD_BYTES) continue;
    return { file, architecture: fields.architecture, size: info.size };
  }
  return undefined;
}

async function uploaded(context: CaptureContext, content: Buffer): Promise<{ sha256: string; size: number }> {
  const sha256 = createHash('sha256').update(content).digest('hex');
  await context.upload(sha256, content, context.signal);
  return { sha256, size: content.length };
}

/** Package, Version and Architecture of a .deb (undefined: not a readable .deb). */
async function debFields(path: string, signal: AbortSignal): Promise<{ name: string; version: string; architecture: string } | undefined> {
  try {
    const { stdout } = await run('dpkg-deb', ['--show', '--showformat=${Package}\\t${Version}\\t${Architecture}', path], { signal });
    const [name, version, architecture] = stdout.split('\t');
    return name && version && architecture ? { name, version, architecture: architecture.trim() } : undefined;
  } catch (error) {
    if (signal.aborted) throw error;
    return undefined;
  }
}
