/**
 * The one implementation of the store, over any Kysely dialect: one file per
 * area here, composed into a repo per executor. Dialect differences stay in
 * the dialect folders; nothing here asks which database it has.
 */
import { Migrator, type Kysely } from 'kysely';
import { migrationProvider } from '../migrations.js';
import type { Database } from '../schema.js';
import type { AuditSigner, Store, StoreCapabilities, WriteRepo } from '../store.js';
import { kyselyAgentCommandRepo } from './agent-command-repo.js';
import { kyselyAuditRepo, signAppended, type AppendedAudit } from './audit-repo.js';
import { kyselyConfigRepo } from './config-repo.js';
import { kyselyCounterRepo } from './counter-repo.js';
import { kyselyDeploymentRepo } from './deployment-repo.js';
import { kyselyDriftRepo } from './drift-repo.js';
import type { Executor } from './executor.js';
import { kyselyFirecallRepo } from './firecall-repo.js';
import { kyselyHostAlertStateRepo } from './host-alert-state-repo.js';
import { kyselyParityAlertStateRepo } from './parity-alert-state-repo.js';
import { kyselyHostFactsRepo } from './host-facts-repo.js';
import { kyselyHostRepo } from './host-repo.js';
import { kyselyReleaseRepo } from './release-repo.js';
import { kyselySecretRepo } from './secret-repo.js';
import { kyselyTokenRepo } from './token-repo.js';
import { kyselyUploadRepo } from './upload-repo.js';

/** Builds a store over a Kysely instance whose dialect the caller chose. */
export function createKyselyStore(db: Kysely<Database>, capabilities: StoreCapabilities): Store {
  let signer: AuditSigner | undefined;
  return {
    capabilities,
    read: kyselyRepo(db),
    async transaction(work) {
      // The signer in force when the transaction starts signs all of it.
      const signing = signer;
      let signed: Awaited<ReturnType<typeof signAppended>>;
      let actions: readonly string[] = [];
      const result = await db.transaction().execute(async (tx) => {
        const appended: AppendedAudit = { actions: [] };
        const repo = kyselyRepo(tx, appended);
        const value = await work(repo);
        if (signing) signed = await signAppended(repo, signing, appended);
        actions = appended.actions;
        return value;
      });
      // Told only after commit: a rolled-back transaction signed nothing.
      if (signed && 'checkpoint' in signed) signing?.committed?.(signed.checkpoint, actions);
      if (signed && 'problem' in signed) signing?.refused?.(signed.problem);
      return result;
    },
    useAuditSigner(next) {
      signer = next;
    },
    async migrate() {
      const migrator = new Migrator({ db, provider: migrationProvider });
      const { error, results } = await migrator.migrateToLatest();
      if (error) {
        const failed = results?.find((result) => result.status === 'Error');
        const cause = error instanceof Error ? error.message : String(error);
        // No failed migration means none could run: the database was not reached (the cause says why).
        throw new Error(failed === undefined ? `cannot open the database: ${cause}` : `database migration ${failed.migrationName} failed: ${cause}`, { cause: error });
      }
    },
    close: () => db.destroy(),
  };
}

/** Every area's repo over one executor, as one object. */
function kyselyRepo(db: Executor, appended?: AppendedAudit): WriteRepo {
  return {
    ...kyselyCounterRepo(db),
    ...kyselyConfigRepo(db),
    ...kyselyTokenRepo(db),
    ...kyselyReleaseRepo(db),
    ...kyselyHostRepo(db),
    ...kyselyHostFactsRepo(db),
    ...kyselyHostAlertStateRepo(db),
    ...kyselyParityAlertStateRepo(db),
    ...kyselyDeploymentRepo(db),
    ...kyselyAuditRepo(db, appended),
    ...kyselyFirecallRepo(db),
    ...kyselyDriftRepo(db),
    ...kyselyAgentCommandRepo(db),
    ...kyselySecretRepo(db),
    ...kyselyUploadRepo(db),
  };
}
