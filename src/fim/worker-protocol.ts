/** Messages between the scanner and its worker threads (types only). */

/** The lstat fields the scanner keeps; times and inode as bigint nanoseconds/numbers. */
export interface RawStat {
  readonly dev: bigint;
  readonly ino: bigint;
  /** Full st_mode, file type bits included. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

/** List one directory: its names, each lstat'ed (and readlink'ed for symlinks). */
export interface ListRequest {
  readonly type: 'list';
  readonly id: number;
  readonly dir: string;
}

/** One listed name: its stat, or the errno code that kept us from it. */
export interface ListedEntry {
  readonly name: string;
  readonly stat?: RawStat;
  readonly target?: string;
  readonly error?: string;
}

/** The listing of a directory, or why it could not be read. */
export interface ListResult {
  readonly id: number;
  readonly entries: readonly ListedEntry[];
  readonly error?: string;
}

/** Hash a batch of files; `ino` is what the walk saw, to notice a file replaced since. */
export interface HashRequest {
  readonly type: 'hash';
  readonly id: number;
  readonly files: readonly { readonly path: string; readonly ino: bigint }[];
}

/** A file's SHA-256 with the fstat after reading, or an errno code (ENOTREG, ECHANGED: not what the walk saw). */
export interface HashResult {
  readonly sha256?: string;
  readonly bytes?: number;
  readonly stat?: RawStat;
  readonly error?: string;
}

/** Any request to a worker. */
export type WorkerRequest = ListRequest | HashRequest;
/** Any reply from a worker. */
export type WorkerReply = ListResult | { readonly id: number; readonly results: readonly HashResult[] };
