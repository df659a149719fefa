/**
 * Per-release stat records: for every entry of a staged release tree, the
 * lstat Lockstep last saw or made (inode, size, mtime and ctime in ns, st_mode,
 * uid, gid, link count), next to the release's manifest. They live in
 * STATE_DIR/stat-records/<release-id>.json (0600, written atomically), outside
 * every release tree, so no release file, hook or editor in a tree can
 * overwrite them. ctime cannot be set from user space, so an entry whose lstat
 * still equals its record was not changed since Lockstep recorded it; only the
 * others need their content hashed before a switch.
 */
import type { BigIntStats } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../content/atomic-file.js';
import { releaseIdOf, withSystem, type Manifest, type ManifestEntry } from '../../core/manifest.js';
import { isReleaseId } from './deploy-layout.js';
import { ifMissing } from '../../core/errors.js';

/** "ino:size:mtimeNs:ctimeNs:st_mode:uid:gid:nlink" of one lstat; equal signatures mean an untouched entry. */
export type StatSignature = string;

/** The stat record of one release tree. */
export interface StatRecord {
  readonly releaseId: string;
  /** The release's manifest: what each entry must be (it hashes to releaseId, or the record is not used). */
  readonly manifest: Manifest;
  /** Manifest path → the signature Lockstep recorded, or null when the entry must be hashed before it is trusted. */
  readonly stats: Map<string, StatSignature | null>;
}

/** Positions of the fields in a signature. */
const FIELD = { ino: 0, size: 1, mtimeNs: 2, ctimeNs: 3, mode: 4, uid: 5, gid: 6, nlink: 7 } as const;

/** The signature of a bigint lstat. */
export function statSignature(info: BigIntStats): StatSignature {
  return `${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}:${info.mode}:${info.uid}:${info.gid}:${info.nlink}`;
}

/** The inode number of a signature. */
export function signatureInode(signature: StatSignature): string {
  return signature.slice(0, signature.indexOf(':'));
}

/**
 * The same lstat as the scanner's stat-cache signature ("size:mtimeNs:ctimeNs:ino:mode:uid:gid", see EntryStat):
 * the record taken at staging then seeds the drift scanner's cache, so a new release is not hashed again.
 */
export function scannerSignature(signature: StatSignature): string {
  const field = signature.split(':');
  return [field[FIELD.size], field[FIELD.mtimeNs], field[FIELD.ctimeNs], field[FIELD.ino], field[FIELD.mode], field[FIELD.uid], field[FIELD.gid]].join(':');
}

/** The link count of a signature. */
export function signatureLinks(signature: StatSignature): number {
  return Number(signature.split(':')[FIELD.nlink]);
}

/**
 * Whether two signatures of one inode differ only in what adding or removing a
 * hard link changes (ctime and the link count): the content, times and
 * permissions were not touched in between.
 */
export function sameButLinks(before: StatSignature, after: StatSignature): boolean {
  const a = before.split(':');
  const b = after.split(':');
  return a.every((field, index) => index === FIELD.ctimeNs || index === FIELD.nlink || field === b[index]);
}

/** The stat records of one agent, one file per release. */
export class StatRecordStore {
  readonly #loaded = new Map<string, StatRecord | null>();

  constructor(readonly dir: string) {}

  #pathOf(releaseId: string): string {
    if (!isReleaseId(releaseId)) throw new Error(`"${releaseId}" is not a release id`);
    return join(this.dir, `${releaseId}.json`);
  }

  /**
   * The record of a release, or undefined when there is none or it cannot be
   * trusted (unreadable, or its manifest does not hash to the release id).
   */
  async read(releaseId: string): Promise<StatRecord | undefined> {
    const known = this.#loaded.get(releaseId);
    if (known !== undefined) return known ?? undefined;
    const text = await ifMissing(readFile(this.#pathOf(releaseId), 'utf8'));
    if (text === undefined) return undefined;
    const record = parseRecord(releaseId, text);
    this.#loaded.set(releaseId, record ?? null);
    return record;
  }

  /** Stores a record (atomically, 0600) and keeps it in memory. */
  async write(record: StatRecord): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const stats = Object.fromEntries(record.stats);
    await writeFileAtomic(this.#pathOf(record.releaseId), JSON.stringify({ format: 1, releaseId: record.releaseId, manifest: record.manifest, stats }), 0o600);
    this.#loaded.set(record.releaseId, record);
  }

  /** Removes the record of a release that left the disk. */
  async remove(releaseId: string): Promise<void> {
    this.#loaded.delete(releaseId);
    await rm(this.#pathOf(releaseId), { force: true });
  }

  /** Removes the records of releases not in `keep` (and leftovers of interrupted writes). */
  async retain(keep: Iterable<string>): Promise<void> {
    const wanted = new Set([...keep].map((id) => `${id}.json`));
    const names = await ifMissing(readdir(this.dir));
    if (names === undefined) return;
    for (const name of names) {
      if (wanted.has(name)) continue;
      if (isReleaseId(name.slice(0, 64))) this.#loaded.delete(name.slice(0, 64));
      await rm(join(this.dir, name), { force: true });
    }
  }
}

function parseRecord(releaseId: string, text: string): StatRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object') return undefined;
  const { manifest, stats } = value as { manifest?: Manifest; stats?: Record<string, unknown> };
  if (manifest === undefined || typeof manifest !== 'object' || !Array.isArray(manifest.entries) || stats === undefined || typeof stats !== 'object' || stats === null) return undefined;
  const entries = manifest.entries.filter((entry: ManifestEntry) => entry.type === 'file' || entry.type === 'dir' || entry.type === 'symlink');
  if (entries.length !== manifest.entries.length) return undefined;
  let trusted: Manifest;
  try {
    trusted = withSystem({ app: manifest.app, version: manifest.version, entries }, manifest);
    if (releaseIdOf(trusted) !== releaseId) return undefined;
  } catch {
    return undefined;
  }
  const map = new Map<string, StatSignature | null>();
  for (const entry of entries) {
    const signature = stats[entry.path];
    map.set(entry.path, typeof signature === 'string' ? signature : null);
  }
  return { releaseId, manifest: trusted, stats: map };
}
