/** Tokens over Kysely. */
import { USER_ROLES } from '../../core/token-roles.js';
import type { TokenWriteRepo } from '../token-repo.js';
import type { Executor } from './executor.js';

/** Tokens over `db`. */
export function kyselyTokenRepo(db: Executor): TokenWriteRepo {
  return {
    tokenByHash(hash) {
      return db.selectFrom('tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst();
    },
    tokenByName(name) {
      return db.selectFrom('tokens').selectAll().where('name', '=', name).executeTakeFirst();
    },
    listUserTokens() {
      return db.selectFrom('tokens').selectAll().where('role', 'in', [...USER_ROLES]).orderBy('name').execute();
    },
    async insertToken(row) {
      await db.insertInto('tokens').values(row).execute();
    },
    async updateToken(name, patch) {
      await db.updateTable('tokens').set(patch).where('name', '=', name).execute();
    },
  };
}
