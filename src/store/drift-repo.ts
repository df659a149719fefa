/** Drift items (one drifted path on one host, from detection to close) and each host's latest drift report. */
import type { Selectable } from 'kysely';
import type { DriftItemState } from '../core/drift-items.js';
import type { DriftItemsTable, DriftScansTable } from './schema.js';

/** One drift item. */
export type DriftItemRow = Selectable<DriftItemsTable>;
/** One host's latest drift report. */
export type DriftScanRow = Selectable<DriftScansTable>;

/** Which drift items to list. */
export interface DriftItemFilter {
  readonly host?: string | undefined;
  readonly env?: string | undefined;
  /** Default: every state. */
  readonly states?: readonly DriftItemState[] | undefined;
}

/** Reads of drift. */
export interface DriftReadRepo {
  /** Drift items by host and path (then id: a path's history in order). */
  driftItems(filter: DriftItemFilter): Promise<DriftItemRow[]>;
  /** How many items in OPEN_DRIFT_STATES (core/drift-items.ts) each host has (hosts without any are absent). */
  openDriftCounts(): Promise<Map<string, number>>;
  /** The host's latest drift report. */
  driftScan(host: string): Promise<DriftScanRow | undefined>;
  /** Host → when its agent last reported drift, for every host that ever did (one query for a whole status). */
  driftReportTimes(): Promise<Map<string, string>>;
}

/** Reads and writes of drift. */
export interface DriftWriteRepo extends DriftReadRepo {
  /** Inserts a drift item and returns its id (a second open item for the same host, scope and path is refused by the database). */
  insertDriftItem(row: Omit<DriftItemRow, 'id'>): Promise<number>;
  updateDriftItem(id: number, patch: Partial<Pick<DriftItemRow, 'kinds' | 'expected' | 'actual' | 'state' | 'last_seen_at' | 'closed_at' | 'closed_by' | 'adopted_into' | 'reason' | 'firecall_id'>>): Promise<void>;
  /** Records the host's latest drift report (replacing the one before). */
  upsertDriftScan(row: DriftScanRow): Promise<void>;
  /** Sets last_seen_at of every open drift item of the host. */
  touchOpenDriftItems(host: string, at: string): Promise<void>;
}
