/**
 * The export format of the audit trail: JSON lines, one record each. An
 * export is a header, then events and checkpoints in seq order (a checkpoint
 * right after the event it covers). The anchor file holds checkpoint lines only.
 */
import type { ChainedFields } from '../core/audit-hash.js';
import type { CheckpointRecord } from './checkpoint.js';

/** One audit event (the fields its hash covers) with its chain hashes. */
export interface EventRecord extends ChainedFields {
  readonly type: 'event';
  readonly prevHash: string;
  readonly hash: string;
}

/** The first line of an export: what the server's chain head was when it exported. Not signed. */
export interface ExportHeader {
  readonly type: 'export';
  readonly version: 1;
  readonly exportedAt: string;
  /** The --since time asked for, or null for the whole log. */
  readonly since: string | null;
  /** The chain head row (audit_head) when the export began. */
  readonly head: { readonly seq: number; readonly hash: string };
}

export type AuditRecord = ExportHeader | EventRecord | CheckpointRecord;

/** A record as read from a file, with its line number (1-based) for messages. */
export type NumberedRecord = { readonly line: number } & ({ readonly record: AuditRecord } | { readonly invalid: string });

const HEX64 = /^[0-9a-f]{64}$/;

function isInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value);
}

function isTime(value: unknown): value is string {
  return typeof value === 'string' && !Number.isNaN(Date.parse(value));
}

/** Checks the shape of one parsed JSON value; returns the record or what is wrong with it. */
export function toAuditRecord(value: unknown): AuditRecord | string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'not a JSON object';
  const r = value as Record<string, unknown>;
  switch (r.type) {
    case 'event':
      if (!isInteger(r.seq) || r.seq < 1) return 'event without a positive integer seq';
      if (!isTime(r.at) || typeof r.actor !== 'string' || typeof r.action !== 'string' || typeof r.target !== 'string' || !('details' in r)) return 'event with missing or invalid fields';
      if (typeof r.prevHash !== 'string' || !HEX64.test(r.prevHash) || typeof r.hash !== 'string' || !HEX64.test(r.hash)) return 'event without valid hashes';
      return r as unknown as EventRecord;
    case 'checkpoint':
      if (!isInteger(r.seq) || r.seq < 1 || typeof r.hash !== 'string' || !HEX64.test(r.hash) || !isTime(r.at)) return 'checkpoint with missing or invalid fields';
      if (!isInteger(r.every) || r.every < 0 || !isInteger(r.intervalMs) || r.intervalMs < 0) return 'checkpoint without a valid policy';
      if (typeof r.signature !== 'string' || typeof r.keyId !== 'string') return 'checkpoint without a signature';
      return r as unknown as CheckpointRecord;
    case 'export': {
      const head = r.head as Record<string, unknown> | null | undefined;
      if (r.version !== 1) return `export format version ${String(r.version)} is not supported`;
      if (!isTime(r.exportedAt) || !(r.since === null || isTime(r.since))) return 'export header with invalid times';
      if (!head || !isInteger(head.seq) || typeof head.hash !== 'string' || !HEX64.test(head.hash)) return 'export header without a valid head';
      return r as unknown as ExportHeader;
    }
    default:
      return `unknown record type ${JSON.stringify(r.type)}`;
  }
}

/** Splits JSON-lines text into numbered records (blank lines skipped); invalid lines are kept as such. */
export function parseAuditLines(text: string): NumberedRecord[] {
  const records: NumberedRecord[] = [];
  let line = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    line++;
    const body = text.slice(start, end).trim();
    start = end + 1;
    if (body === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      records.push({ line, invalid: 'not valid JSON' });
      continue;
    }
    const record = toAuditRecord(value);
    records.push(typeof record === 'string' ? { line, invalid: record } : { line, record });
  }
  return records;
}

/** One export line for an event (stable key order for readable diffs). */
export function eventLine(event: Omit<EventRecord, 'type'>): string {
  return JSON.stringify({ type: 'event', seq: event.seq, at: event.at, actor: event.actor, action: event.action, target: event.target, details: event.details, prevHash: event.prevHash, hash: event.hash });
}

/** One export or anchor line for a checkpoint. */
export function checkpointLine(checkpoint: CheckpointRecord): string {
  return JSON.stringify({
    type: 'checkpoint',
    seq: checkpoint.seq,
    hash: checkpoint.hash,
    at: checkpoint.at,
    every: checkpoint.every,
    intervalMs: checkpoint.intervalMs,
    keyId: checkpoint.keyId,
    signature: checkpoint.signature,
  });
}
