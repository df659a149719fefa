/** Secrets over Kysely. */
import type { SecretWriteRepo } from '../secret-repo.js';
import type { Executor } from './executor.js';

/** Secrets over `db`. */
export function kyselySecretRepo(db: Executor): SecretWriteRepo {
  return {
    secrets(env) {
      return db.selectFrom('secrets').selectAll().where('env', '=', env).orderBy('name').execute();
    },
    secret(env, name) {
      return db.selectFrom('secrets').selectAll().where('env', '=', env).where('name', '=', name).executeTakeFirst();
    },
    async putSecret(row) {
      const { env: _env, name: _name, ...replaced } = row;
      await db
        .insertInto('secrets')
        .values(row)
        .onConflict((conflict) => conflict.columns(['env', 'name']).doUpdateSet(replaced))
        .execute();
    },
    async removeSecret(env, name) {
      const deleted = await db.deleteFrom('secrets').where('env', '=', env).where('name', '=', name).executeTakeFirst();
      return Number(deleted.numDeletedRows) > 0;
    },
  };
}
