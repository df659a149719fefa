/**
 * The framing of a bulk blob upload: one request body carries many blobs,
 * each as a 40-byte header (the 32 raw bytes of its SHA-256, then its length
 * as a big-endian 64-bit integer) followed by its bytes. Simpler than tar (no
 * names, modes or padding: a blob is only content) and parsed as it streams.
 */
import { LockstepError } from '../core/errors.js';

/** Bytes of a frame header. */
export const FRAME_HEADER_BYTES = 40;

/** The header that precedes a blob of `size` bytes whose SHA-256 (hex) is `hash`. */
export function frameHeader(hash: string, size: number): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.write(hash, 0, 32, 'hex');
  header.writeBigUInt64BE(BigInt(size), 32);
  return header;
}

/** One frame being read: its declared hash and size, and its bytes (to be read to the end before the next frame). */
export interface Frame {
  readonly hash: string;
  readonly size: number;
  readonly bytes: AsyncIterable<Buffer>;
}

/** The frames of a stream, one at a time; fails with a bad-input error when the stream ends inside a frame. */
export async function* readFrames(source: AsyncIterable<Buffer>): AsyncGenerator<Frame> {
  const iterator = source[Symbol.asyncIterator]();
  let pending: Buffer = Buffer.alloc(0);
  const pull = async (): Promise<boolean> => {
    const next = await iterator.next();
    if (next.done === true) return false;
    const chunk = next.value;
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    return true;
  };
  for (let index = 0; ; index++) {
    while (pending.length < FRAME_HEADER_BYTES) {
      if (await pull()) continue;
      if (pending.length === 0) return;
      throw new LockstepError('bad-input', `upload stream ends inside the header of frame ${index + 1}; send whole frames (32-byte SHA-256, 8-byte length, bytes)`);
    }
    const hash = pending.subarray(0, 32).toString('hex');
    const length = pending.readBigUInt64BE(32);
    if (length > BigInt(Number.MAX_SAFE_INTEGER)) throw new LockstepError('bad-input', `frame ${index + 1} declares ${length} bytes, more than any blob may hold`);
    const size = Number(length);
    pending = pending.subarray(FRAME_HEADER_BYTES);
    let read = false;
    const bytes = async function* (): AsyncGenerator<Buffer> {
      read = true;
      let left = size;
      while (left > 0) {
        if (pending.length === 0 && !(await pull())) throw new LockstepError('bad-input', `upload stream ends inside blob ${hash} (${left} of its ${size} bytes missing)`);
        const piece = pending.subarray(0, Math.min(left, pending.length));
        pending = pending.subarray(piece.length);
        left -= piece.length;
        yield piece;
      }
    };
    const frame: Frame = { hash, size, bytes: bytes() };
    yield frame;
    if (!read) throw new Error('a frame was not read before the next one');
  }
}
