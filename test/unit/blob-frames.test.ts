/**
 * The framed stream of the bulk blob fetch, as the agent reads it: blobs
 * arrive whole and in order whatever the chunking, and every way a stream can
 * be wrong (cut short, a blob larger than the manifest says, a blob not asked
 * for, bytes that do not hash to their name) fails the read instead of
 * yielding something half-written.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BlobCache } from '../../src/content/blob-cache.js';
import { blobHeader, END_FRAME, failFrame, readBlobFrames, type BlobFrame } from '../../src/content/blob-frames.js';
import { LockstepError } from '../../src/core/errors.js';

const sha256 = (content: Buffer): string => createHash('sha256').update(content).digest('hex');
const A = Buffer.from('alpha content\n');
const B = Buffer.alloc(70_000, 'b');
const EMPTY = Buffer.alloc(0);
const expected = new Map([A, B, EMPTY].map((content) => [sha256(content), content.length]));

/** A stream of `bytes` cut into chunks of `size` bytes. */
async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let start = 0; start < bytes.length; start += size) yield bytes.subarray(start, start + size);
}

const frame = (content: Buffer): Buffer => Buffer.concat([blobHeader(sha256(content), content.length), content]);
const whole = Buffer.concat([frame(A), frame(B), frame(EMPTY), END_FRAME]);

/** Reads every frame, collecting each blob's bytes. */
async function readAll(source: AsyncIterable<Uint8Array>, sizes: ReadonlyMap<string, number> = expected): Promise<{ hash: string; content?: Buffer; failed?: string }[]> {
  const out: { hash: string; content?: Buffer; failed?: string }[] = [];
  for await (const item of readBlobFrames(source, sizes)) {
    if (item.kind === 'fail') {
      out.push({ hash: item.hash, failed: item.reason });
      continue;
    }
    const parts: Buffer[] = [];
    for await (const chunk of item.body) parts.push(Buffer.from(chunk));
    out.push({ hash: item.hash, content: Buffer.concat(parts) });
  }
  return out;
}

async function assertFails(source: AsyncIterable<Uint8Array>, pattern: RegExp, kind: LockstepError['kind'] = 'unavailable'): Promise<void> {
  await assert.rejects(readAll(source), (error: unknown) => {
    assert.ok(error instanceof LockstepError, String(error));
    assert.equal(error.kind, kind);
    assert.match(error.message, pattern);
    return true;
  });
}

describe('readBlobFrames', () => {
  it('yields every blob whole and in order, however the stream is chunked (1 byte to all at once)', async () => {
    for (const size of [1, 7, 64, 4096, whole.length]) {
      const blobs = await readAll(chunked(whole, size));
      assert.deepEqual(
        blobs.map((blob) => blob.hash),
        [sha256(A), sha256(B), sha256(EMPTY)],
        `chunks of ${size}`,
      );
      assert.deepEqual(blobs.map((blob) => blob.content), [A, B, EMPTY], `chunks of ${size}`);
    }
  });

  it('passes on a blob the server cannot send, and reads on', async () => {
    const stream = Buffer.concat([failFrame(sha256(A), 'corrupt'), frame(B), END_FRAME]);
    assert.deepEqual(await readAll(chunked(stream, 5)), [
      { hash: sha256(A), failed: 'corrupt' },
      { hash: sha256(B), content: B },
    ]);
  });

  it('a stream cut short fails as unavailable (worth a retry): inside a blob, inside a header, between frames', async () => {
    await assertFails(chunked(whole.subarray(0, frame(A).length + 100), 33), /blob [0-9a-f]{64} ended after \d+ of 70000 bytes/);
    await assertFails(chunked(whole.subarray(0, frame(A).length + 10), 33), /ended inside a frame header/);
    await assertFails(chunked(Buffer.concat([frame(A), frame(B)]), 1000), /ended after 2 of 3 blobs without its end line/);
    await assertFails(chunked(Buffer.alloc(0), 1), /ended after 0 of 3 blobs/);
  });

  it('a blob larger than the manifest says fails the read before any of its bytes are yielded', async () => {
    const oversize = Buffer.concat([blobHeader(sha256(A), A.length + 1), A, Buffer.from('x'), END_FRAME]);
    let yielded = 0;
    await assert.rejects(
      (async () => {
        for await (const item of readBlobFrames(chunked(oversize, 8), expected)) yielded += item.kind === 'blob' ? 1 : 0;
      })(),
      /announced 15 bytes for blob [0-9a-f]{64} but the manifest says 14/,
    );
    assert.equal(yielded, 0);
  });

  it('more bytes than announced: the next header is garbage and the read fails', async () => {
    const longer = Buffer.concat([blobHeader(sha256(A), A.length), A, Buffer.from('extra bytes\n'), END_FRAME]);
    await assertFails(chunked(longer, 16), /unexpected frame header "extra bytes"/);
  });

  it('a blob not asked for, the same blob twice, an overlong header and bytes after the end line fail the read', async () => {
    const stranger = Buffer.from('not asked for');
    await assertFails(chunked(Buffer.concat([frame(stranger), END_FRAME]), 9), /which was not asked for/);
    await assertFails(chunked(Buffer.concat([frame(A), frame(A), END_FRAME]), 9), /sent blob [0-9a-f]{64} twice/);
    await assertFails(chunked(Buffer.alloc(4096, 'z'), 512), /frame header longer than 96 bytes/);
    await assertFails(chunked(Buffer.concat([frame(A), END_FRAME, Buffer.from('more')]), 9), /bytes follow the end line/);
  });

  it('bytes that do not hash to their name are refused by the cache that stores them, and nothing of them is kept', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-frames-'));
    try {
      const cache = new BlobCache(dir);
      await cache.open();
      const forged = Buffer.from(A);
      forged[0] = 0x41; // same size, other bytes
      const stream = Buffer.concat([blobHeader(sha256(A), A.length), forged, END_FRAME]);
      await assert.rejects(
        (async () => {
          for await (const item of readBlobFrames(chunked(stream, 4), expected)) {
            if (item.kind === 'blob') await cache.receive(item.hash, item.body, item.size, 0o644);
          }
        })(),
        /blob [0-9a-f]{64} was corrupted in transfer: its content hashes to [0-9a-f]{64}/,
      );
      assert.deepEqual(await readdir(join(dir, 'tmp')), [], 'no tmp file is left');
      assert.equal(cache.copyOf(sha256(A)), undefined, 'nothing is stored under the hash');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('stopping early releases the source (the connection of a download)', async () => {
    let returned = false;
    const source: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]() {
        const inner = chunked(whole, 100);
        return {
          next: () => inner.next(),
          return: async () => {
            returned = true;
            return { done: true, value: undefined };
          },
        };
      },
    };
    for await (const item of readBlobFrames(source, expected)) {
      assert.equal((item as BlobFrame).kind, 'blob');
      break;
    }
    assert.equal(returned, true);
  });
});
