/** Hosts over Kysely. */
import type { HostWriteRepo } from '../host-repo.js';
import type { Executor } from './executor.js';

/** Hosts over `db`. */
export function kyselyHostRepo(db: Executor): HostWriteRepo {
  return {
    host(name) {
      return db.selectFrom('hosts').selectAll().where('name', '=', name).executeTakeFirst();
    },
    listHosts(env) {
      let query = db.selectFrom('hosts').selectAll();
      if (env !== undefined) query = query.where('env', '=', env);
      return query.orderBy('name').execute();
    },
    async insertHost(row) {
      await db.insertInto('hosts').values(row).execute();
    },
    async updateHost(name, patch) {
      await db.updateTable('hosts').set(patch).where('name', '=', name).execute();
    },
  };
}
