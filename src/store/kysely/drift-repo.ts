/** Drift items and drift reports over Kysely. */
import { OPEN_DRIFT_STATES } from '../../core/drift-items.js';
import type { DriftItemRow, DriftWriteRepo } from '../drift-repo.js';
import { nextValue } from './counter-repo.js';
import type { Executor } from './executor.js';

/** Drift over `db`. */
export function kyselyDriftRepo(db: Executor): DriftWriteRepo {
  return {
    async driftItems(filter) {
      let query = db.selectFrom('drift_items').selectAll();
      if (filter.host !== undefined) query = query.where('host', '=', filter.host);
      if (filter.env !== undefined) query = query.where('env', '=', filter.env);
      if (filter.states !== undefined) {
        if (filter.states.length === 0) return [];
        query = query.where('state', 'in', [...filter.states]);
      }
      const rows = await query.orderBy('host').orderBy('path').orderBy('id').execute();
      return rows.map(driftItemRow);
    },
    async openDriftCounts() {
      const rows = await db
        .selectFrom('drift_items')
        .select(['host', (eb) => eb.fn.countAll().as('count')])
        .where('state', 'in', [...OPEN_DRIFT_STATES])
        .groupBy('host')
        .execute();
      return new Map(rows.map((row) => [row.host, Number(row.count)]));
    },
    async driftScan(host) {
      const row = await db.selectFrom('drift_scans').selectAll().where('host', '=', host).executeTakeFirst();
      return row ? { ...row, full: Number(row.full), truncated: Number(row.truncated), entries: Number(row.entries), hashed_files: Number(row.hashed_files), elapsed_ms: Number(row.elapsed_ms) } : undefined;
    },
    async driftReportTimes() {
      const rows = await db.selectFrom('drift_scans').select(['host', 'reported_at']).execute();
      return new Map(rows.map((row) => [row.host, row.reported_at]));
    },
    async insertDriftItem(row) {
      const id = await nextValue(db, 'drift_item');
      await db.insertInto('drift_items').values({ ...row, id }).execute();
      return id;
    },
    async updateDriftItem(id, patch) {
      await db.updateTable('drift_items').set(patch).where('id', '=', id).execute();
    },
    async upsertDriftScan(row) {
      const { host: _host, ...rest } = row;
      await db
        .insertInto('drift_scans')
        .values(row)
        .onConflict((conflict) => conflict.column('host').doUpdateSet(rest))
        .execute();
    },
    async touchOpenDriftItems(host, at) {
      await db.updateTable('drift_items').set({ last_seen_at: at }).where('host', '=', host).where('state', 'in', [...OPEN_DRIFT_STATES]).execute();
    },
  };
}

/** Integer columns may come back as strings or bigints; rows hold numbers. */
function driftItemRow(row: DriftItemRow): DriftItemRow {
  return { ...row, id: Number(row.id), firecall_id: row.firecall_id === null ? null : Number(row.firecall_id) };
}
