/**
 * Messages between the scanner and its worker threads (types only), and the
 * stat signature both sides agree on.
 *
 * A listing travels as parallel arrays (names, a Float64Array of numbers,
 * strings) rather than one object per entry: cloning 100,000 small objects
 * with bigint fields was the scanner's main cost.
 */
import type { IoniceClass } from '../core/drift.js';

/**
 * The stat fields of an entry: `signature` is "size:mtimeNs:ctimeNs:ino:mode:uid:gid"
 * (nanosecond times, full st_mode); equal signatures mean an unchanged entry.
 */
export interface EntryStat {
  readonly signature: string;
  /** Full st_mode, file type bits included. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** "dev:ino", to notice a directory reached twice. */
  readonly dirKey: string;
}

/** Numbers per listed entry in `ListResult.numbers`: mode, uid, gid, size. */
export const NUMBERS_PER_ENTRY = 4;

/** Field positions in a signature. */
export const SIGNATURE_FIELD = { size: 0, mtimeNs: 1, ctimeNs: 2, ino: 3, mode: 4, uid: 5, gid: 6 } as const;

/** List one directory: its names, each lstat'ed (and readlink'ed for symlinks). */
export interface ListRequest {
  readonly type: 'list';
  readonly id: number;
  readonly dir: string;
}

/** The listing of a directory (parallel arrays, one slot per name), or why it could not be read. */
export interface ListResult {
  readonly id: number;
  readonly error?: string;
  readonly names: readonly string[];
  /** NUMBERS_PER_ENTRY numbers per name: mode, uid, gid, size. */
  readonly numbers: Float64Array;
  /** The stat signature; '' when lstat failed. */
  readonly signatures: readonly string[];
  /** "dev:ino" for directories, else ''. */
  readonly dirKeys: readonly string[];
  /** The link target for symlinks, else ''. */
  readonly targets: readonly string[];
  /** The errno code of a failed lstat or readlink, else ''. */
  readonly errors: readonly string[];
}

/**
 * Hash a batch of files: parallel arrays, one slot per file. `signatures` are what the walk saw (its inode tells
 * a file replaced since); files whose mtime or ctime is at or after `racySinceNs` (decimal epoch ns) are "racy".
 */
export interface HashRequest {
  readonly type: 'hash';
  readonly id: number;
  readonly paths: readonly string[];
  readonly signatures: readonly string[];
  readonly racySinceNs: string;
}

/**
 * A file's SHA-256, or an errno code (ENOTREG, ECHANGED: not what the walk saw). `stat` is the fstat after
 * reading only when it differs from the walk's (the file changed while it was read); `racy` when its times are
 * too recent for a stat cache to trust (see HashRequest).
 */
export interface HashResult {
  readonly sha256?: string;
  readonly bytes?: number;
  readonly stat?: EntryStat;
  readonly racy?: true;
  readonly error?: string;
}

/** The replies to a hash request. */
export interface HashReply {
  readonly id: number;
  readonly results: readonly HashResult[];
}

/**
 * Sets how politely the receiving thread runs: its nice value (setpriority on Linux is per thread), its I/O
 * class (ioprio_set through util-linux's `ionice -p TID`: Node has no API for it) and its share of the read cap.
 */
export interface ConfigureRequest {
  readonly type: 'configure';
  readonly id: number;
  readonly nice: number;
  readonly ionice: IoniceClass;
  /** This thread's share of the pool's read cap, bytes per second; null: no cap. */
  readonly maxReadBytesPerSecond: number | null;
}

/** What a thread could not apply of a ConfigureRequest (one line each; empty: all applied). */
export interface ConfigureReply {
  readonly id: number;
  readonly configured: true;
  /** The kernel's id of the thread (0 when unknown). */
  readonly tid: number;
  readonly problems: readonly string[];
}

/** Any request to a worker. */
export type WorkerRequest = ListRequest | HashRequest | ConfigureRequest;
/** Any reply from a worker. */
export type WorkerReply = ListResult | HashReply | ConfigureReply;
