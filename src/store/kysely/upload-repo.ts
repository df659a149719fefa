/** Upload sessions and blob holds over Kysely. */
import type { UploadWriteRepo } from '../upload-repo.js';
import { nextValue } from './counter-repo.js';
import { inChunks, type Executor } from './executor.js';

/** Upload sessions and blob holds over `db`. */
export function kyselyUploadRepo(db: Executor): UploadWriteRepo {
  return {
    uploadSession(id) {
      return db.selectFrom('upload_sessions').selectAll().where('id', '=', id).executeTakeFirst();
    },
    openUploadSessions(now, token) {
      let query = db.selectFrom('upload_sessions').selectAll().where('closed_at', 'is', null).where('expires_at', '>', now);
      if (token !== undefined) query = query.where('token', '=', token);
      return query.orderBy('id').execute();
    },
    async blobHolds(holder) {
      const rows = await db.selectFrom('blob_holds').selectAll().where('holder', '=', holder).execute();
      return rows.map((row) => ({ ...row, size: Number(row.size) }));
    },
    releaseManifestPage(afterId, limit) {
      return db.selectFrom('releases').select(['id', 'manifest']).where('id', '>', afterId).orderBy('id').limit(limit).execute();
    },
    async insertUploadSession(row) {
      const id = await nextValue(db, 'upload_session');
      await db.insertInto('upload_sessions').values({ ...row, id }).execute();
      return id;
    },
    async closeUploadSession(id, at) {
      await db.updateTable('upload_sessions').set({ closed_at: at }).where('id', '=', id).execute();
    },
    async upsertBlobHold(row) {
      await db
        .insertInto('blob_holds')
        .values(row)
        .onConflict((conflict) => conflict.columns(['holder', 'hash']).doUpdateSet({ size: row.size, at: row.at }))
        .execute();
    },
    async releaseBlobHolds(hashes) {
      await inChunks(hashes, (chunk) => db.deleteFrom('blob_holds').where('hash', 'in', chunk).execute());
    },
  };
}
