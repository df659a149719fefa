/**
 * The one implementation of the store, over any Kysely dialect: one file per
 * area here, composed into a repo per executor. Dialect differences stay in
 * the dialect folders; nothing here asks which database it has.
 */
import { Migrator, type Kysely } from 'kysely';
import { migrationProvider } from '../migrations.js';
import type { Database } from '../schema.js';
import type { Store, StoreCapabilities, WriteRepo } from '../store.js';
import { kyselyAgentCommandRepo } from './agent-command-repo.js';
import { kyselyAuditRepo } from './audit-repo.js';
import { kyselyConfigRepo } from './config-repo.js';
import { kyselyCounterRepo } from './counter-repo.js';
import { kyselyDeploymentRepo } from './deployment-repo.js';
import { kyselyDriftRepo } from './drift-repo.js';
import type { Executor } from './executor.js';
import { kyselyFirecallRepo } from './firecall-repo.js';
import { kyselyHostAlertStateRepo } from './host-alert-state-repo.js';
import { kyselyHostFactsRepo } from './host-facts-repo.js';
import { kyselyHostRepo } from './host-repo.js';
import { kyselyReleaseRepo } from './release-repo.js';
import { kyselyTokenRepo } from './token-repo.js';

/** Builds a store over a Kysely instance whose dialect the caller chose. */
export function createKyselyStore(db: Kysely<Database>, capabilities: StoreCapabilities): Store {
  return {
    capabilities,
    read: kyselyRepo(db),
    transaction: (work) => db.transaction().execute((tx) => work(kyselyRepo(tx))),
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
function kyselyRepo(db: Executor): WriteRepo {
  return {
    ...kyselyCounterRepo(db),
    ...kyselyConfigRepo(db),
    ...kyselyTokenRepo(db),
    ...kyselyReleaseRepo(db),
    ...kyselyHostRepo(db),
    ...kyselyHostFactsRepo(db),
    ...kyselyHostAlertStateRepo(db),
    ...kyselyDeploymentRepo(db),
    ...kyselyAuditRepo(db),
    ...kyselyFirecallRepo(db),
    ...kyselyDriftRepo(db),
    ...kyselyAgentCommandRepo(db),
  };
}
