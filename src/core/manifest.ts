/**
 * Release manifests: the list of entries that make up a release tree, their
 * canonical form, the release id derived from it, and the path rules every
 * manifest must satisfy before anything is stored.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { symlinkProblems } from './symlink-resolver.js';
import { canonicalSystemParts, type SystemParts } from './system-parts.js';

/** A release id: SHA-256 (hex) of the canonical manifest. */
export type ReleaseId = string & { readonly __brand: 'ReleaseId' };
/** A blob id: SHA-256 (hex) of a file's content. */
export type BlobHash = string;

export interface FileEntry {
  readonly path: string;
  readonly type: 'file';
  /** Permission bits (0..0o777). */
  readonly mode: number;
  readonly size: number;
  readonly sha256: BlobHash;
}
export interface DirEntry {
  readonly path: string;
  readonly type: 'dir';
  readonly mode: number;
}
export interface SymlinkEntry {
  readonly path: string;
  readonly type: 'symlink';
  readonly target: string;
}
/**
 * The kinds of entries a tree walk can meet that a release may never contain
 * (FIFOs, sockets, devices): the one list the wire schema, the validator and
 * drift's special kinds use.
 */
export const FORBIDDEN_ENTRY_TYPES = ['fifo', 'socket', 'char-device', 'block-device'] as const;
/** One of FORBIDDEN_ENTRY_TYPES. */
export type ForbiddenEntryType = (typeof FORBIDDEN_ENTRY_TYPES)[number];
/**
 * An entry of a kind a release may never contain. It exists in the type so
 * that a walker can report it and the validator can name it.
 */
export interface ForbiddenEntry {
  readonly path: string;
  readonly type: ForbiddenEntryType;
}
export type ManifestEntry = FileEntry | DirEntry | SymlinkEntry;

/** The manifest of one release. Entries are sorted by path in canonical form. */
export interface Manifest {
  readonly app: string;
  readonly version: string;
  readonly entries: readonly ManifestEntry[];
  /** Managed files and packages (from lockstep-release.yaml); absent for a release without any, so older ids stay. */
  readonly system?: SystemParts;
}

/** One reason a manifest is invalid, naming the offending path. */
export interface ManifestProblem {
  readonly path: string;
  readonly problem: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Sorts entries by path (code-unit order), the order of the canonical form. */
export function sortEntries<T extends { readonly path: string }>(entries: readonly T[]): T[] {
  return [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** JSON with object keys sorted and no whitespace: one text per value. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record)
    .filter((key) => record[key] !== undefined)
    .sort();
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`).join(',')}}`;
}

/** The canonical manifest: entries sorted, only the fields of each entry kind. */
export function canonicalManifest(manifest: Manifest): Manifest {
  const entries = sortEntries(manifest.entries).map((entry): ManifestEntry => {
    switch (entry.type) {
      case 'file':
        return { path: entry.path, type: 'file', mode: entry.mode, size: entry.size, sha256: entry.sha256 };
      case 'dir':
        return { path: entry.path, type: 'dir', mode: entry.mode };
      case 'symlink':
        return { path: entry.path, type: 'symlink', target: entry.target };
    }
  });
  return { app: manifest.app, version: manifest.version, entries, ...(manifest.system === undefined ? {} : { system: canonicalSystemParts(manifest.system) }) };
}

/** The same manifest with `system` carried over from `from` (when it has one): for the places that rebuild a manifest from its entries. */
export function withSystem(manifest: Manifest, from: { readonly system?: SystemParts | undefined }): Manifest {
  return from.system === undefined ? manifest : { ...manifest, system: from.system };
}

/** The release id of a manifest: SHA-256 of its canonical JSON. */
export function releaseIdOf(manifest: Manifest): ReleaseId {
  return createHash('sha256').update(canonicalJson(canonicalManifest(manifest))).digest('hex') as ReleaseId;
}

/** Checks one relative path against the rules; returns the problem or undefined. */
export function pathProblem(path: string): string | undefined {
  if (path.length === 0) return 'empty path';
  if (path.includes('\0')) return 'path contains a NUL byte';
  if (path.startsWith('/')) return 'absolute paths are not allowed';
  if (path.length > 4096) return 'path is longer than 4096 bytes';
  for (const segment of path.split('/')) {
    if (segment === '') return 'empty path segment (double or trailing slash)';
    if (segment === '..') return '".." segments are not allowed';
    if (segment === '.') return '"." segments are not allowed';
    if (Buffer.byteLength(segment) > 255) return 'a path segment is longer than 255 bytes';
  }
  return undefined;
}

/**
 * Every problem of a manifest (all of them, not only the first): path rules,
 * duplicates, parents that are not directories, forbidden file kinds,
 * symlinks leaving the tree (resolved through the manifest's other links,
 * see symlink-resolver.ts), malformed hashes and modes.
 */
export function manifestProblems(entries: readonly (ManifestEntry | ForbiddenEntry)[]): ManifestProblem[] {
  const problems: ManifestProblem[] = [];
  const kinds = new Map<string, string>();
  for (const entry of entries) {
    const problem = pathProblem(entry.path);
    if (problem) {
      problems.push({ path: entry.path, problem });
      continue;
    }
    if (kinds.has(entry.path)) problems.push({ path: entry.path, problem: 'duplicate path' });
    kinds.set(entry.path, entry.type);
  }
  for (const entry of entries) {
    if (pathProblem(entry.path)) continue;
    const parent = posix.dirname(entry.path);
    if (parent !== '.' && kinds.get(parent) !== 'dir') {
      problems.push({ path: entry.path, problem: `parent "${parent}" is not a directory of the release` });
    }
    switch (entry.type) {
      case 'file':
        if (!HEX64.test(entry.sha256)) problems.push({ path: entry.path, problem: 'sha256 is not 64 lowercase hex digits' });
        if (!Number.isSafeInteger(entry.size) || entry.size < 0) problems.push({ path: entry.path, problem: 'size is not a non-negative integer' });
        if (!validMode(entry.mode)) problems.push({ path: entry.path, problem: 'mode must be permission bits between 0 and 0777 (no setuid, setgid or sticky bits)' });
        break;
      case 'dir':
        if (!validMode(entry.mode)) problems.push({ path: entry.path, problem: 'mode must be permission bits between 0 and 0777 (no setuid, setgid or sticky bits)' });
        break;
      case 'symlink':
        // Resolved below, through the other links of the manifest.
        break;
      case 'fifo':
        problems.push({ path: entry.path, problem: 'FIFOs are not allowed in a release' });
        break;
      case 'socket':
        problems.push({ path: entry.path, problem: 'sockets are not allowed in a release' });
        break;
      case 'char-device':
      case 'block-device':
        problems.push({ path: entry.path, problem: 'device files are not allowed in a release' });
        break;
    }
  }
  // Only entries with valid, unique paths: a link's resolution looks paths up.
  const resolvable = entries.filter((entry) => !pathProblem(entry.path));
  for (const { path, problem } of symlinkProblems(resolvable)) problems.push({ path, problem });
  return problems;
}

function validMode(mode: number): boolean {
  return Number.isInteger(mode) && mode >= 0 && mode <= 0o777;
}

/** The distinct blob hashes a manifest references. */
export function blobsOf(manifest: Manifest): BlobHash[] {
  const hashes = new Set<BlobHash>();
  for (const entry of manifest.entries) if (entry.type === 'file') hashes.add(entry.sha256);
  return [...hashes];
}

/** Short form of a release id for people: the first 12 hex digits. */
export function shortId(id: string): string {
  return id.slice(0, 12);
}
