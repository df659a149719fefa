/**
 * The offline verifier on crafted logs: every kind of tampering is caught and
 * named by the seq of the first event it concerns. Logs are built here with
 * the same hash and signature code the server uses; times are fixed.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { parseAuditLines, type AuditRecord, type EventRecord, type ExportHeader, type NumberedRecord } from '../../src/audit/audit-record.js';
import { formatPublicKey, parsePublicKey, signCheckpoint, type CheckpointRecord } from '../../src/audit/checkpoint.js';
import { PER_TRANSACTION, verifyAuditLog, type VerifyResult } from '../../src/audit/verify-log.js';
import { auditHash, GENESIS_HASH } from '../../src/core/audit-hash.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
const KEY = generateKeyPairSync('ed25519');
const OTHER_KEY = generateKeyPairSync('ed25519');

interface Log {
  header: ExportHeader;
  records: AuditRecord[];
}

/** Events 1..count, one a second, with a checkpoint after every `every`-th (signed a second later). */
function buildLog(count: number, options: { every?: number; intervalMs?: number; exportedAfter?: number; perTransaction?: boolean } = {}): Log {
  const every = options.perTransaction ? 1 : (options.every ?? 10);
  const records: AuditRecord[] = [];
  let prevHash = GENESIS_HASH;
  for (let seq = 1; seq <= count; seq++) {
    const fields = { seq, at: at(seq), actor: seq % 2 ? 'alice' : 'bob', action: 'deployment.succeeded', target: 'env:production', details: { deployment: seq, release: `r${seq}` } };
    const hash = auditHash(prevHash, fields);
    records.push({ type: 'event', ...fields, prevHash, hash });
    prevHash = hash;
    if (options.perTransaction) records.push(signCheckpoint({ seq, hash, at: at(seq + 0.5), every: PER_TRANSACTION, intervalMs: PER_TRANSACTION }, KEY.privateKey));
    else if (seq % every === 0) records.push(signCheckpoint({ seq, hash, at: at(seq + 0.5), every, intervalMs: options.intervalMs ?? 300_000 }, KEY.privateKey));
  }
  const header: ExportHeader = { type: 'export', version: 1, exportedAt: at(count + (options.exportedAfter ?? 2)), since: null, head: { seq: count, hash: prevHash } };
  return { header, records };
}

/** Re-chains events from the first one (as an attacker who knows the scheme would), keeping their seq. */
function rechain(records: AuditRecord[], resign?: KeyObject): AuditRecord[] {
  let prevHash = GENESIS_HASH;
  return records.map((record) => {
    if (record.type === 'event') {
      const hash = auditHash(prevHash, record);
      const next = { ...record, prevHash, hash };
      prevHash = hash;
      return next;
    }
    if (record.type === 'checkpoint' && resign) return signCheckpoint({ ...record, hash: prevHash }, resign);
    return record;
  });
}

function lines(log: Log | AuditRecord[], header?: ExportHeader): NumberedRecord[] {
  const records = Array.isArray(log) ? (header ? [header, ...log] : log) : [log.header, ...log.records];
  return parseAuditLines(records.map((record) => JSON.stringify(record)).join('\n'));
}

function anchorOf(log: Log): NumberedRecord[] {
  return lines(log.records.filter((record) => record.type === 'checkpoint'));
}

function verify(input: NumberedRecord[], options: { anchor?: NumberedRecord[]; publicKey?: KeyObject; maxUnsignedAgeMs?: number } = {}): VerifyResult {
  return verifyAuditLog(input, { publicKey: options.publicKey ?? KEY.publicKey, now: new Date(T0), anchor: options.anchor, maxUnsignedAgeMs: options.maxUnsignedAgeMs });
}

function assertFailsAt(result: VerifyResult, seq: number, word: RegExp, kind?: string): void {
  assert.equal(result.ok, false, `expected a failure at seq ${seq}, got ${JSON.stringify(result)}`);
  if (result.ok) return;
  assert.equal(result.seq, seq, `failed at seq ${result.seq}: ${result.problem}`);
  assert.match(result.problem, word);
  if (kind !== undefined) assert.equal(result.kind, kind);
}

const eventAt = (records: AuditRecord[], seq: number) => records.findIndex((record) => record.type === 'event' && record.seq === seq);

