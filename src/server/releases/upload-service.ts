/**
 * Blob intake: which uploads the server accepts and what it keeps. A
 * deployer opens an upload session for the blobs of the release it is
 * creating (POST /uploads), streams the missing ones in batches (PUT
 * /uploads/:id), and creates the release, which closes the session. A blob
 * outside any open session of the token is accepted only within the token's
 * quota; a drift upload only within its host's quota. Garbage collection
 * removes what nothing references any more (blob-gc.ts).
 */
import { Readable } from 'node:stream';
import type { UploadBatchResponse, UploadSessionView } from '../../api/schemas.js';
import { driftHeldBytes, MAX_OPEN_UPLOAD_SESSIONS, quotaRoom, tokenHeldBytes, UPLOAD_SESSION_TTL_MS, type HeldBlob } from '../../core/blob-retention.js';
import { OPEN_DRIFT_STATES } from '../../core/drift-items.js';
import { LockstepError, notFound } from '../../core/errors.js';
import { shortId } from '../../core/manifest.js';
import { SerialQueue } from '../../core/serial-queue.js';
import type { BlobHoldRow, UploadSessionRow, WriteRepo } from '../../store/store.js';
import type { ServerContext } from '../context.js';

/** Sessions whose parsed blob lists are kept in memory. */
const EXPECTED_CACHE_SESSIONS = 16;

/** The server's limits on stored blobs (server options). */
export interface BlobLimits {
  /** Bytes each deployer token may upload outside sessions that no release references yet. */
  readonly blobQuotaBytes: number;
  /** Bytes of drifted files each host's open drift items may hold. */
  readonly driftQuotaBytes: number;
  /** An unreferenced blob younger than this is kept by gc. */
  readonly gcGraceMs: number;
}

/** The 413 of an upload over its holder's quota: one line saying what is held, the limit, and the way out. */
function overQuota(what: string, heldBytes: number, quotaBytes: number, fix: string): Error & { statusCode: 413 } {
  return Object.assign(new Error(`${what} holds ${mib(heldBytes)} of unreferenced blobs and this upload would pass its quota of ${mib(quotaBytes)}; ${fix}`), { statusCode: 413 as const });
}

