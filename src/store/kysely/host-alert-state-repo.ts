/** Host alert states over Kysely. */
import type { HostAlertStateWriteRepo } from '../host-alert-state-repo.js';
import type { Executor } from './executor.js';

/** Host alert states over `db`. */
export function kyselyHostAlertStateRepo(db: Executor): HostAlertStateWriteRepo {
  return {
    async hostAlertStates() {
      const rows = await db.selectFrom('host_alert_states').selectAll().execute();
      return new Map(rows.map((row) => [row.host, row]));
    },
    async swapHostAlertState(expected, next) {
      if (expected === undefined) {
        const inserted = await db.insertInto('host_alert_states').values(next).onConflict((conflict) => conflict.column('host').doNothing()).executeTakeFirst();
        return Number(inserted.numInsertedOrUpdatedRows ?? 0n) > 0;
      }
      // Conditional on every field: of two servers judging the same change, one updates the row and the other gets nothing.
      const updated = await db
        .updateTable('host_alert_states')
        .set({ presence: next.presence, presence_at: next.presence_at, drift: next.drift, drift_at: next.drift_at })
        .where('host', '=', expected.host)
        .where('presence', '=', expected.presence)
        .where('presence_at', '=', expected.presence_at)
        .where('drift', '=', expected.drift)
        .where('drift_at', '=', expected.drift_at)
        .executeTakeFirst();
      return Number(updated.numUpdatedRows) > 0;
    },
  };
}
