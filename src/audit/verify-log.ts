/**
 * Offline verification of an audit log: the hash chain, the signed
 * checkpoints, the checkpoint cadence, and (given the anchor file) that the
 * log was not truncated or rewritten behind the anchored checkpoints. Pure:
 * the same function checks an export file and the live database's export.
 */
import type { KeyObject } from 'node:crypto';
import { auditHash, GENESIS_HASH } from '../core/audit-hash.js';
import { formatDuration } from '../core/duration.js';
import type { EventRecord, ExportHeader, NumberedRecord } from './audit-record.js';
import { checkpointSignatureValid, type CheckpointRecord } from './checkpoint.js';

/** The server's defaults, used for a log that holds no checkpoint yet. */
export const DEFAULT_CHECKPOINT_EVERY = 100;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 5 * 60_000;

/** A checkpoint's `every` (and `intervalMs`) when the server signs each transaction's head as it commits. */
export const PER_TRANSACTION = 0;

/**
 * How much earlier than the checkpoint before it an event may be dated. An
 * event's time is read before its transaction commits, so a checkpoint signed
 * meanwhile can be a little newer than the next event; more is backdating.
 */
export const CLOCK_SLACK_MS = 60_000;

export interface VerifyOptions {
  readonly publicKey: KeyObject;
  /** The time to judge the unsigned tail against when the log has no export header (it then uses exportedAt). */
  readonly now: Date;
  /** Checkpoints from the anchor file, checked against the log. */
  readonly anchor?: readonly NumberedRecord[] | undefined;
  /** How old an event may be without a checkpoint covering it; default twice the signed checkpoint interval. */
  readonly maxUnsignedAgeMs?: number | undefined;
}

/** What a verified log holds. */
export interface VerifiedLog {
  readonly ok: true;
  readonly firstSeq: number | null;
  readonly lastSeq: number | null;
  readonly events: number;
  readonly checkpoints: number;
  readonly lastCheckpoint: { readonly seq: number; readonly at: string } | null;
  /** Events after the last checkpoint. */
  readonly unsigned: number;
  /** Anchor-file checkpoints matched against the log. */
  readonly anchored: number;
}

/** The classes of tampering the verifier names (the word that starts each problem). */
export type TamperClass = 'altered' | 'removed' | 'inserted' | 'reordered' | 'rewritten' | 'truncated' | 'appended' | 'unsigned tail' | 'unsigned' | 'missing checkpoint' | 'invalid';

/** The first problem found: the seq of the event it concerns, its class and what is wrong. */
export interface VerificationFailure {
  readonly ok: false;
  readonly seq: number;
  readonly kind: TamperClass;
  readonly problem: string;
}

export type VerifyResult = VerifiedLog | VerificationFailure;

const CLASSES: readonly TamperClass[] = ['altered', 'removed', 'inserted', 'reordered', 'rewritten', 'truncated', 'appended', 'unsigned tail', 'unsigned', 'missing checkpoint'];

function fail(seq: number, problem: string): VerificationFailure {
  // Problems start with their class; signatures and unreadable lines are 'invalid'.
  const kind = CLASSES.find((name) => problem.startsWith(`${name}:`)) ?? 'invalid';
  return { ok: false, seq, kind, problem };
}