describe('audit verify (offline, pure)', () => {
  it('accepts an untouched log and reports what it holds', () => {
    const log = buildLog(25);
    const result = verify(lines(log), { anchor: anchorOf(log) });
    assert.deepEqual(result, { ok: true, firstSeq: 1, lastSeq: 25, events: 25, checkpoints: 2, lastCheckpoint: { seq: 20, at: at(20.5) }, unsigned: 5, anchored: 2 });
  });

  it('names an event whose field was changed', () => {
    const log = buildLog(25);
    const index = eventAt(log.records, 5);
    log.records[index] = { ...(log.records[index] as EventRecord), actor: 'mallory' };
    assertFailsAt(verify(lines(log)), 5, /altered/);
  });

  it('names an event that was changed and rehashed, though the next one is where the chain breaks', () => {
    const log = buildLog(25);
    const index = eventAt(log.records, 5);
    const event = { ...(log.records[index] as EventRecord), target: 'env:test' };
    log.records[index] = { ...event, hash: auditHash(event.prevHash, event) };
    assertFailsAt(verify(lines(log)), 5, /altered: event 5 was changed and its hash recomputed/);
  });

  it('names a removed event', () => {
    const log = buildLog(25);
    log.records.splice(eventAt(log.records, 7), 1);
    assertFailsAt(verify(lines(log)), 7, /removed: event 7 is missing/);
  });

  it('names gaps in sequence numbers as failures', () => {
    const log = buildLog(25);
    log.records.splice(eventAt(log.records, 8), 2);
    assertFailsAt(verify(lines(log)), 8, /removed: event 8/);
  });

  it('names the first of two lines that were swapped', () => {
    const log = buildLog(25);
    const a = eventAt(log.records, 4);
    [log.records[a], log.records[a + 1]] = [log.records[a + 1]!, log.records[a]!];
    assertFailsAt(verify(lines(log)), 4, /reordered/);
  });

  it('names the first of two rows whose seq numbers were exchanged (as in a database)', () => {
    const log = buildLog(25);
    const a = eventAt(log.records, 4);
    const first = log.records[a] as EventRecord;
    const second = log.records[a + 1] as EventRecord;
    log.records[a] = { ...second, seq: 4 };
    log.records[a + 1] = { ...first, seq: 5 };
    assertFailsAt(verify(lines(log)), 4, /reordered/);
  });

  it('names an inserted event when the ones after it were renumbered', () => {
    const log = buildLog(25);
    const index = eventAt(log.records, 6);
    const before = log.records[index - 1] as EventRecord;
    const forged = { seq: 6, at: at(5.5), actor: 'alice', action: 'approval.given', target: 'deployment:3', details: {} };
    const shifted = log.records.map((record) => (record.type === 'event' && record.seq >= 6 ? { ...record, seq: record.seq + 1 } : record));
    shifted.splice(index, 0, { type: 'event', ...forged, prevHash: before.hash, hash: auditHash(before.hash, forged) });
    assertFailsAt(verify(lines(shifted, { ...log.header, head: { ...log.header.head, seq: 26 } })), 6, /inserted: event 6/);
  });

  it('names a forged, correctly chained row appended at the tail with a time before the last checkpoint', () => {
    const log = buildLog(25);
    const last = log.records.at(-1) as EventRecord;
    const forged = { seq: 26, at: at(-3600), actor: 'alice', action: 'approval.given', target: 'deployment:1', details: {} };
    const hash = auditHash(last.hash, forged);
    log.records.push({ type: 'event', ...forged, prevHash: last.hash, hash });
    assertFailsAt(verify(lines(log.records, { ...log.header, head: { seq: 26, hash } })), 26, /inserted: event 26 is dated/);
  });

  it('names events after the chain head (appended without moving it)', () => {
    const log = buildLog(25);
    const last = log.records.at(-1) as EventRecord;
    const forged = { seq: 26, at: at(26), actor: 'alice', action: 'x', target: 'y', details: {} };
    log.records.push({ type: 'event', ...forged, prevHash: last.hash, hash: auditHash(last.hash, forged) });
    assertFailsAt(verify(lines(log)), 26, /appended/);
  });

  it('names a tail cut off behind the chain head', () => {
    const log = buildLog(25);
    log.records.splice(eventAt(log.records, 23));
    assertFailsAt(verify(lines(log)), 23, /truncated: the chain head is at seq 25/);
  });

  it('fails when a checkpoint is missing', () => {
    const log = buildLog(25);
    log.records = log.records.filter((record) => !(record.type === 'checkpoint' && record.seq === 10));
    assertFailsAt(verify(lines(log)), 10, /missing checkpoint/);
  });

  it('fails when the unsigned tail is longer than the checkpoint cadence', () => {
    const log = buildLog(25, { exportedAfter: 600 });
    log.records = log.records.filter((record) => !(record.type === 'checkpoint' && record.seq === 20));
    assertFailsAt(verify(lines(log), { maxUnsignedAgeMs: 3_600_000 }), 20, /missing checkpoint: 15 events after seq 10/);
  });

  it('fails on a checkpoint with a bad signature, an altered claim, or another key', () => {
    const log = buildLog(25);
    const index = log.records.findIndex((record) => record.type === 'checkpoint' && record.seq === 10);
    const checkpoint = log.records[index] as CheckpointRecord;
    const tampered = structuredClone(log);
    tampered.records[index] = { ...checkpoint, signature: Buffer.alloc(64).toString('base64') };
    assertFailsAt(verify(lines(tampered)), 10, /invalid signature/);
    tampered.records[index] = { ...checkpoint, at: at(11) };
    assertFailsAt(verify(lines(tampered)), 10, /invalid signature/);
    assertFailsAt(verify(lines(log), { publicKey: OTHER_KEY.publicKey }), 10, /invalid signature/);
  });

  it('fails when the unsigned tail is older than the checkpoint interval allows', () => {
    const fresh = buildLog(25, { exportedAfter: 60 });
    assert.equal(verify(lines(fresh)).ok, true);
    const stale = buildLog(25, { exportedAfter: 3600 });
    assertFailsAt(verify(lines(stale)), 21, /unsigned: no checkpoint covers event 21/);
    assertFailsAt(verify(lines(fresh), { maxUnsignedAgeMs: 10_000 }), 21, /unsigned/);
  });

  it('with the anchor file, names a tail cut off at a checkpoint (which the log alone cannot show)', () => {
    const log = buildLog(25);
    const anchor = anchorOf(log);
    const cut = log.records.slice(0, eventAt(log.records, 11));
    const head = cut.at(-2) as EventRecord;
    const header = { ...log.header, head: { seq: 10, hash: head.hash } };
    assert.equal(verify(lines(cut, header)).ok, true, 'a clean cut at a checkpoint looks complete without the anchor');
    assertFailsAt(verify(lines(cut, header), { anchor }), 11, /truncated: the anchor file has a checkpoint at seq 20/);
  });

  it('with the anchor file, catches a log rewritten and re-signed with a stolen key', () => {
    const log = buildLog(25);
    const anchor = anchorOf(log);
    const index = eventAt(log.records, 5);
    log.records[index] = { ...(log.records[index] as EventRecord), actor: 'mallory' };
    const rewritten = rechain(log.records, KEY.privateKey);
    const last = rewritten.at(-1) as EventRecord;
    const header = { ...log.header, head: { seq: 25, hash: last.hash } };
    assert.equal(verify(lines(rewritten, header)).ok, true, 'a rewrite signed with the real key verifies without the anchor');
    assertFailsAt(verify(lines(rewritten, header), { anchor }), 10, /rewritten: the chain at seq 10 differs from the checkpoint in the anchor file \(the change is after seq 0\)/);
  });

  it('rejects an anchor file with a forged line', () => {
    const log = buildLog(25);
    const anchor = lines([signCheckpoint({ seq: 10, hash: GENESIS_HASH.replace(/^0/, '1'), at: at(10), every: 10, intervalMs: 300_000 }, OTHER_KEY.privateKey)]);
    assertFailsAt(verify(lines(log), { anchor }), 10, /anchor file line 1/);
  });

  it('verifies an export that starts at a checkpoint (--since)', () => {
    const log = buildLog(25);
    const start = log.records.findIndex((record) => record.type === 'checkpoint' && record.seq === 10);
    const since = log.records.slice(start);
    const result = verify(lines(since, { ...log.header, since: at(12) }), { anchor: anchorOf(log) });
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.equal(result.ok && result.firstSeq, 11);
  });

  it('names the seq after a line that is not a record', () => {
    const log = buildLog(25);
    const text = [log.header, ...log.records].map((record) => JSON.stringify(record));
    text[eventAt(log.records, 9) + 1] = '{"type":"event","seq":9,';
    assertFailsAt(verifyAuditLog(parseAuditLines(text.join('\n')), { publicKey: KEY.publicKey, now: new Date(T0) }), 9, /not a valid audit record/);
  });

  it('reads the public key in the one-line form and as PEM', () => {
    const line = formatPublicKey(KEY.publicKey);
    assert.match(line, /^ed25519:[A-Za-z0-9_-]{43}$/);
    assert.equal(formatPublicKey(parsePublicKey(line)!), line);
    assert.equal(formatPublicKey(parsePublicKey(KEY.publicKey.export({ format: 'pem', type: 'spki' }).toString())!), line);
    assert.equal(parsePublicKey('ed25519:short'), undefined);
  });
});