function mib(bytes: number): string {
  return bytes < 1024 * 1024 ? `${bytes} bytes` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function heldOf(rows: readonly BlobHoldRow[]): HeldBlob[] {
  return rows.map((row) => ({ hash: row.hash, size: Number(row.size), atMs: Date.parse(row.at) }));
}

/** Accepts uploads into the blob store under sessions and quotas. */
export class BlobIntake {
  /** Release creation, session opening and gc's removals run one at a time, so gc never removes a blob a release is being made of. */
  readonly blobLock = new SerialQueue();
  private readonly expectedBySession = new Map<number, ReadonlyMap<string, number>>();

  constructor(
    private readonly context: ServerContext,
    readonly limits: BlobLimits,
  ) {}

  /** Opens a session for the blobs of a release being created; answers which the server lacks. */
  async openSession(token: string, blobs: readonly { hash: string; size: number }[]): Promise<UploadSessionView> {
    return this.blobLock.run(async () => {
      const now = this.context.now();
      const open = await this.context.store.read.openUploadSessions(now.toISOString(), token);
      if (open.length >= MAX_OPEN_UPLOAD_SESSIONS) {
        throw new LockstepError('conflict', `token ${token} already has ${open.length} open upload sessions (the most at once); finish or wait for one to expire (sessions last ${UPLOAD_SESSION_TTL_MS / 60_000} minutes)`);
      }
      const sizes = new Map<string, number>();
      for (const blob of blobs) {
        const known = sizes.get(blob.hash);
        if (known !== undefined && known !== blob.size) throw new LockstepError('bad-input', `blob ${blob.hash} is listed with two sizes (${known} and ${blob.size})`);
        sizes.set(blob.hash, blob.size);
      }
      const missing = await this.context.blobs.missing([...sizes.keys()]);
      const expiresAt = new Date(now.getTime() + UPLOAD_SESSION_TTL_MS).toISOString();
      const missingSized = missing.map((hash) => ({ hash, size: sizes.get(hash) ?? 0 }));
      const id = await this.context.store.transaction((repo) =>
        repo.insertUploadSession({ token, blobs: JSON.stringify([...sizes.keys()]), missing: JSON.stringify(missingSized), created_at: now.toISOString(), expires_at: expiresAt, closed_at: null }),
      );
      return { id, missing, missingBytes: missingSized.reduce((sum, blob) => sum + blob.size, 0), expiresAt };
    });
  }

  /** Stores one batch of framed blobs into an open session of `token`: each must be one the session lacked, at its declared size. */
  async receiveBatch(token: string, sessionId: number, body: Readable): Promise<UploadBatchResponse> {
    const expected = await this.expectedBlobs(token, sessionId);
    return this.context.blobs.putFrames(body, (hash, size) => {
      const declared = expected.get(hash);
      if (declared === undefined) throw new LockstepError('bad-input', `blob ${shortId(hash)} is not one upload session ${sessionId} lacks; open a session listing it (POST /uploads)`);
      if (declared !== size) throw new LockstepError('bad-input', `blob ${shortId(hash)} is ${size} bytes in the stream but was listed as ${declared} bytes when session ${sessionId} opened`);
    });
  }

  /** PUT /blobs/:hash: accepted when an open session of `token` lists the blob, else only within the token's quota (held until a release references it). */
  async receiveOne(token: string, hash: string, body: Readable, contentLength: number): Promise<{ size: number; created: boolean }> {
    const now = this.context.now();
    const sessions = await this.context.store.read.openUploadSessions(now.toISOString(), token);
    if (sessions.some((session) => (JSON.parse(session.blobs) as string[]).includes(hash))) return this.context.blobs.put(hash, body);
    // A blob the store has can only be replaced by the same bytes (a repair), which stores nothing new.
    if ((await this.context.blobs.sizeOf(hash)) !== undefined) return this.context.blobs.put(hash, body);
    const holder = `token:${token}`;
    const holds = heldOf(await this.context.store.read.blobHolds(holder)).filter((hold) => hold.hash !== hash);
    const held = tokenHeldBytes(holds);
    return this.putHeld(holder, hash, body, contentLength, held, this.limits.blobQuotaBytes, () =>
      overQuota(`token ${token}`, held, this.limits.blobQuotaBytes, 'upload through `lockstep release create` (an upload session), create a release referencing the blobs already uploaded, or ask an admin to raise --blob-quota-mb'),
    );
  }

  /** PUT /agent/blobs/:hash: a drifted file's content, within the host's quota of bytes its open drift items hold. */
  async receiveDrift(host: string, hash: string, body: Readable, contentLength: number): Promise<{ size: number; created: boolean }> {
    const holder = `host:${host}`;
    const read = this.context.store.read;
    const holds = heldOf(await read.blobHolds(holder)).filter((hold) => hold.hash !== hash);
    const referenced = new Set<string>();
    for (const item of await read.driftItems({ host, states: OPEN_DRIFT_STATES })) {
      for (const attrs of [item.expected, item.actual]) {
        const sha256 = attrs === null ? undefined : (JSON.parse(attrs) as { sha256?: string }).sha256;
        if (sha256 !== undefined) referenced.add(sha256);
      }
    }
    const held = driftHeldBytes(holds, referenced, this.context.now().getTime());
    return this.putHeld(holder, hash, body, contentLength, held, this.limits.driftQuotaBytes, () =>
      overQuota(`host ${host}`, held, this.limits.driftQuotaBytes, 'revert, accept or adopt its open drift, or ask an admin to raise the server\'s --drift-quota-mb'),
    );
  }

  /** Stores a blob counted against `holder`'s quota: refused from its Content-Length, or as soon as it streams past the room left. */
  private async putHeld(holder: string, hash: string, body: Readable, contentLength: number, held: number, quota: number, refusal: () => Error): Promise<{ size: number; created: boolean }> {
    const room = quotaRoom(held, quota);
    if (Number.isFinite(contentLength) && contentLength > room) {
      body.resume();
      throw refusal();
    }
    // A generator rather than pipe(): the body's own errors (the route's size cap, a dropped connection) must reach put().
    const capped = async function* (): AsyncGenerator<Buffer> {
      let seen = 0;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        seen += chunk.length;
        if (seen > room) throw refusal();
        yield chunk;
      }
    };
    const stored = await this.context.blobs.put(hash, Readable.from(capped()));
    const at = this.context.now().toISOString();
    await this.context.store.transaction((repo) => repo.upsertBlobHold({ holder, hash, size: stored.size, at }));
    return stored;
  }

  /**
   * The blobs an open session of `token` accepts, by hash, with their sizes.
   * Parsed once per session and kept for the session's batches (a 20,000-blob
   * list re-read and re-parsed for each of its batches was a second of CPU);
   * the session's state is read again each time.
   */
  private async expectedBlobs(token: string, sessionId: number): Promise<ReadonlyMap<string, number>> {
    const session = await this.openSessionOf(token, sessionId);
    const cached = this.expectedBySession.get(sessionId);
    if (cached !== undefined) return cached;
    const expected = new Map((JSON.parse(session.missing) as { hash: string; size: number }[]).map((blob) => [blob.hash, blob.size]));
    this.expectedBySession.set(sessionId, expected);
    // Sessions last an hour and a token has at most a few open; keep the latest few.
    if (this.expectedBySession.size > EXPECTED_CACHE_SESSIONS) this.expectedBySession.delete(this.expectedBySession.keys().next().value as number);
    return expected;
  }

  private async openSessionOf(token: string, sessionId: number): Promise<UploadSessionRow> {
    const session = await this.context.store.read.uploadSession(sessionId);
    if (session === undefined || session.token !== token) throw notFound(`no upload session ${sessionId} of token ${token}; open one with POST /uploads (lockstep release create does)`);
    if (session.closed_at !== null) throw new LockstepError('conflict', `upload session ${sessionId} was closed when its release was created; open a new one`);
    if (session.expires_at <= this.context.now().toISOString()) throw new LockstepError('conflict', `upload session ${sessionId} expired at ${session.expires_at}; run lockstep release create again (it uploads only what the server still lacks)`);
    return session;
  }
}

/** Closes the upload session a release was created with, in the release's transaction; it must be `token`'s. */
export async function closeUploadSession(repo: WriteRepo, token: string, sessionId: number, at: string): Promise<void> {
  const session = await repo.uploadSession(sessionId);
  if (session === undefined || session.token !== token) throw notFound(`no upload session ${sessionId} of token ${token}`);
  if (session.closed_at === null) await repo.closeUploadSession(sessionId, at);
}
