/** Fire calls, their records and hosts' trust over Kysely. */
import type { FirecallRow, FirecallWriteRepo } from '../firecall-repo.js';
import { inChunks, type Executor } from './executor.js';

/** Fire calls over `db`. */
export function kyselyFirecallRepo(db: Executor): FirecallWriteRepo {
  return {
    async firecall(id) {
      const row = await db.selectFrom('firecalls').selectAll().where('id', '=', id).executeTakeFirst();
      return row ? firecallRow(row) : undefined;
    },
    async listFirecalls(options) {
      let query = db.selectFrom('firecalls').selectAll();
      if (options.env !== undefined) query = query.where('env', '=', options.env);
      return (await query.orderBy('id', 'desc').limit(options.limit).execute()).map(firecallRow);
    },
    async openFirecalls() {
      return (await db.selectFrom('firecalls').selectAll().where('closed_at', 'is', null).orderBy('id').execute()).map(firecallRow);
    },
    async unreconciledFirecall(env) {
      const row = await db
        .selectFrom('firecalls')
        .selectAll()
        .where('env', '=', env)
        .where('closed_at', 'is not', null)
        .where('reconciled_at', 'is', null)
        .orderBy('id')
        .limit(1)
        .executeTakeFirst();
      return row ? firecallRow(row) : undefined;
    },
    async firecallRecords(id) {
      const rows = await db.selectFrom('firecall_records').selectAll().where('firecall_id', '=', id).orderBy('host').orderBy('kind').orderBy('name').orderBy('byte_offset').execute();
      return rows.map((row) => ({ ...row, firecall_id: Number(row.firecall_id), byte_offset: Number(row.byte_offset) }));
    },
    firecallHosts(hosts) {
      if (hosts.length === 0) return Promise.resolve([]);
      return db.selectFrom('firecall_hosts').selectAll().where('host', 'in', [...hosts]).execute();
    },
    async insertFirecall(row) {
      await db.insertInto('firecalls').values(row).execute();
    },
    async updateFirecall(id, patch) {
      await db.updateTable('firecalls').set(patch).where('id', '=', id).execute();
    },
    async appendFirecallRecords(rows) {
      await inChunks(rows, (chunk) =>
        db
          .insertInto('firecall_records')
          .values(chunk)
          .onConflict((conflict) => conflict.columns(['firecall_id', 'host', 'kind', 'name', 'byte_offset']).doNothing())
          .execute(),
      );
    },
    async setFirecallHost(row) {
      await db
        .insertInto('firecall_hosts')
        .values(row)
        .onConflict((conflict) => conflict.column('host').doUpdateSet({ revision: row.revision, applied_at: row.applied_at, error: row.error }))
        .execute();
    },
  };
}

/** Integer columns may come back as strings (PostgreSQL bigint). */
function firecallRow(row: FirecallRow): FirecallRow {
  return { ...row, id: Number(row.id), ttl_ms: row.ttl_ms === null ? null : Number(row.ttl_ms) };
}
