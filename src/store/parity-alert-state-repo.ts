/** What scheduled parity last found per environment pair (so a new undeclared difference is alerted once). */
import type { Selectable } from 'kysely';
import type { ParityAlertStatesTable } from './schema.js';

/** One pair's last check. */
export type ParityAlertStateRow = Selectable<ParityAlertStatesTable>;

/** Reads of parity alert states. */
export interface ParityAlertStateReadRepo {
  /** Pair (`A B`) → its last check (pairs never checked are absent). */
  parityAlertStates(): Promise<Map<string, ParityAlertStateRow>>;
}

/** Reads and conditional writes of parity alert states. */
export interface ParityAlertStateWriteRepo extends ParityAlertStateReadRepo {
  /** Replaces the pair's state if it still is `expected` (undefined: no row yet); false when another server wrote it first. */
  swapParityAlertState(expected: ParityAlertStateRow | undefined, next: ParityAlertStateRow): Promise<boolean>;
}
