/** Host facts over Kysely. */
import type { HostFactsWriteRepo } from '../host-facts-repo.js';
import type { Executor } from './executor.js';

/** Host facts over `db`. */
export function kyselyHostFactsRepo(db: Executor): HostFactsWriteRepo {
  return {
    hostFacts(hosts) {
      if (hosts.length === 0) return Promise.resolve([]);
      return db.selectFrom('host_facts').selectAll().where('host', 'in', [...hosts]).orderBy('host').execute();
    },
    async putHostFacts(row) {
      await db
        .insertInto('host_facts')
        .values(row)
        .onConflict((conflict) => conflict.column('host').doUpdateSet({ facts: row.facts, reported_at: row.reported_at, changed_at: row.changed_at }))
        .execute();
    },
  };
}
