/** What was last alerted about hosts that go quiet (presence and drift reporting). */
import type { Selectable } from 'kysely';
import type { HostAlertStatesTable } from './schema.js';

/** One host's last alerted state. */
export type HostAlertStateRow = Selectable<HostAlertStatesTable>;

/** Reads of host alert states. */
export interface HostAlertStateReadRepo {
  /** Host → what was last alerted about its presence and drift reporting (hosts never alerted on are absent). */
  hostAlertStates(): Promise<Map<string, HostAlertStateRow>>;
}

/** Reads and conditional writes of host alert states. */
export interface HostAlertStateWriteRepo extends HostAlertStateReadRepo {
  /**
   * Replaces the host's alert state if it still is `expected` (undefined: no
   * row yet); false when another writer changed it first, so of several
   * servers sweeping one database exactly one alerts.
   */
  swapHostAlertState(expected: HostAlertStateRow | undefined, next: HostAlertStateRow): Promise<boolean>;
}