/** Verifies parsed export lines; returns the first failure (lowest seq) or a summary. */
export function verifyAuditLog(lines: readonly NumberedRecord[], options: VerifyOptions): VerifyResult {
  const anchorResult = readAnchor(options.anchor ?? [], options.publicKey);
  if ('problem' in anchorResult) return anchorResult;
  const anchors = anchorResult;

  let header: ExportHeader | undefined;
  let started = false;
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let firstSeq: number | null = null;
  let lastEvent: EventRecord | undefined;
  let lastCheckpoint: CheckpointRecord | undefined;
  let lastMatchingAnchor = 0;
  let events = 0;
  let checkpoints = 0;
  let anchored = 0;
  const eventsOnly = (): EventRecord[] => lines.flatMap((entry) => ('record' in entry && entry.record.type === 'event' ? [entry.record] : []));

  // A chain that differs from the anchor file is reported only if nothing earlier is wrong: an unsigned tail found after it starts earlier.
  let anchorFailure: VerificationFailure | undefined;
  const scanFailure = ((): VerificationFailure | undefined => {
    for (let index = 0; index < lines.length; index++) {
      const entry = lines[index]!;
      if ('invalid' in entry) return fail(expectedSeq, `line ${entry.line} is not a valid audit record (${entry.invalid})`);
      const record = entry.record;

      if (record.type === 'export') {
        if (index !== 0) return fail(expectedSeq, `line ${entry.line}: an export header in the middle of the log`);
        header = record;
        continue;
      }

      if (record.type === 'checkpoint') {
        if (!checkpointSignatureValid(record, options.publicKey)) {
          return fail(record.seq, `the checkpoint at seq ${record.seq} has an invalid signature (forged, altered, or signed by another key than ${keyHint(record)})`);
        }
        if (!started) {
          // An export --since starts with the last checkpoint before its first event: the chain continues from it.
          if (lastCheckpoint) return fail(record.seq, `two checkpoints before the first event`);
          lastCheckpoint = record;
          expectedSeq = record.seq + 1;
          prevHash = record.hash;
          checkpoints++;
          continue;
        }
        const coveredSeq = lastEvent?.seq ?? expectedSeq - 1;
        if (record.seq > coveredSeq) return fail(coveredSeq + 1, `removed: events ${coveredSeq + 1}..${record.seq} are missing before the checkpoint at seq ${record.seq}`);
        if (record.seq < coveredSeq) return fail(record.seq, `reordered: the checkpoint for seq ${record.seq} appears after event ${coveredSeq}`);
        if (record.hash !== prevHash) {
          return fail(record.seq, `rewritten: the chain up to seq ${record.seq} does not match its signed checkpoint (an event after seq ${lastCheckpoint?.seq ?? 0} was changed and the chain recomputed)`);
        }
        const sinceSeq = lastCheckpoint?.seq ?? 0;
        // every 0: signed per transaction, so no event count bounds the gap (one transaction may append many).
        if (record.every !== PER_TRANSACTION && record.seq - sinceSeq > record.every) {
          return fail(sinceSeq + record.every, `missing checkpoint: none between seq ${sinceSeq} and seq ${record.seq}, but the server signs one at least every ${record.every} events`);
        }
        if (lastCheckpoint && Date.parse(record.at) < Date.parse(lastCheckpoint.at)) {
          return fail(record.seq, `reordered: the checkpoint at seq ${record.seq} is dated before the one at seq ${lastCheckpoint.seq}`);
        }
        lastCheckpoint = record;
        checkpoints++;
        continue;
      }

      // An event.
      if (!started) {
        started = true;
        if (record.seq !== expectedSeq) {
          return fail(expectedSeq, expectedSeq === 1 ? `removed: the log starts at seq ${record.seq}; events 1..${record.seq - 1} are missing` : `removed: the log continues at seq ${record.seq} after the checkpoint at seq ${expectedSeq - 1}`);
        }
        firstSeq = record.seq;
      }
      if (record.seq !== expectedSeq) {
        if (record.seq > expectedSeq) {
          const later = eventsOnly().some((event) => event.seq === expectedSeq);
          if (later) return fail(expectedSeq, `reordered: event ${expectedSeq} appears after event ${record.seq}`);
          return fail(expectedSeq, `removed: event ${expectedSeq} is missing (the next is seq ${record.seq})`);
        }
        return fail(record.seq, `reordered: event ${record.seq} appears again after event ${expectedSeq - 1} (duplicated or moved)`);
      }
      if (record.prevHash !== prevHash || auditHash(prevHash, record) !== record.hash) {
        return diagnose(record, prevHash, lastEvent, eventsOnly);
      }
      if (lastCheckpoint && Date.parse(record.at) < Date.parse(lastCheckpoint.at) - CLOCK_SLACK_MS) {
        return fail(record.seq, `inserted: event ${record.seq} is dated ${record.at}, before the checkpoint at seq ${lastCheckpoint.seq} (${lastCheckpoint.at}) that precedes it`);
      }
      const anchor = anchors.get(record.seq);
      if (anchor) {
        if (anchor.hash !== record.hash) {
          anchorFailure ??= fail(record.seq, `rewritten: the chain at seq ${record.seq} differs from the checkpoint in the anchor file (the change is after seq ${lastMatchingAnchor})`);
        } else {
          lastMatchingAnchor = record.seq;
          anchored++;
        }
      }
      prevHash = record.hash;
      expectedSeq++;
      lastEvent = record;
      events++;
    }
    return undefined;
  })();
  if (scanFailure) return anchorFailure && anchorFailure.seq < scanFailure.seq ? anchorFailure : scanFailure;

  const lastSeq = expectedSeq - 1;
  const failures: VerificationFailure[] = [];
  const reference = header ? Date.parse(header.exportedAt) : options.now.getTime();

  // The unsigned tail: events after the last checkpoint.
  const signedUpTo = lastCheckpoint?.seq ?? 0;
  const every = lastCheckpoint?.every ?? DEFAULT_CHECKPOINT_EVERY;
  const intervalMs = lastCheckpoint?.intervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
  const maxAge = options.maxUnsignedAgeMs ?? 2 * intervalMs;
  if (lastSeq > signedUpTo && lastCheckpoint?.every === PER_TRANSACTION) {
    // The server signs every transaction's events before it commits them: any event after the last signature was written outside it.
    failures.push(fail(signedUpTo + 1, `unsigned tail: events ${signedUpTo + 1}..${lastSeq} follow the last signed checkpoint (seq ${signedUpTo}), but the server signs every transaction as it commits — they were written, rewritten or re-chained outside the server`));
  } else if (lastSeq > signedUpTo) {
    const tail = eventsOnly().filter((event) => event.seq > signedUpTo);
    const oldest = tail[0];
    // A checkpoint that is due may be a second away (the server signs on a timer): judge only events older than the slack.
    const due = tail[every - 1];
    if (tail.length > every && due && reference - Date.parse(due.at) > CLOCK_SLACK_MS) {
      failures.push(fail(signedUpTo + every, `missing checkpoint: ${tail.length} events after seq ${signedUpTo} and none is signed, but the server signs one at least every ${every} events`));
    }
    if (oldest && reference - Date.parse(oldest.at) > maxAge) {
      failures.push(fail(oldest.seq, `unsigned: no checkpoint covers event ${oldest.seq} (dated ${oldest.at}), older than ${formatDuration(maxAge)} — the tail after the last checkpoint was cut off or checkpoints were removed`));
    }
  }
  if (header) {
    if (header.head.seq > lastSeq) failures.push(fail(lastSeq + 1, `truncated: the chain head is at seq ${header.head.seq}, but the log ends at seq ${lastSeq}`));
    else if (header.head.seq < lastSeq) failures.push(fail(header.head.seq + 1, `appended: events after the chain head (seq ${header.head.seq}) were written outside the server`));
    else if (lastEvent && header.head.hash !== lastEvent.hash) failures.push(fail(lastSeq, `rewritten: the chain head's hash differs from event ${lastSeq}'s`));
  }
  let maxAnchor = 0;
  for (const seq of anchors.keys()) maxAnchor = Math.max(maxAnchor, seq);
  if (maxAnchor > lastSeq) failures.push(fail(lastSeq + 1, `truncated: the anchor file has a checkpoint at seq ${maxAnchor}, but the log ends at seq ${lastSeq}`));
  // Last, so that at the same seq the finding that needs no anchor (an unsigned tail) is named.
  if (anchorFailure) failures.push(anchorFailure);
  if (failures.length > 0) return failures.reduce((first, next) => (next.seq < first.seq ? next : first));

  return {
    ok: true,
    firstSeq,
    lastSeq: firstSeq === null ? null : lastSeq,
    events,
    checkpoints,
    lastCheckpoint: lastCheckpoint ? { seq: lastCheckpoint.seq, at: lastCheckpoint.at } : null,
    unsigned: Math.max(0, lastSeq - signedUpTo),
    anchored,
  };
}

