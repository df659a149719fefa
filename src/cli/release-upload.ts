/**
 * Making a release from a directory: hash the tree, open an upload session
 * listing its blobs, stream the ones the server lacks in a few parallel
 * batches of framed blobs, and register the manifest (which closes the session).
 */
import { createReadStream, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { LockstepClient } from '../client/lockstep-client.js';
import { cannotRead, ifMissing, LockstepError } from '../core/errors.js';
import { manifestProblems, type ManifestEntry } from '../core/manifest.js';
import { forEachBounded } from '../core/for-each-bounded.js';
import { sizeBatches } from '../core/size-batches.js';
import { readDebControl } from '../content/deb-control.js';
import type { DebControl } from '../core/release-parts-file.js';
import { RELEASE_PARTS_FILE, systemPartsProblems, type SystemParts } from '../core/system-parts.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildEntries, hashFile, type BulkHasher } from '../content/manifest-builder.js';
import type { FimWorkerPool } from '../fim/worker-pool.js';
import { SIGNATURE_FIELD } from '../fim/worker-protocol.js';
import { FRAME_HEADER_BYTES, frameHeader } from '../content/upload-frames.js';

/** How blobs are grouped into upload batches. */
export interface Batching {
  /** Batches sent at once. */
  readonly streams: number;
  /** A batch closes once it holds this many bytes (a larger blob travels alone)… */
  readonly bytes: number;
  /** …or this many blobs. */
  readonly blobs: number;
}

/** Four streams keep the server's disk and the link busy while a batch waits for its sync pass; batches of 16 MiB or 1,000 blobs (one sync pass each on the server). */
export const DEFAULT_BATCHING: Batching = { streams: 4, bytes: 16 * 1024 * 1024, blobs: 1000 };
/** A stat signature (fim/entry-stat.ts) that names only the inode, the one field the worker checks before hashing. */
function inodeSignature(ino: string): string {
  const fields = ['', '', '', '', '', '', ''];
  fields[SIGNATURE_FIELD.ino] = ino;
  return fields.join(':');
}

/** A racySinceNs no file's times reach (the year 2262 in epoch nanoseconds). */
const NEVER_RACY_NS = '9223372036854775807';
/** Files up to this size are read whole; larger ones are streamed. */
const READ_WHOLE_BYTES = 1024 * 1024;

/**
 * Hashes in the scanner's worker threads (every CPU, large synchronous reads,
 * many files per message); where a worker cannot run (a bundled CLI without
 * the worker file), the files are hashed here instead, the same way.
 */
function pooledHasher(pool: FimWorkerPool): BulkHasher {
  let workers = true;
  return async (files) => {
    if (workers) {
      try {
        // The worker refuses a file whose inode is not the walk's (replaced since); the other signature fields and "racy" do not matter here.
        return await pool.hash({ paths: files.map((file) => file.path), signatures: files.map((file) => inodeSignature(file.ino)), racySinceNs: NEVER_RACY_NS });
      } catch {
        workers = false;
      }
    }
    return Promise.all(files.map(async (file) => ({ sha256: await hashFile(file.path), bytes: (await stat(file.path)).size })));
  };
}

/** One blob to send: its hash, the file it is read from and the size it had when hashed. */
interface BlobSource {
  readonly hash: string;
  readonly source: string;
  readonly size: number;
}

/** The frames of a batch: each blob's header, then its bytes; a file whose size changed since it was hashed fails the batch. */
async function* framesOf(batch: readonly BlobSource[]): AsyncGenerator<Uint8Array> {
  for (const blob of batch) {
    yield frameHeader(blob.hash, blob.size);
    let read = 0;
    if (blob.size <= READ_WHOLE_BYTES) {
      // Synchronous: for a small file one thread-pool round trip per call cost more than the read itself (measured on the server side).
      const content = readFileSync(blob.source);
      read = content.length;
      if (read === blob.size) yield content;
    } else {
      for await (const chunk of createReadStream(blob.source, { highWaterMark: 1 << 20 })) {
        read += (chunk as Buffer).length;
        if (read > blob.size) break;
        yield chunk as Buffer;
      }
    }
    if (read !== blob.size) throw new LockstepError('bad-input', `${blob.source} changed while the release was being created (${blob.size} bytes when hashed, ${read} now); run release create again`);
  }
}

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
 * server's own rules first, so a bad tree uploads nothing. `batching` is
 * for tests; the CLI uses the defaults.
 */
export async function uploadRelease(
  client: LockstepClient,
  dir: string,
  version: string,
  app: string | undefined,
  onProgress?: (text: string) => void,
  batching: Batching = DEFAULT_BATCHING,
): Promise<UploadedRelease> {
  const info = await ifMissing(stat(dir)).catch((error: unknown) => {
    throw cannotRead(dir, error);
  });
  if (!info?.isDirectory()) throw new LockstepError('bad-input', `${dir} is not a directory`);
  // Loaded here, not at start: every other command would pay for it.
  const { FimWorkerPool } = await import('../fim/worker-pool.js');
  const pool = new FimWorkerPool();
  let walked;
  try {
    walked = await buildEntries(dir, ({ files, bytes }) => onProgress?.(`hashing: ${files} files, ${bytes} bytes`), pooledHasher(pool));
  } finally {
    await pool.close();
  }
  const problems = manifestProblems(walked);
  if (problems.length > 0) {
    const first = problems[0];
    throw new LockstepError('bad-input', `${dir}: ${first?.path}: ${first?.problem}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, { problems });
  }
  const entries = walked.map(({ source: _source, ...entry }) => entry as ManifestEntry);
  // Read before any upload: a bad lockstep-release.yaml uploads nothing.
  const system = await readSystemParts(dir, entries);
  const sources = new Map<string, BlobSource>();
  for (const entry of walked) if (entry.type === 'file' && entry.source) sources.set(entry.sha256, { hash: entry.sha256, source: entry.source, size: entry.size });
  const session = await client.openUpload([...sources.values()].map(({ hash, size }) => ({ hash, size })));
  const missing = session.missing.flatMap((hash) => sources.get(hash) ?? []);
  let blobs = 0;
  let bytes = 0;
  await forEachBounded(sizeBatches(missing, { count: batching.blobs, bytes: batching.bytes }), batching.streams, async (batch) => {
    const size = batch.reduce((sum, blob) => sum + FRAME_HEADER_BYTES + blob.size, 0);
    const stored = await client.uploadBatch(session.id, framesOf(batch), size);
    blobs += stored.blobs;
    bytes += stored.bytes;
    onProgress?.(`uploading: ${blobs}/${missing.length} blobs, ${bytes}/${session.missingBytes} bytes`);
  });
  const result = await client.createRelease({ ...(app !== undefined ? { app } : {}), version, entries, uploadSession: session.id, ...(system === undefined ? {} : { system: { files: [...system.files], packages: [...system.packages] } }) });
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
