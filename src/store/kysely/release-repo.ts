/** Releases and environments over Kysely. */
import type { ReleaseWriteRepo } from '../release-repo.js';
import type { Executor } from './executor.js';

/** Releases and environments over `db`. */
export function kyselyReleaseRepo(db: Executor): ReleaseWriteRepo {
  const releaseEnvironment = (releaseId: string, env: string) =>
    db.selectFrom('release_environments').selectAll().where('release_id', '=', releaseId).where('env', '=', env).executeTakeFirst();
  return {
    release(id) {
      return db.selectFrom('releases').selectAll().where('id', '=', id).executeTakeFirst();
    },
    releasesByPrefix(prefix, limit) {
      // Ids are lowercase hex; anything else (a version such as "1.0.0", LIKE wildcards) matches nothing.
      if (!/^[0-9a-f]*$/.test(prefix)) return Promise.resolve([]);
      return db.selectFrom('releases').selectAll().where('id', 'like', `${prefix}%`).limit(limit).execute();
    },
    releaseByVersion(app, version) {
      return db.selectFrom('releases').selectAll().where('app', '=', app).where('version', '=', version).executeTakeFirst();
    },
    listReleases(limit) {
      return db
        .selectFrom('releases')
        .select(['id', 'app', 'version', 'files', 'bytes', 'created_by', 'created_at'])
        .orderBy('created_at', 'desc')
        .orderBy('id')
        .limit(limit)
        .execute();
    },
    releaseEnvironment,
    releaseEnvironments(releaseId) {
      return db.selectFrom('release_environments').selectAll().where('release_id', '=', releaseId).orderBy('first_deployed_at').execute();
    },
    async releaseIdsDeployedTo(env) {
      const rows = await db.selectFrom('release_environments').select('release_id').where('env', '=', env).execute();
      return rows.map((row) => row.release_id);
    },
    succeededReleases(env) {
      return db
        .selectFrom('release_environments')
        .selectAll()
        .where('env', '=', env)
        .where('succeeded_at', 'is not', null)
        .orderBy('succeeded_at', 'desc')
        .execute();
    },
    async environmentCurrent(env) {
      const row = await db.selectFrom('environments').select('current_release_id').where('name', '=', env).executeTakeFirst();
      return row?.current_release_id ?? undefined;
    },
    async insertRelease(row) {
      await db.insertInto('releases').values(row).execute();
    },
    async upsertReleaseEnvironment(releaseId, env, patch, at) {
      const existing = await releaseEnvironment(releaseId, env);
      if (existing) {
        if (Object.keys(patch).length > 0) {
          await db.updateTable('release_environments').set(patch).where('release_id', '=', releaseId).where('env', '=', env).execute();
        }
        return;
      }
      await db
        .insertInto('release_environments')
        .values({
          release_id: releaseId,
          env,
          first_deployed_at: at,
          succeeded_at: patch.succeeded_at ?? null,
          rolled_back_at: patch.rolled_back_at ?? null,
          rolled_back_reason: patch.rolled_back_reason ?? null,
          rejected_at: patch.rejected_at ?? null,
          rejected_reason: patch.rejected_reason ?? null,
          superseded_at: patch.superseded_at ?? null,
        })
        .execute();
    },
    async setEnvironmentCurrent(env, releaseId, at) {
      const result = await db.updateTable('environments').set({ current_release_id: releaseId, updated_at: at }).where('name', '=', env).executeTakeFirst();
      if (Number(result.numUpdatedRows) === 0) {
        await db.insertInto('environments').values({ name: env, current_release_id: releaseId, updated_at: at }).execute();
      }
    },
  };
}
