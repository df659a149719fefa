/**
 * What the server keeps of uploaded blobs, decided purely: which stored blobs
 * garbage collection removes, and whether an upload outside a session fits
 * its uploader's quota. Time is passed in.
 */

/** How long an upload session stays open: long enough to hash and upload a large release on a slow link. */
export const UPLOAD_SESSION_TTL_MS = 60 * 60_000;
/** Default grace period: an unreferenced blob younger than this is kept (a release may be about to reference it). */
export const DEFAULT_GC_GRACE_MS = 24 * 60 * 60_000;
/** Default cadence of the server's own gc. */
export const DEFAULT_GC_INTERVAL_MS = 60 * 60_000;
/** Default quota of each deployer token: bytes of blobs it uploaded outside a session that no release references yet. */
export const DEFAULT_BLOB_QUOTA_BYTES = 256 * 1024 * 1024;
/** Default quota of each host: bytes of drifted files its agent uploaded that its open drift items hold. */
export const DEFAULT_DRIFT_QUOTA_BYTES = 256 * 1024 * 1024;
/** Most upload sessions one token may have open at once (each keeps its blobs from gc until it expires). */
export const MAX_OPEN_UPLOAD_SESSIONS = 8;

/** A stored blob as gc judges it. */
export interface BlobAge {
  readonly hash: string;
  readonly size: number;
  readonly storedAtMs: number;
}

/** Whether gc removes a stored blob: no release, open drift item or open upload session references it, and it is older than the grace period. */
export function isGarbage(blob: BlobAge, referenced: ReadonlySet<string>, nowMs: number, graceMs: number): boolean {
  return !referenced.has(blob.hash) && nowMs - blob.storedAtMs >= graceMs;
}

/** A blob counted against a quota. */
export interface HeldBlob {
  readonly hash: string;
  readonly size: number;
  /** When it was uploaded (ms since the epoch). */
  readonly atMs: number;
}

/**
 * Bytes a host's drift uploads hold: blobs its open drift items reference,
 * plus those uploaded within the last session TTL (an agent uploads a
 * drifted file just before the report that names it), each counted once.
 */
export function driftHeldBytes(holds: readonly HeldBlob[], openItemHashes: ReadonlySet<string>, nowMs: number): number {
  let total = 0;
  for (const hold of holds) if (openItemHashes.has(hold.hash) || nowMs - hold.atMs < UPLOAD_SESSION_TTL_MS) total += hold.size;
  return total;
}

/** Bytes a token's uploads outside sessions hold (every hold: a release referencing a blob drops its holds). */
export function tokenHeldBytes(holds: readonly HeldBlob[]): number {
  return holds.reduce((sum, hold) => sum + hold.size, 0);
}

/** How many more bytes a holder may upload under `quotaBytes`, given what it holds (a blob it already holds counts once). */
export function quotaRoom(heldBytes: number, quotaBytes: number): number {
  return Math.max(0, quotaBytes - heldBytes);
}
