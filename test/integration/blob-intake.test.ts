/**
 * Blob intake on the real application (Fastify inject, real SQLite and blob
 * store): an upload session accepts exactly the blobs it lacked, in framed
 * batches, until it expires or its release closes it; a blob outside every
 * open session is accepted only within the token's quota (freed when a
 * release references it); drift uploads have a per-host quota; gc lists and
 * removes only unreferenced blobs past the grace period, audited.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { frameHeader } from '../../src/content/upload-frames.js';
import { testConfig } from '../helpers/fleet.js';
import { startInProcessApp, type InProcessApp } from '../helpers/in-process-app.js';

const sha = (content: Buffer): string => createHash('sha256').update(content).digest('hex');
const framed = (...blobs: Buffer[]): Buffer => Buffer.concat(blobs.flatMap((blob) => [frameHeader(sha(blob), blob.length), blob]));
const entry = (path: string, content: Buffer) => ({ path, type: 'file', mode: 0o644, size: content.length, sha256: sha(content) });
const DAY_MS = 24 * 60 * 60_000;

describe('blob intake: upload sessions, quotas and gc', () => {
  let server: InProcessApp;
  let offsetMs = 0;
  let deployer: string;
  const blobPath = (content: Buffer): string => join(server.blobDir, sha(content).slice(0, 2), sha(content));
  const exists = async (content: Buffer): Promise<boolean> => (await stat(blobPath(content)).catch(() => undefined)) !== undefined;
  /** Makes a stored blob look written `ms` ago. */
  const age = async (content: Buffer, ms: number): Promise<void> => {
    const then = new Date(Date.now() - ms);
    await utimes(blobPath(content), then, then);
  };

  before(async () => {
    server = await startInProcessApp(testConfig(), { now: () => new Date(Date.now() + offsetMs), blobLimits: { blobQuotaBytes: 100, driftQuotaBytes: 100 } });
    deployer = await server.token('ci', 'deployer');
  });
  after(async () => server.close());

  it('a session accepts exactly the blobs it lacked, in framed batches, and closes with its release', async () => {
    const present = Buffer.from('already on the server\n');
    const first = Buffer.from('first new file\n');
    const second = Buffer.from('second new file\n');
    const stranger = Buffer.from('not in the session\n');
    assert.equal((await server.call('PUT', `/api/v1/blobs/${sha(present)}`, deployer, present)).status, 200);

    const opened = await server.call('POST', '/api/v1/uploads', deployer, { blobs: [present, first, second].map((blob) => ({ hash: sha(blob), size: blob.length })) });
    assert.equal(opened.status, 201);
    assert.deepEqual([...opened.json.missing].sort(), [sha(first), sha(second)].sort());
    assert.equal(opened.json.missingBytes, first.length + second.length);

    const refused = await server.call('PUT', `/api/v1/uploads/${opened.json.id}`, deployer, framed(stranger));
    assert.equal(refused.status, 400);
    assert.match(refused.json.error.message, new RegExp(`^blob ${sha(stranger).slice(0, 12)}.* is not one upload session ${opened.json.id} lacks`));
    assert.equal(await exists(stranger), false, 'nothing of a refused frame is stored');

    const other = await server.token('other', 'deployer');
    const foreign = await server.call('PUT', `/api/v1/uploads/${opened.json.id}`, other, framed(first));
    assert.equal(foreign.status, 404, 'a session belongs to the token that opened it');

    const forged = Buffer.concat([frameHeader(sha(first), first.length), Buffer.from(first.toString().toUpperCase())]);
    const mismatch = await server.call('PUT', `/api/v1/uploads/${opened.json.id}`, deployer, forged);
    assert.equal(mismatch.status, 400, 'a frame whose bytes do not hash to its name is refused');
    assert.match(mismatch.json.error.message, new RegExp(`^blob content does not match its hash: expected ${sha(first)}`));
    const resized = await server.call('PUT', `/api/v1/uploads/${opened.json.id}`, deployer, Buffer.concat([frameHeader(sha(first), second.length), second]));
    assert.equal(resized.status, 400);
    assert.match(resized.json.error.message, new RegExp(`is ${second.length} bytes in the stream but was listed as ${first.length} bytes when session ${opened.json.id} opened$`));
    assert.equal(await exists(first), false, 'and nothing of it is stored');
    const truncated = await server.call('PUT', `/api/v1/uploads/${opened.json.id}`, deployer, framed(first).subarray(0, 50));
    assert.equal(truncated.status, 400);
    assert.match(truncated.json.error.message, new RegExp(`^upload stream ends inside blob ${sha(first)}`));

    const batch = await server.call('PUT', `/api/v1/uploads/${opened.json.id}`, deployer, framed(first, second));
    assert.equal(batch.status, 200, JSON.stringify(batch.json));
    assert.deepEqual(batch.json, { blobs: 2, bytes: first.length + second.length, created: 2 });

    const created = await server.call('POST', '/api/v1/releases', deployer, {
      version: 'session-1',
      entries: [entry('present.txt', present), entry('first.txt', first), entry('second.txt', second)],
      uploadSession: opened.json.id,
    });
    assert.equal(created.status, 200, JSON.stringify(created.json));
    const late = await server.call('PUT', `/api/v1/uploads/${opened.json.id}`, deployer, framed(first));
    assert.equal(late.status, 409);
    assert.match(late.json.error.message, /was closed when its release was created/);
  });

  it('an expired session accepts nothing; a blob outside every open session must fit the token quota until a release references it', async () => {
    const small = Buffer.alloc(60, 1);
    const large = Buffer.alloc(60, 2);
    const opened = await server.call('POST', '/api/v1/uploads', deployer, { blobs: [small, large].map((blob) => ({ hash: sha(blob), size: blob.length })) });
    offsetMs = 2 * 60 * 60_000;
    try {
      const expired = await server.call('PUT', `/api/v1/uploads/${opened.json.id}`, deployer, framed(small));
      assert.equal(expired.status, 409);
      assert.match(expired.json.error.message, new RegExp(`^upload session ${opened.json.id} expired at .*; run lockstep release create again`));

      assert.equal((await server.call('PUT', `/api/v1/blobs/${sha(small)}`, deployer, small)).status, 200, '60 bytes fit the 100-byte quota');
      const over = await server.call('PUT', `/api/v1/blobs/${sha(large)}`, deployer, large);
      assert.equal(over.status, 413);
      assert.equal(over.json.error.message, 'token ci holds 60 bytes of unreferenced blobs and this upload would pass its quota of 100 bytes; upload through `lockstep release create` (an upload session), create a release referencing the blobs already uploaded, or ask an admin to raise --blob-quota-mb');
      assert.equal(await exists(large), false, 'nothing of a refused upload is stored');

      assert.equal((await server.call('POST', '/api/v1/releases', deployer, { version: 'quota-1', entries: [entry('small.bin', small)] })).status, 200);
      assert.equal((await server.call('PUT', `/api/v1/blobs/${sha(large)}`, deployer, large)).status, 200, 'a release referencing the first blob freed its quota');
    } finally {
      offsetMs = 0;
    }
  });

  it('drift uploads are held to the host quota', async () => {
    const credential = await server.enroll('dev-1', 'development');
    const one = Buffer.alloc(70, 3);
    const two = Buffer.alloc(70, 4);
    assert.equal((await server.call('PUT', `/api/v1/agent/blobs/${sha(one)}?host=dev-1`, credential, one)).status, 200);
    const over = await server.call('PUT', `/api/v1/agent/blobs/${sha(two)}?host=dev-1`, credential, two);
    assert.equal(over.status, 413);
    assert.match(over.json.error.message, /^host dev-1 holds 70 bytes of unreferenced blobs and this upload would pass its quota of 100 bytes; revert, accept or adopt its open drift/);
  });

  it('gc --dry-run lists, gc removes only unreferenced blobs older than the grace period, and audits it', async () => {
    const referenced = Buffer.from('in a release\n');
    const old = Buffer.from('old and unreferenced\n');
    const young = Buffer.from('young and unreferenced\n');
    const pending = Buffer.from('in an open upload session\n');
    const admin = server.adminToken;
    // Stored as an admin (its own quota), then aged.
    for (const blob of [referenced, old, young, pending]) assert.equal((await server.call('PUT', `/api/v1/blobs/${sha(blob)}`, admin, blob)).status, 200);
    assert.equal((await server.call('POST', '/api/v1/releases', admin, { version: 'gc-1', entries: [entry('kept.txt', referenced)] })).status, 200);
    assert.equal((await server.call('POST', '/api/v1/uploads', admin, { blobs: [{ hash: sha(pending), size: pending.length }] })).status, 201);
    for (const blob of [referenced, old, pending]) await age(blob, 2 * DAY_MS);

    const listed = await server.call('POST', '/api/v1/gc', admin, { dryRun: true });
    assert.equal(listed.status, 200);
    const listedHashes = (listed.json.blobs as { hash: string }[]).map((blob) => blob.hash);
    assert.ok(listedHashes.includes(sha(old)), 'the old unreferenced blob is listed');
    for (const kept of [referenced, young, pending]) assert.ok(!listedHashes.includes(sha(kept)), 'referenced, young and pending blobs are not listed');
    assert.equal(await exists(old), true, 'a dry run removes nothing');

    const removed = await server.call('POST', '/api/v1/gc', admin, {});
    assert.equal(removed.status, 200);
    assert.deepEqual((removed.json.blobs as { hash: string }[]).map((blob) => blob.hash).sort(), [...listedHashes].sort());
    assert.equal(await exists(old), false);
    for (const kept of [referenced, young, pending]) assert.equal(await exists(kept), true);
    const audit = await server.call('GET', '/api/v1/audit?limit=10000', admin);
    const event = (audit.json.events as { action: string; details: { count: number; bytes: number } }[]).filter((one) => one.action === 'blob.gc').at(-1);
    assert.deepEqual(event?.details, { count: removed.json.count, bytes: removed.json.bytes, graceSeconds: 86_400 });

    const viewer = await server.token('looker', 'viewer');
    assert.equal((await server.call('POST', '/api/v1/gc', viewer, {})).status, 403, 'gc is for admins');
  });
});
