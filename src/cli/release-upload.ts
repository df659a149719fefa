/** Making a release from a directory: hash the tree, upload only the blobs the server lacks, register the manifest. */
import { stat } from 'node:fs/promises';
import type { LockstepClient } from '../client/lockstep-client.js';
import { cannotRead, ifMissing, LockstepError } from '../core/errors.js';
import { manifestProblems, type ManifestEntry } from '../core/manifest.js';
import { forEachBounded } from '../core/for-each-bounded.js';
import { buildEntries } from '../content/manifest-builder.js';
import { readDebControl } from '../content/deb-control.js';
import type { DebControl } from '../core/release-parts-file.js';
import { RELEASE_PARTS_FILE, systemPartsProblems, type SystemParts } from '../core/system-parts.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** What `uploadRelease` did. */
export interface UploadedRelease {
  readonly id: string;
  readonly app: string;
  readonly version: string;
  readonly created: boolean;
  readonly files: number;
  readonly bytes: number;
  readonly uploaded: { readonly blobs: number; readonly bytes: number };
}

/**
 * Creates a release from `dir`. The tree is validated locally with the
 * server's own rules first, so a bad tree uploads nothing.
 */
export async function uploadRelease(client: LockstepClient, dir: string, version: string, app: string | undefined, onProgress?: (text: string) => void): Promise<UploadedRelease> {
  const info = await ifMissing(stat(dir)).catch((error: unknown) => {
    throw cannotRead(dir, error);
  });
  if (!info?.isDirectory()) throw new LockstepError('bad-input', `${dir} is not a directory`);
  const walked = await buildEntries(dir, ({ files, bytes }) => onProgress?.(`hashing: ${files} files, ${bytes} bytes`));
  const problems = manifestProblems(walked);
  if (problems.length > 0) {
    const first = problems[0];
    throw new LockstepError('bad-input', `${dir}: ${first?.path}: ${first?.problem}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, { problems });
  }
  const entries = walked.map(({ source: _source, ...entry }) => entry as ManifestEntry);
  // Read before any upload: a bad lockstep-release.yaml uploads nothing.
  const system = await readSystemParts(dir, entries);
  const sources = new Map<string, { source: string; size: number }>();
  for (const entry of walked) if (entry.type === 'file' && entry.source) sources.set(entry.sha256, { source: entry.source, size: entry.size });
  const { missing } = await client.missingBlobs([...sources.keys()]);
  let blobs = 0;
  let bytes = 0;
  await forEachBounded(missing, 4, async (hash) => {
    const blob = sources.get(hash);
    if (!blob) return;
    await client.uploadBlob(hash, blob.source, blob.size);
    blobs += 1;
    bytes += blob.size;
    onProgress?.(`uploading: ${blobs}/${missing.length} blobs, ${bytes} bytes`);
  });
  const result = await client.createRelease({ ...(app !== undefined ? { app } : {}), version, entries, ...(system === undefined ? {} : { system: { files: [...system.files], packages: [...system.packages] } }) });
  const release = result.release;
  return { id: release.id, app: release.app, version: release.version, created: result.created, files: release.files, bytes: release.bytes, uploaded: { blobs, bytes } };
}

/**
 * The system parts declared by DIR/lockstep-release.yaml (undefined: the release has no such file), with each
 * .deb's package name and version read from it; checked with the server's own rules.
 */
export async function readSystemParts(dir: string, entries: readonly ManifestEntry[]): Promise<SystemParts | undefined> {
  if (!entries.some((entry) => entry.type === 'file' && entry.path === RELEASE_PARTS_FILE)) return undefined;
  const file = join(dir, RELEASE_PARTS_FILE);
  const text = await readFile(file, 'utf8').catch((error: unknown) => {
    throw cannotRead(file, error);
  });
  const modes = new Map(entries.flatMap((entry) => (entry.type === 'file' ? [[entry.path, entry.mode] as const] : [])));
  // Loaded only for a release that has the file: its schema library is kept off the CLI's start-up path.
  const { completeSystemParts, parseReleaseParts } = await import('../core/release-parts-file.js');
  const draft = parseReleaseParts(text, modes, file);
  const controls = new Map<string, DebControl>();
  for (const declared of draft.packages) if (declared.kind === 'deb') controls.set(declared.deb, await readDebControl(join(dir, declared.deb), `${file}: ${declared.deb}`));
  const system = completeSystemParts(draft, controls, file);
  const problem = systemPartsProblems(system, entries)[0];
  if (problem !== undefined) throw new LockstepError('bad-input', `${file}: ${problem.path}: ${problem.problem}`);
  return system;
}
