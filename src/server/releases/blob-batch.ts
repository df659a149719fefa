/**
 * Serves many blobs of one release in one response (POST /agent/blobs), in
 * the framed format of content/blob-frames.ts. Each blob streams from disk
 * through the store's verifying reader, one after another, so memory stays at
 * one read buffer whatever the blobs' sizes; the response's backpressure
 * paces the reads.
 */
import { Readable } from 'node:stream';
import type { BlobStore, CorruptBlob } from '../../content/blob-store.js';
import { blobHeader, END_FRAME, failFrame } from '../../content/blob-frames.js';
import { LockstepError } from '../../core/errors.js';

/**
 * The framed stream of `hashes` (already checked against the caller's scope).
 * A blob found corrupt before its first byte went out becomes a `fail` frame;
 * one found corrupt at its end (after its header and most of its bytes) fails
 * the stream, so the connection is cut and the reader's retry gets the `fail`
 * frame (the copy is in quarantine by then).
 */
export function blobBatchStream(blobs: BlobStore, hashes: readonly string[], onCorrupt: (corrupt: CorruptBlob) => void): Readable {
  return Readable.from(frames(blobs, hashes, onCorrupt), { objectMode: false, highWaterMark: 1 << 20 });
}

/** Blobs up to this size are read whole (one stream chunk's worth: the verifying stream reads 1 MiB at a time). */
const SMALL_BLOB_BYTES = 1 << 20;

async function* frames(blobs: BlobStore, hashes: readonly string[], onCorrupt: (corrupt: CorruptBlob) => void): AsyncGenerator<Buffer> {
  for (const hash of hashes) {
    let small: Buffer | 'too-large' | undefined;
    try {
      small = await blobs.readSmallVerified(hash, SMALL_BLOB_BYTES, onCorrupt);
    } catch (error) {
      if (!(error instanceof LockstepError && error.kind === 'conflict')) throw error;
      yield failFrame(hash, 'corrupt');
      continue;
    }
    if (small !== 'too-large' && small !== undefined) {
      yield Buffer.concat([blobHeader(hash, small.length), small]);
      continue;
    }
    const blob = small === undefined ? undefined : await blobs.openVerified(hash, onCorrupt);
    if (blob === undefined) {
      yield failFrame(hash, (await blobs.isQuarantined(hash)) ? 'corrupt' : 'missing');
      continue;
    }
    const chunks = (blob.stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    let first: IteratorResult<Buffer>;
    try {
      // The verifying reader holds its last chunk back until the hash is known: a small blob is proven before its header goes out.
      first = await chunks.next();
    } catch (error) {
      blob.stream.destroy();
      // Only the hash check is a corrupt copy; a read error (EIO) fails the response and is logged.
      if (!(error instanceof LockstepError && error.kind === 'conflict')) throw error;
      yield failFrame(hash, 'corrupt');
      continue;
    }
    yield blobHeader(hash, blob.size);
    if (first.done === true) continue;
    yield first.value;
    for (;;) {
      const next = await chunks.next();
      if (next.done === true) break;
      yield next.value;
    }
  }
  yield END_FRAME;
}
