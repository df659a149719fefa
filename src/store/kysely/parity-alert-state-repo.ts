/** Parity alert states over Kysely. */
import type { ParityAlertStateWriteRepo } from '../parity-alert-state-repo.js';
import type { Executor } from './executor.js';

/** Parity alert states over `db`. */
export function kyselyParityAlertStateRepo(db: Executor): ParityAlertStateWriteRepo {
  return {
    async parityAlertStates() {
      const rows = await db.selectFrom('parity_alert_states').selectAll().execute();
      return new Map(rows.map((row) => [row.pair, row]));
    },
    async swapParityAlertState(expected, next) {
      if (expected === undefined) {
        const inserted = await db.insertInto('parity_alert_states').values(next).onConflict((conflict) => conflict.column('pair').doNothing()).executeTakeFirst();
        return Number(inserted.numInsertedOrUpdatedRows ?? 0n) > 0;
      }
      // Conditional on the last check: of two servers checking the same pair, one writes and alerts.
      const updated = await db
        .updateTable('parity_alert_states')
        .set({ differences: next.differences, since: next.since, checked_at: next.checked_at })
        .where('pair', '=', expected.pair)
        .where('checked_at', '=', expected.checked_at)
        .where('differences', '=', expected.differences)
        .executeTakeFirst();
      return Number(updated.numUpdatedRows) > 0;
    },
  };
}
