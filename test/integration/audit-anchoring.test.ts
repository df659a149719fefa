/**
 * Anchoring of the per-transaction checkpoints: the newest checkpoint goes to
 * the anchor file at least every 60 s (on the server's clock, moved by the
 * test), and at once when it covers a token change, without waiting for the
 * minute.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readAnchorFile } from '../../src/audit/anchor-file.js';
import { parseAuditLines } from '../../src/audit/audit-record.js';
import { loadOrCreateSigningKey } from '../../src/audit/signing-key.js';
import { AuditCheckpointer } from '../../src/server/audit/audit-checkpointer.js';
import { startInProcessApp, type InProcessApp } from '../helpers/in-process-app.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { until } from '../helpers/until.js';

const CONFIG = `app: shop
deploy_to: /srv/shop
environments:
  development: {}
`;

describe('audit anchoring', () => {
  let clock = Date.parse('2030-01-01T12:00:00.000Z');
  let server: InProcessApp;
  let dir: TempDir;
  let checkpointer: AuditCheckpointer;
  let anchorFile: string;

  before(async () => {
    server = await startInProcessApp(CONFIG, { now: () => new Date(clock) });
    dir = await makeTempDir('lockstep-anchor-');
    anchorFile = join(dir.path, 'audit-anchor.jsonl');
    // A checkpointer of the test's own, driven by hand, installed as the store's signer in place of the server's.
    checkpointer = new AuditCheckpointer(server.context, { key: await loadOrCreateSigningKey(dir.path), every: 100, intervalMs: 300_000, anchorFile });
    server.context.store.useAuditSigner(checkpointer.signer());
  });
  after(async () => {
    await server?.close();
    await dir?.remove();
  });

  const anchoredSeqs = async () => parseAuditLines(await readAnchorFile(anchorFile)).map((entry) => ('record' in entry && entry.record.type === 'checkpoint' ? entry.record.seq : -1));
  const head = async () => (await server.context.store.read.auditHead()).seq;
  const addHost = async (name: string) => assert.equal((await server.call('POST', '/api/v1/hosts', server.adminToken, { name, env: 'development' })).status, 200);

  it('anchors the newest checkpoint, then no more often than every 60 s for ordinary changes', async () => {
    await addHost('web-1');
    await checkpointer.run();
    assert.deepEqual(await anchoredSeqs(), [await head()]);
    const first = await head();

    await addHost('web-2');
    clock += 59_000;
    await checkpointer.run();
    assert.deepEqual(await anchoredSeqs(), [first], 'within the minute: not yet');

    clock += 1_000;
    await checkpointer.run();
    assert.deepEqual(await anchoredSeqs(), [first, await head()], 'a minute after the last anchor');
  });

  it('anchors a checkpoint covering a token change at once', async () => {
    const before = await anchoredSeqs();
    await server.token('auditor', 'viewer');
    const seq = await head();
    await until('the token change anchored', async () => ((await anchoredSeqs()).at(-1) === seq ? true : undefined));
    assert.deepEqual(await anchoredSeqs(), [...before, seq]);
  });
});