describe('audit verify, log signed per transaction (no unsigned tail)', () => {
  /** The last `n` events re-chained with a changed actor and the head moved, as an attacker with the database but not the key would. */
  function rewriteTail(log: Log, from: number, keepCheckpoints: boolean): ExportHeader {
    const records = log.records.filter((record) => keepCheckpoints || record.type !== 'checkpoint' || record.seq < from);
    const changed = records.map((record) => (record.type === 'event' && record.seq >= from ? { ...record, actor: 'mallory' } : record));
    log.records = rechain(changed);
    const last = log.records.filter((record) => record.type === 'event').at(-1) as EventRecord;
    return { ...log.header, head: { seq: last.seq, hash: last.hash } };
  }

  it('accepts an untouched log: every event is signed', () => {
    const log = buildLog(25, { perTransaction: true, exportedAfter: 3600 });
    const result = verify(lines(log), { anchor: anchorOf(log) });
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.equal(result.ok && result.unsigned, 0);
  });

  it('tail attack 1: events rewritten after the last checkpoint with recomputed hashes are an unsigned tail (rewritten if their checkpoints stay)', () => {
    const kept = buildLog(25, { perTransaction: true });
    const keptHeader = rewriteTail(kept, 23, true);
    assertFailsAt(verify(lines(kept.records, keptHeader)), 23, /rewritten: the chain up to seq 23/, 'rewritten');
    const dropped = buildLog(25, { perTransaction: true });
    const anchor = anchorOf(dropped);
    const header = rewriteTail(dropped, 23, false);
    assertFailsAt(verify(lines(dropped.records, header)), 23, /unsigned tail: events 23\.\.25 follow the last signed checkpoint \(seq 22\)/, 'unsigned tail');
    // The anchor file disagrees at seq 25 too, but the first event the log leaves unsigned is named.
    assertFailsAt(verify(lines(dropped.records, header), { anchor }), 23, /unsigned tail/, 'unsigned tail');
  });

  it('tail attack 2: an event inserted after the last checkpoint, dated now and chained, is an unsigned tail', () => {
    const log = buildLog(25, { perTransaction: true });
    const last = log.records.filter((record) => record.type === 'event').at(-1) as EventRecord;
    const forged = { seq: 26, at: at(25.7), actor: 'alice', action: 'approval.given', target: 'deployment:1', details: {} };
    const hash = auditHash(last.hash, forged);
    log.records.push({ type: 'event', ...forged, prevHash: last.hash, hash });
    assertFailsAt(verify(lines(log.records, { ...log.header, head: { seq: 26, hash } })), 26, /unsigned tail: events 26\.\.26/, 'unsigned tail');
  });

  it('tail attack 3: the tail cut with its checkpoints and the head moved back is caught with the anchor file', () => {
    const log = buildLog(25, { perTransaction: true });
    const anchor = anchorOf(log);
    const cut = log.records.filter((record) => record.type !== 'export' && record.seq <= 22);
    const head = cut.filter((record) => record.type === 'event').at(-1) as EventRecord;
    const header = { ...log.header, head: { seq: 22, hash: head.hash } };
    assert.equal(verify(lines(cut, header)).ok, true, 'a cut at a transaction boundary looks complete without an anchor');
    assertFailsAt(verify(lines(cut, header), { anchor }), 23, /truncated: the anchor file has a checkpoint at seq 25/, 'truncated');
  });

  it('a per-transaction checkpoint needs no event cadence: one transaction may append many events', () => {
    const log = buildLog(25, { perTransaction: true });
    log.records = log.records.filter((record) => record.type !== 'checkpoint' || record.seq === 3 || record.seq === 25);
    assert.equal(verify(lines(log)).ok, true);
  });
});
