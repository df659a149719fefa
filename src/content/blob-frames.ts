/**
 * The framed stream of the bulk blob fetch (POST /agent/blobs): many blobs of
 * one release in one response, each announced by a one-line header so the
 * reader knows where it ends without buffering it:
 *
 *     blob <64-hex hash> <decimal size>\n<size bytes>
 *     fail <64-hex hash> <corrupt|missing>\n          the server cannot send this blob
 *     end\n                                           the stream is complete
 *
 * Without the `end` line a stream that broke off between two frames would
 * look complete; the reader treats a stream without it as cut short.
 * Hashes are verified by whoever stores the bytes (BlobCache.receive); the
 * reader checks that each blob was asked for and is no larger than expected.
 */
import { LockstepError } from '../core/errors.js';

/** Why the server could not send a blob. */
export type BlobFailure = 'corrupt' | 'missing';

/** One frame as read: a blob whose `body` must be read to its end before the next frame, or a blob the server cannot send. */
export type BlobFrame =
  | { readonly kind: 'blob'; readonly hash: string; readonly size: number; readonly body: AsyncIterable<Uint8Array> }
  | { readonly kind: 'fail'; readonly hash: string; readonly reason: BlobFailure };

/** The header of a blob frame. */
export function blobHeader(hash: string, size: number): Buffer {
  return Buffer.from(`blob ${hash} ${size}\n`, 'latin1');
}

/** The frame saying the server cannot send `hash`. */
export function failFrame(hash: string, reason: BlobFailure): Buffer {
  return Buffer.from(`fail ${hash} ${reason}\n`, 'latin1');
}

/** The last line of a complete stream. */
export const END_FRAME = Buffer.from('end\n', 'latin1');

/** A header line is at most this long ("fail " + 64 hex + " corrupt"; a size has at most 16 digits). */
const MAX_HEADER_BYTES = 96;
const HEADER = /^(blob|fail) ([0-9a-f]{64}) ([0-9]{1,16}|corrupt|missing)$/;

/** A stream that does not follow the format: the transfer is worth another try (a proxy cut it, a different server). */
function broken(why: string): LockstepError {
  return new LockstepError('unavailable', `the bulk blob download broke off: ${why}`);
}

/**
 * Reads the frames of a bulk download. `expected`: the size of each hash
 * asked for (from the validated manifest); a frame for any other hash, a
 * second frame for the same hash, a size other than expected, a header too
 * long or malformed, and a stream that ends early all fail the read.
 * Each blob's `body` must be consumed completely before asking for the next frame.
 */
export async function* readBlobFrames(source: AsyncIterable<Uint8Array>, expected: ReadonlyMap<string, number>): AsyncGenerator<BlobFrame> {
  const iterator = source[Symbol.asyncIterator]();
  try {
    yield* frames(new ByteReader(iterator), expected);
  } finally {
    // A reader that stopped early (an error, a failed blob) releases the connection.
    await iterator.return?.();
  }
}

async function* frames(reader: ByteReader, expected: ReadonlyMap<string, number>): AsyncGenerator<BlobFrame> {
  const seen = new Set<string>();
  for (;;) {
    const line = await reader.line(MAX_HEADER_BYTES);
    if (line === undefined) throw broken(`the stream ended after ${seen.size} of ${expected.size} blobs without its end line`);
    if (line === 'end') {
      if (!(await reader.atEnd())) throw broken('bytes follow the end line');
      return;
    }
    const match = HEADER.exec(line);
    if (match === null) throw broken(`unexpected frame header "${line.slice(0, 80)}"`);
    const [, kind, hash = '', value = ''] = match;
    const size = expected.get(hash);
    if (size === undefined) throw broken(`the server sent blob ${hash}, which was not asked for`);
    if (seen.has(hash)) throw broken(`the server sent blob ${hash} twice`);
    seen.add(hash);
    if (kind === 'fail') {
      if (value !== 'corrupt' && value !== 'missing') throw broken(`unexpected frame header "${line}"`);
      yield { kind: 'fail', hash, reason: value };
      continue;
    }
    const announced = Number(value);
    if (!/^[0-9]+$/.test(value)) throw broken(`unexpected frame header "${line}"`);
    if (announced !== size) throw new LockstepError('failed', `the server announced ${announced} bytes for blob ${hash} but the manifest says ${size}`);
    let left = announced;
    const body = (async function* () {
      while (left > 0) {
        const chunk = await reader.take(left);
        if (chunk === undefined) throw broken(`blob ${hash} ended after ${announced - left} of ${announced} bytes`);
        left -= chunk.byteLength;
        yield chunk;
      }
    })();
    yield { kind: 'blob', hash, size: announced, body };
    // A consumer that stopped early (an error) must not leave us mid-blob.
    if (left > 0) throw new Error(`blob ${hash} was not read to its end before the next frame`);
  }
}

/** Reads lines and byte runs from a stream of chunks without copying more than the unread rest of one chunk. */
class ByteReader {
  private pending: Buffer = Buffer.alloc(0);
  private done = false;

  constructor(private readonly iterator: AsyncIterator<Uint8Array>) {}

  /** The next line without its "\n"; undefined at the end of the stream; fails on a line longer than `max`. */
  async line(max: number): Promise<string | undefined> {
    for (;;) {
      const newline = this.pending.indexOf(10);
      if (newline >= 0) {
        if (newline > max) throw broken(`a frame header longer than ${max} bytes`);
        const text = this.pending.toString('latin1', 0, newline);
        this.pending = this.pending.subarray(newline + 1);
        return text;
      }
      if (this.pending.length > max) throw broken(`a frame header longer than ${max} bytes`);
      if (!(await this.fill())) {
        if (this.pending.length > 0) throw broken('the stream ended inside a frame header');
        return undefined;
      }
    }
  }

  /** Up to `most` bytes (at least one); undefined at the end of the stream. */
  async take(most: number): Promise<Buffer | undefined> {
    if (this.pending.length === 0 && !(await this.fill())) return undefined;
    const chunk = this.pending.subarray(0, Math.min(most, this.pending.length));
    this.pending = this.pending.subarray(chunk.length);
    return chunk;
  }

  /** Whether nothing follows. */
  async atEnd(): Promise<boolean> {
    return this.pending.length === 0 && !(await this.fill());
  }

  /** Appends the next non-empty chunk; false at the end of the stream. */
  private async fill(): Promise<boolean> {
    while (!this.done) {
      const next = await this.iterator.next();
      if (next.done === true) {
        this.done = true;
        return false;
      }
      const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      if (chunk.length === 0) continue;
      this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
      return true;
    }
    return false;
  }
}
