/** The hash-chained audit log and its signed checkpoints. */
import type { Selectable } from 'kysely';
import type { AuditCheckpointsTable, AuditEventsTable } from './schema.js';

/** One chained audit event. */
export type AuditEventRow = Selectable<AuditEventsTable>;
/** One signed checkpoint of the chain. */
export type AuditCheckpointRow = Selectable<AuditCheckpointsTable>;

/** An audit event before it is chained. */
export interface AuditInput {
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly details: unknown;
}

/**
 * Signs the chain head at the end of every transaction that appended audit
 * events, inside that transaction. Injected by the server (which holds the
 * key), so the store never imports server code or reads the key itself.
 */
export interface AuditSigner {
  /** The checkpoint row for `head`, signed; undefined when the signer refuses (the head is behind one it anchored). */
  sign(head: { seq: number; hash: string }): AuditCheckpointRow | undefined;
  /** After commit: the checkpoint stored and the actions of the events it covers (to anchor sensitive ones at once). */
  committed?(checkpoint: AuditCheckpointRow, actions: readonly string[]): void;
  /** After commit: the transaction's events were left unsigned because the chain before them is not the one last signed. */
  refused?(problem: { seq: number; problem: string }): void;
}

/** Reads of the audit log. */
export interface AuditReadRepo {
  /** Audit events at or after `since` (ISO) with one of `actions`, oldest first. */
  auditSince(since: string, actions: readonly string[]): Promise<AuditEventRow[]>;
  /** Oldest first, starting after `afterSeq`. */
  listAudit(options: { afterSeq?: number; limit: number }): Promise<AuditEventRow[]>;
  /** The chain head: the last seq written and its hash. */
  auditHead(): Promise<{ seq: number; hash: string }>;
  /** Signed checkpoints, oldest first, starting after `afterSeq`. */
  listAuditCheckpoints(options: { afterSeq?: number; limit: number }): Promise<AuditCheckpointRow[]>;
  /** The newest checkpoint, or with `beforeSeq` the newest one covering less than it. */
  lastAuditCheckpoint(beforeSeq?: number): Promise<AuditCheckpointRow | undefined>;
  /** The first event dated at or after `at`. */
  firstAuditSeqSince(at: string): Promise<number | undefined>;
}

/** Reads and appends of the audit log. */
export interface AuditWriteRepo extends AuditReadRepo {
  /** Appends one event to the hash chain and returns it. */
  appendAudit(event: AuditInput): Promise<AuditEventRow>;
  /** Stores a signed checkpoint; false when one for that seq exists already (another server signed it). */
  insertAuditCheckpoint(row: AuditCheckpointRow): Promise<boolean>;
}
