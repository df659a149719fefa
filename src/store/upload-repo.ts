/**
 * Blob intake: upload sessions (the blobs a release being created may upload)
 * and blob holds (who uploaded a blob outside a session, counted against that
 * deployer's or host's quota until a release references it or gc removes it).
 */
import type { Selectable } from 'kysely';
import type { BlobHoldsTable, UploadSessionsTable } from './schema.js';

/** One upload session (its blob hashes as a JSON array). */
export type UploadSessionRow = Selectable<UploadSessionsTable>;
/** One blob held against a quota. */
export type BlobHoldRow = Selectable<BlobHoldsTable>;

/** Reads of upload sessions and blob holds. */
export interface UploadReadRepo {
  uploadSession(id: number): Promise<UploadSessionRow | undefined>;
  /** Sessions not closed and expiring after `now` (ISO time), of one token or (token undefined) of all. */
  openUploadSessions(now: string, token?: string): Promise<UploadSessionRow[]>;
  /** The holds of one holder (`token:NAME`, `host:NAME`). */
  blobHolds(holder: string): Promise<BlobHoldRow[]>;
  /** Up to `limit` release manifests (canonical JSON) with ids after `afterId`, in id order: gc reads them page by page. */
  releaseManifestPage(afterId: string, limit: number): Promise<{ id: string; manifest: string }[]>;
}

/** Reads and writes of upload sessions and blob holds. */
export interface UploadWriteRepo extends UploadReadRepo {
  /** Inserts a session and returns its id. */
  insertUploadSession(row: Omit<UploadSessionRow, 'id'>): Promise<number>;
  closeUploadSession(id: number, at: string): Promise<void>;
  /** Records (or refreshes) a hold. */
  upsertBlobHold(row: BlobHoldRow): Promise<void>;
  /** Drops every hold on these blobs (a release references them now, or gc removed them). */
  releaseBlobHolds(hashes: readonly string[]): Promise<void>;
}
