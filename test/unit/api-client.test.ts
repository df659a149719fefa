import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiClient, type Transport, type WireRequest } from '../../src/api/api-client.js';
import { LockstepError } from '../../src/core/errors.js';

/** A transport that records each request and answers with `status` and `body`. */
function answering(status: number, body: string): Transport & { sent: WireRequest[] } {
  const sent: WireRequest[] = [];
  return {
    sent,
    send: async (request) => {
      sent.push(request);
      return { status, text: async () => body, stream: (async function* () { yield Buffer.from(body); })() };
    },
  };
}

describe('ApiClient: requests built from the route table, errors through the one decoder', () => {
  it('fills the path, drops absent query values, and sends JSON with the credential', async () => {
    const transport = answering(201, '{"id":1}');
    const client = new ApiClient(transport, 'secret');
    assert.deepEqual(await client.call('rollback', { params: { env: 'prod uction' }, body: { reason: 'bad' } }), { id: 1 });
    await client.call('history', { query: { limit: 5, env: undefined } });
    const [rollback, history] = transport.sent;
    assert.equal(rollback?.method, 'POST');
    assert.equal(rollback?.path, '/api/v1/environments/prod%20uction/rollback');
    assert.equal(rollback?.body, '{"reason":"bad"}');
    assert.equal(rollback?.headers['content-type'], 'application/json');
    assert.equal(rollback?.headers.authorization, 'Bearer secret');
    assert.equal(history?.method, 'GET');
    assert.equal(history?.path, '/api/v1/history?limit=5');
    assert.equal(history?.body, undefined);
  });

  it("keeps the server's error kind (a 409 refusal stays refused) and names the route without its query", async () => {
    const client = new ApiClient(answering(409, JSON.stringify({ error: { kind: 'refused', message: 'test has not run it' } })), undefined);
    await assert.rejects(client.call('deploy', { body: { release: 'app@1', env: 'production' } }), (error: unknown) => error instanceof LockstepError && error.kind === 'refused' && error.message === 'test has not run it');
    const proxy = new ApiClient(answering(502, '<h1>Bad Gateway</h1>'), undefined);
    await assert.rejects(proxy.call('status', { query: { env: 'test' } }), (error: unknown) => error instanceof LockstepError && error.kind === 'unavailable' && error.message === 'GET /api/v1/status answered 502: <h1>Bad Gateway</h1>');
    await assert.rejects(proxy.open('agentBlob', { params: { hash: 'a'.repeat(64) }, query: { host: 'h' } }), /GET \/api\/v1\/agent\/blobs\/a{64} answered 502/);
  });

  it('sends raw bytes for stream routes, validates answers when asked, and streams successful downloads', async () => {
    const transport = answering(200, '{"size":3,"created":true}');
    const seen: string[] = [];
    const client = new ApiClient(transport, 'c', (name, body) => {
      seen.push(name);
      return body;
    });
    await client.call('agentBlobUpload', { params: { hash: 'b'.repeat(64) }, query: { host: 'h' }, bytes: Buffer.from('abc'), size: 3 });
    assert.equal(transport.sent[0]?.method, 'PUT');
    assert.equal(transport.sent[0]?.headers['content-type'], 'application/octet-stream');
    assert.equal(transport.sent[0]?.headers['content-length'], '3');
    assert.deepEqual(seen, ['agentBlobUpload']);
    const chunks: Buffer[] = [];
    for await (const chunk of await client.open('agentBlob', { params: { hash: 'b'.repeat(64) }, query: { host: 'h' } })) chunks.push(Buffer.from(chunk));
    assert.equal(Buffer.concat(chunks).toString(), '{"size":3,"created":true}');
  });
});
