import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { errorBody, responseError } from '../../src/api/errors.js';
import { HTTP_STATUS, type ErrorKind } from '../../src/core/errors.js';
import { isTransient } from '../../src/agent/retry.js';

describe('responseError: the one decoder of API errors (CLI and agent alike)', () => {
  it("keeps the server's kind and message for every kind it sends (a 409 'refused' stays refused)", () => {
    for (const [kind, status] of Object.entries(HTTP_STATUS) as [ErrorKind, number][]) {
      const error = responseError(status, JSON.stringify({ error: { kind, message: `it was ${kind}`, details: { why: 1 } } }), 'POST /x');
      assert.equal(error.kind, kind);
      assert.equal(error.message, `it was ${kind}`);
      assert.deepEqual(error.details, { why: 1 });
    }
  });

  it('falls back to the status when the body is not the API error object', () => {
    const table: [number, string, ErrorKind][] = [
      [401, '', 'unauthorized'],
      [403, 'nope', 'forbidden'],
      [404, '<html>', 'not-found'],
      [409, '{}', 'conflict'],
      [429, 'slow down', 'rate-limited'],
      [408, '', 'unavailable'],
      [502, '<h1>Bad Gateway</h1>', 'unavailable'],
      [413, 'too large', 'bad-input'],
    ];
    for (const [status, text, kind] of table) {
      const error = responseError(status, text, 'GET /api/v1/x');
      assert.equal(error.kind, kind, `${status}`);
      assert.equal(error.message, `GET /api/v1/x answered ${status}: ${text.trim() || 'no body'}`);
    }
  });

  it("a server bug (kind 'internal') is worth another attempt, and so is a 429; a refusal is not", () => {
    assert.ok(isTransient(responseError(500, JSON.stringify({ error: { kind: 'internal', message: 'internal server error' } }), 'x')));
    assert.ok(isTransient(responseError(429, JSON.stringify({ error: { kind: 'rate-limited', message: 'too many' } }), 'x')));
    assert.ok(!isTransient(responseError(409, JSON.stringify({ error: { kind: 'refused', message: 'no' } }), 'x')));
    assert.ok(!isTransient(responseError(500, JSON.stringify({ error: { kind: 'failed', message: 'corrupt' } }), 'x')));
  });
});

describe('ifMissing', () => {
  it('turns only "no such file" into undefined; every other filesystem error is thrown', async () => {
    const { ifMissing } = await import('../../src/core/errors.js');
    const { lstat, readFile } = await import('node:fs/promises');
    assert.equal(await ifMissing(lstat('/nonexistent/lockstep-test')), undefined);
    assert.equal(await ifMissing(lstat('/etc/hostname/child')), undefined, 'ENOTDIR: a parent is a file');
    assert.ok((await ifMissing(lstat('/')))?.isDirectory());
    await assert.rejects(ifMissing(readFile('/')), (error: NodeJS.ErrnoException) => error.code === 'EISDIR');
    await assert.rejects(ifMissing(Promise.reject(Object.assign(new Error('denied'), { code: 'EACCES' }))), /denied/);
  });
});

describe('errorBody: the one error object (server answers, CLI --json errors)', () => {
  it('carries the kind, the message, the exit code the CLI uses, and a hint or details only when given', () => {
    assert.deepEqual(errorBody('refused', 'no'), { error: { kind: 'refused', message: 'no', exitCode: 3 } });
    assert.deepEqual(errorBody('internal', 'bug'), { error: { kind: 'internal', message: 'bug', exitCode: 1 } });
    assert.deepEqual(errorBody('bad-input', 'x', { hint: 'see `lockstep --help`', details: [1] }), { error: { kind: 'bad-input', message: 'x', hint: 'see `lockstep --help`', exitCode: 2, details: [1] } });
    const decoded = responseError(409, JSON.stringify(errorBody('refused', 'no')), 'x');
    assert.equal(decoded.kind, 'refused');
  });
});
