/**
 * The server's own CA in DATA_DIR/tls: made once with 0600 keys, reused as it
 * is on the next start, the server certificate re-issued from the same CA
 * when it must name another address, and a CA whose key is gone refused
 * rather than silently replaced (agents pin it). Fingerprints as users type them.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { certificateFingerprint, parseFingerprint } from '../../src/api/tls-trust.js';
import { isLoopbackAddress, loadOrCreateOwnTls } from '../../src/server/tls/server-tls.js';
import { withTempDir } from '../helpers/tmp.js';

describe("the server's own CA", () => {
  it('is made once with 0600 keys and reused as it is', async () => {
    await withTempDir(async (dir) => {
      const first = await loadOrCreateOwnTls(dir, ['localhost', '127.0.0.1']);
      for (const key of ['ca-key.pem', 'server-key.pem']) assert.equal((await stat(join(dir, 'tls', key))).mode & 0o777, 0o600);
      assert.equal(first.ca.fingerprint, certificateFingerprint(new X509Certificate(await readFile(join(dir, 'tls', 'ca.pem'))).raw));
      const again = await loadOrCreateOwnTls(dir, ['localhost', '127.0.0.1']);
      assert.deepEqual(again, first);
      // The served chain is the server certificate, then the CA, which issued it.
      const [leaf, ca] = (again.cert.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((pem) => new X509Certificate(pem));
      assert.ok(leaf && ca && leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
      assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
    });
  });

  it('re-issues the server certificate from the same CA when it must name another address', async () => {
    await withTempDir(async (dir) => {
      const first = await loadOrCreateOwnTls(dir, ['localhost']);
      const moved = await loadOrCreateOwnTls(dir, ['localhost', '10.1.2.3']);
      assert.equal(moved.ca.fingerprint, first.ca.fingerprint);
      assert.notEqual(moved.cert, first.cert);
      assert.equal(new X509Certificate(moved.cert).checkIP('10.1.2.3'), '10.1.2.3');
    });
  });

  it('refuses to start when the CA certificate is there but its key is gone', async () => {
    await withTempDir(async (dir) => {
      await loadOrCreateOwnTls(dir, ['localhost']);
      await rm(join(dir, 'tls', 'ca-key.pem'));
      await assert.rejects(loadOrCreateOwnTls(dir, ['localhost']), { kind: 'bad-input', message: /ca\.pem exists but its key .*ca-key\.pem does not; restore the key from a backup/ });
    });
  });

  it('tells loopback listens from the others', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost']) assert.equal(isLoopbackAddress(host), true, host);
    for (const host of ['0.0.0.0', '::', '10.0.0.1', 'lockstep.example']) assert.equal(isLoopbackAddress(host), false, host);
  });
});

describe('fingerprints as typed', () => {
  it('accepts sha256:HEX in either case and the colon-separated form openssl prints; refuses the rest', () => {
    const hex = 'ab'.repeat(32);
    assert.equal(parseFingerprint(`sha256:${hex}`), `sha256:${hex}`);
    assert.equal(parseFingerprint(`SHA256:${hex.toUpperCase()}`), `sha256:${hex}`);
    assert.equal(parseFingerprint(`sha256:${hex.match(/../g)?.join(':') ?? ''}`), `sha256:${hex}`);
    for (const bad of [hex, 'sha256:abc', `sha1:${hex}`, `sha256:${'zz'.repeat(32)}`]) assert.equal(parseFingerprint(bad), undefined, bad);
  });
});
