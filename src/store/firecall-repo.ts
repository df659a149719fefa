/** Fire calls, what agents shipped about them, and the trust each host installed. */
import type { Selectable } from 'kysely';
import type { FirecallHostsTable, FirecallRecordsTable, FirecallsTable } from './schema.js';

/** One fire call. */
export type FirecallRow = Selectable<FirecallsTable>;
/** One piece an agent shipped about a fire call. */
export type FirecallRecordRow = Selectable<FirecallRecordsTable>;
/** The fire-call trust one host last installed. */
export type FirecallHostRow = Selectable<FirecallHostsTable>;

/** What changes on a fire call after its request: approval, closing, reconciling. */
export type FirecallPatch = Partial<
  Pick<FirecallRow, 'closed_at' | 'closed_by' | 'close_note' | 'reconciled_at' | 'reconciled_by' | 'reconcile_mode' | 'reconcile_version' | 'approval' | 'approved_by' | 'approved_at' | 'certificate' | 'opened_at' | 'expires_at'>
>;

/** Reads of fire calls. */
export interface FirecallReadRepo {
  firecall(id: number): Promise<FirecallRow | undefined>;
  /** Newest first. */
  listFirecalls(options: { env?: string | undefined; limit: number }): Promise<FirecallRow[]>;
  /** Fire calls not closed yet, requests awaiting approval included, oldest first (the sweeper closes the expired ones). */
  openFirecalls(): Promise<FirecallRow[]>;
  /** The oldest closed fire call of an environment that was not reconciled. */
  unreconciledFirecall(env: string): Promise<FirecallRow | undefined>;
  /** What agents shipped about a fire call, by host, kind, file and offset. */
  firecallRecords(id: number): Promise<FirecallRecordRow[]>;
  /** The trust each host of the list last installed. */
  firecallHosts(hosts: readonly string[]): Promise<FirecallHostRow[]>;
}

/** Reads and writes of fire calls. */
export interface FirecallWriteRepo extends FirecallReadRepo {
  insertFirecall(row: FirecallRow): Promise<void>;
  updateFirecall(id: number, patch: FirecallPatch): Promise<void>;
  /** Stores records; a piece already stored (same host, kind, file and offset) is skipped. */
  appendFirecallRecords(rows: readonly FirecallRecordRow[]): Promise<void>;
  setFirecallHost(row: FirecallHostRow): Promise<void>;
}
