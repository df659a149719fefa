/** Applied configurations over Kysely. */
import type { ConfigWriteRepo } from '../config-repo.js';
import { nextValue } from './counter-repo.js';
import type { Executor } from './executor.js';

/** Applied configurations over `db`. */
export function kyselyConfigRepo(db: Executor): ConfigWriteRepo {
  return {
    latestConfig() {
      return db.selectFrom('configs').selectAll().orderBy('version', 'desc').limit(1).executeTakeFirst();
    },
    async insertConfig(row) {
      const version = await nextValue(db, 'config');
      await db.insertInto('configs').values({ ...row, version }).execute();
      return version;
    },
  };
}
