/**
 * Body bounds on real routes (Fastify inject): a viewer's or deployer's
 * oversized JSON gets 413 naming the route's limit, too deep a body 400, a
 * string over the cap 413, each in the API's error object; bodies within the
 * limits still work.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { DRIFT_BLOB_MAX_BYTES } from '../../src/api/routes.js';
import { testConfig } from '../helpers/fleet.js';
import { startInProcessApp, type InProcessApp } from '../helpers/in-process-app.js';

describe('bounded JSON bodies on the routes', () => {
  let server: InProcessApp;
  let viewer = '';
  let deployer = '';

  before(async () => {
    server = await startInProcessApp(testConfig());
    viewer = await server.token('viewer', 'viewer');
    deployer = await server.token('deployer', 'deployer');
  });

  after(async () => {
    await server.close();
  });

  /** POSTs raw JSON text; returns the status and the error object. */
  async function post(url: string, token: string | undefined, text: string): Promise<{ status: number; error: { kind: string; message: string } | undefined }> {
    const response = await server.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, payload: text });
    return { status: response.statusCode, error: (JSON.parse(response.body) as { error?: { kind: string; message: string } }).error };
  }

  it('refuses a body over the route limit with 413 naming it: /plan (viewer) at 64 KiB, /blobs/missing (deployer) at 8 MiB', async () => {
    const body = JSON.stringify({ release: 'x'.repeat(70_000), env: 'development' });
    const plan = await post('/api/v1/plan', viewer, body);
    assert.equal(plan.status, 413);
    assert.deepEqual(plan.error, { kind: 'bad-input', message: `request body is ${Buffer.byteLength(body)} bytes; this route takes at most 65536`, exitCode: 2 });
    const hashes = Array.from({ length: 130_000 }, () => 'a'.repeat(64));
    const missing = await post('/api/v1/blobs/missing', deployer, JSON.stringify({ hashes }));
    assert.equal(missing.status, 413);
    assert.match(missing.error?.message ?? '', /this route takes at most 8388608$/);
    // The same route takes a release's worth of hashes.
    const fits = await post('/api/v1/blobs/missing', deployer, JSON.stringify({ hashes: hashes.slice(0, 100_000) }));
    assert.equal(fits.status, 200);
  });

  it('refuses nesting past 64 levels with 400 and a string past the cap with 413', async () => {
    const deep = await post('/api/v1/plan', viewer, `{"release":${'['.repeat(65)}${']'.repeat(65)}}`);
    assert.equal(deep.status, 400);
    assert.equal(deep.error?.message, 'the request body nests deeper than 64 levels of arrays and objects, the most this server takes');
    const ok = await post('/api/v1/plan', viewer, `{"release":${'['.repeat(63)}${']'.repeat(63)}}`);
    assert.equal(ok.status, 400, 'within the depth cap: the schema answers');
    assert.match(ok.error?.message ?? '', /release/);
    const long = await post('/api/v1/blobs/missing', deployer, JSON.stringify({ hashes: ['a'.repeat(65_537)] }));
    assert.equal(long.status, 413);
    assert.equal(long.error?.message, 'a string in the request body is 65537 characters long; this route takes at most 65536');
  });

  it('refuses an oversized enrollment before looking at its token', async () => {
    const enroll = await post('/api/v1/agent/enroll', undefined, JSON.stringify({ token: 'x'.repeat(100_000) }));
    assert.equal(enroll.status, 413);
    assert.match(enroll.error?.message ?? '', /this route takes at most 65536$/);
  });

  it('refuses a streamed upload over its limit with 413: from its Content-Length, and sent chunked once it crosses the limit', async () => {
    const credential = await server.enroll('dev-1', 'development');
    const url = `/api/v1/agent/blobs/${'a'.repeat(64)}?host=dev-1`;
    const headers = { authorization: `Bearer ${credential}`, 'content-type': 'application/octet-stream' };
    const oversized = Buffer.alloc(DRIFT_BLOB_MAX_BYTES + 1);
    const withLength = await server.app.inject({ method: 'PUT', url, headers, payload: oversized });
    assert.equal(withLength.statusCode, 413);
    assert.equal((JSON.parse(withLength.body) as { error: { message: string } }).error.message, `request body is ${DRIFT_BLOB_MAX_BYTES + 1} bytes; this route takes at most ${DRIFT_BLOB_MAX_BYTES}`);
    const chunked = await server.app.inject({ method: 'PUT', url, headers, payload: Readable.from([oversized]) });
    assert.equal(chunked.statusCode, 413);
    assert.equal((JSON.parse(chunked.body) as { error: { message: string } }).error.message, `request body is more than ${DRIFT_BLOB_MAX_BYTES} bytes, the most this route takes`);
  });
});