/** Names what happened at the first event whose chain link is broken. */
function diagnose(event: EventRecord, prevHash: string, previous: EventRecord | undefined, eventsOnly: () => EventRecord[]): VerificationFailure {
  const intact = auditHash(event.prevHash, event) === event.hash;
  const linksTo = event.prevHash === prevHash ? event.seq - 1 : eventsOnly().find((other) => other.hash === event.prevHash)?.seq;
  if (intact && event.prevHash !== prevHash && linksTo === undefined && previous) {
    // This entry is untouched, but its predecessor's hash changed: the predecessor was edited and rehashed.
    return fail(previous.seq, `altered: event ${previous.seq} was changed and its hash recomputed (event ${event.seq} still links to its original hash)`);
  }
  if (linksTo !== undefined && linksTo < event.seq - 1) {
    return fail(linksTo + 1, `inserted: event ${linksTo + 1} is not part of the original chain (event ${event.seq} originally followed seq ${linksTo})`);
  }
  if (linksTo !== undefined && linksTo > event.seq - 1) {
    return fail(event.seq, `reordered: the entry at seq ${event.seq} originally followed seq ${linksTo}`);
  }
  if (event.prevHash !== prevHash) return fail(event.seq, `altered: event ${event.seq} does not link to the event before it`);
  return fail(event.seq, `altered: the contents of event ${event.seq} do not match its hash`);
}

/** Checks every anchor line and indexes the checkpoints by seq. */
function readAnchor(lines: readonly NumberedRecord[], publicKey: KeyObject): Map<number, CheckpointRecord> | VerificationFailure {
  const bySeq = new Map<number, CheckpointRecord>();
  for (const entry of lines) {
    if ('invalid' in entry) return fail(0, `anchor file line ${entry.line} is not a valid checkpoint (${entry.invalid})`);
    const record = entry.record;
    if (record.type !== 'checkpoint') return fail(0, `anchor file line ${entry.line} is not a checkpoint`);
    if (!checkpointSignatureValid(record, publicKey)) return fail(record.seq, `anchor file line ${entry.line}: the checkpoint at seq ${record.seq} has an invalid signature`);
    const known = bySeq.get(record.seq);
    if (known && known.hash !== record.hash) return fail(record.seq, `anchor file line ${entry.line}: two validly signed checkpoints disagree about seq ${record.seq} (the key signed two different chains)`);
    bySeq.set(record.seq, record);
  }
  return bySeq;
}

function keyHint(record: CheckpointRecord): string {
  return `the one given (the checkpoint names key ${record.keyId})`;
}
