/**
 * Schema migrations, shared by SQLite and PostgreSQL. Only portable column
 * types are used, so one list serves both databases.
 */
import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

const migrations: Record<string, Migration> = {
  '0001_core': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('counters')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('configs')
        .addColumn('version', 'integer', (c) => c.primaryKey())
        .addColumn('yaml', 'text', (c) => c.notNull())
        .addColumn('parsed', 'text', (c) => c.notNull())
        .addColumn('applied_by', 'text', (c) => c.notNull())
        .addColumn('applied_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('tokens')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('envs', 'text')
        .addColumn('host', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('used_at', 'text')
        .addColumn('revoked_at', 'text')
        .execute();
      await db.schema
        .createTable('releases')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('app', 'text', (c) => c.notNull())
        .addColumn('version', 'text', (c) => c.notNull())
        .addColumn('manifest', 'text', (c) => c.notNull())
        .addColumn('files', 'integer', (c) => c.notNull())
        .addColumn('bytes', 'bigint', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('releases_app_version', ['app', 'version'])
        .execute();
      await db.schema
        .createTable('release_environments')
        .addColumn('release_id', 'text', (c) => c.notNull().references('releases.id'))
        .addColumn('env', 'text', (c) => c.notNull())
        .addColumn('first_deployed_at', 'text', (c) => c.notNull())
        .addColumn('succeeded_at', 'text')
        .addColumn('rolled_back_at', 'text')
        .addPrimaryKeyConstraint('release_environments_pk', ['release_id', 'env'])
        .execute();
      await db.schema
        .createTable('environments')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('current_release_id', 'text', (c) => c.references('releases.id'))
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('hosts')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('env', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('enrolled_at', 'text')
        .addColumn('last_seen_at', 'text')
        .addColumn('current_release_id', 'text')
        .addColumn('agent_version', 'text')
        .execute();
      await db.schema
        .createTable('deployments')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('env', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('release_id', 'text', (c) => c.notNull().references('releases.id'))
        .addColumn('from_release_id', 'text')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('requested_by', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('finished_at', 'text')
        .addColumn('error', 'text')
        .addColumn('revision', 'integer', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('deployments_env_state').on('deployments').columns(['env', 'state']).execute();
      await db.schema
        .createTable('deployment_hosts')
        .addColumn('deployment_id', 'integer', (c) => c.notNull().references('deployments.id'))
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('from_release_id', 'text')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('deployment_hosts_pk', ['deployment_id', 'host'])
        .execute();
      await db.schema.createIndex('deployment_hosts_host_state').on('deployment_hosts').columns(['host', 'state']).execute();
      await db.schema
        .createTable('audit_events')
        .addColumn('seq', 'bigint', (c) => c.primaryKey())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('target', 'text', (c) => c.notNull())
        .addColumn('details', 'text', (c) => c.notNull())
        .addColumn('prev_hash', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .execute();
      // The chain head: one row, updated in every audit write. In PostgreSQL the
      // UPDATE takes a row lock, so concurrent writers serialize and cannot fork the chain.
      await db.schema
        .createTable('audit_head')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .execute();
      await sql`insert into audit_head (id, seq, hash) values (1, 0, ${'0'.repeat(64)})`.execute(db);
    },
  },
  '0002_rollouts': {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('deployments').addColumn('current_batch', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('deployments').addColumn('batches', 'integer', (c) => c.notNull().defaultTo(1)).execute();
      await db.schema.alterTable('deployments').addColumn('next_batch_at', 'text').execute();
      await db.schema.alterTable('deployment_hosts').addColumn('batch', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('deployment_hosts').addColumn('deadline_at', 'text').execute();
      await db.schema.alterTable('release_environments').addColumn('rolled_back_reason', 'text').execute();
      await db.schema.alterTable('release_environments').addColumn('rejected_at', 'text').execute();
      await db.schema.alterTable('release_environments').addColumn('rejected_reason', 'text').execute();
      await db.schema.alterTable('hosts').addColumn('health', 'text').execute();
      await db.schema.alterTable('hosts').addColumn('health_detail', 'text').execute();
      await db.schema.alterTable('hosts').addColumn('health_at', 'text').execute();
      await db.schema
        .createTable('deployment_logs')
        .addColumn('deployment_id', 'integer', (c) => c.notNull().references('deployments.id'))
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('line', 'integer', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('text', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('deployment_logs_deployment').on('deployment_logs').columns(['deployment_id', 'host']).execute();
    },
  },
  '0004_policy': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('approvals')
        .addColumn('deployment_id', 'integer', (c) => c.notNull().references('deployments.id'))
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('decision', 'text', (c) => c.notNull())
        .addColumn('comment', 'text')
        .addColumn('at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('approvals_pk', ['deployment_id', 'actor'])
        .execute();
      await db.schema.alterTable('deployments').addColumn('override_reason', 'text').execute();
    },
  },
  '0003_audit': {
    async up(db: Kysely<unknown>) {
      // Signed checkpoints of the audit chain (src/audit/checkpoint.ts); one per covered seq.
      await db.schema
        .createTable('audit_checkpoints')
        .addColumn('seq', 'bigint', (c) => c.primaryKey())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('every', 'integer', (c) => c.notNull())
        .addColumn('interval_ms', 'bigint', (c) => c.notNull())
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('signature', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0005_known_good': {
    async up(db: Kysely<unknown>) {
      // When a release stopped being its environment's current release (known-good needs it to have soaked first).
      await db.schema.alterTable('release_environments').addColumn('superseded_at', 'text').execute();
    },
  },
  '0006_drift': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('drift_items')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('env', 'text', (c) => c.notNull())
        .addColumn('scope', 'text', (c) => c.notNull())
        .addColumn('path', 'text', (c) => c.notNull())
        .addColumn('kinds', 'text', (c) => c.notNull())
        .addColumn('expected', 'text')
        .addColumn('actual', 'text')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('first_seen_at', 'text', (c) => c.notNull())
        .addColumn('last_seen_at', 'text', (c) => c.notNull())
        .addColumn('closed_at', 'text')
        .addColumn('closed_by', 'text')
        .addColumn('adopted_into', 'text')
        .addColumn('reason', 'text')
        .addColumn('firecall_id', 'integer')
        .execute();
      // At most one open item per path of a host: a partial unique index (both databases have them).
      await db.schema.createIndex('drift_items_open').on('drift_items').columns(['host', 'scope', 'path']).unique().where(sql.ref('state'), '=', 'open').execute();
      await db.schema.createIndex('drift_items_host_state').on('drift_items').columns(['host', 'state']).execute();
      await db.schema.createIndex('drift_items_env_state').on('drift_items').columns(['env', 'state']).execute();
      await db.schema
        .createTable('agent_commands')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('sent_at', 'text')
        .addColumn('finished_at', 'text')
        .addColumn('result', 'text')
        .execute();
      await db.schema.createIndex('agent_commands_host_state').on('agent_commands').columns(['host', 'state']).execute();
      await db.schema
        .createTable('drift_scans')
        .addColumn('host', 'text', (c) => c.primaryKey())
        .addColumn('reported_at', 'text', (c) => c.notNull())
        .addColumn('release_id', 'text')
        .addColumn('full', 'integer', (c) => c.notNull())
        .addColumn('cause', 'text', (c) => c.notNull())
        .addColumn('truncated', 'integer', (c) => c.notNull())
        .addColumn('entries', 'integer', (c) => c.notNull())
        .addColumn('hashed_files', 'integer', (c) => c.notNull())
        .addColumn('elapsed_ms', 'real', (c) => c.notNull())
        .execute();
    },
  },
  '0007_host_facts': {
    async up(db: Kysely<unknown>) {
      // The latest facts each agent reported (lockstep parity); one row per host, replaced on every report.
      await db.schema
        .createTable('host_facts')
        .addColumn('host', 'text', (c) => c.primaryKey())
        .addColumn('facts', 'text', (c) => c.notNull())
        .addColumn('reported_at', 'text', (c) => c.notNull())
        .addColumn('changed_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0008_firecall': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('firecalls')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('env', 'text', (c) => c.notNull())
        .addColumn('requested_by', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('principals', 'text', (c) => c.notNull())
        .addColumn('hosts', 'text')
        .addColumn('source_address', 'text')
        .addColumn('certificate', 'text', (c) => c.notNull())
        .addColumn('opened_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('closed_at', 'text')
        .addColumn('closed_by', 'text')
        .addColumn('close_note', 'text')
        .addColumn('reconciled_at', 'text')
        .addColumn('reconciled_by', 'text')
        .addColumn('reconcile_mode', 'text')
        .addColumn('reconcile_version', 'text')
        .execute();
      await db.schema.createIndex('firecalls_env').on('firecalls').columns(['env', 'id']).execute();
      await db.schema
        .createTable('firecall_records')
        .addColumn('firecall_id', 'integer', (c) => c.notNull().references('firecalls.id'))
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('byte_offset', 'bigint', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('text', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('firecall_records_pk', ['firecall_id', 'host', 'kind', 'name', 'byte_offset'])
        .execute();
      await db.schema
        .createTable('firecall_hosts')
        .addColumn('host', 'text', (c) => c.primaryKey())
        .addColumn('revision', 'text', (c) => c.notNull())
        .addColumn('applied_at', 'text', (c) => c.notNull())
        .addColumn('error', 'text')
        .execute();
    },
  },
  '0009_host_alert_states': {
    async up(db: Kysely<unknown>) {
      // What was last alerted about each host going quiet, so a restarted server alerts no state twice.
      await db.schema
        .createTable('host_alert_states')
        .addColumn('host', 'text', (c) => c.primaryKey())
        .addColumn('presence', 'text', (c) => c.notNull())
        .addColumn('presence_at', 'text', (c) => c.notNull())
        .addColumn('drift', 'text', (c) => c.notNull())
        .addColumn('drift_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0010_secrets': {
    async up(db: Kysely<unknown>) {
      // Secrets per environment, sealed with the server's key (src/server/secrets/); one row per current version.
      await db.schema
        .createTable('secrets')
        .addColumn('env', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('sealed', 'text', (c) => c.notNull())
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('set_by', 'text', (c) => c.notNull())
        .addColumn('set_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('secrets_pk', ['env', 'name'])
        .execute();
    },
  },
  '0011_firecall_approval': {
    async up(db: Kysely<unknown>) {
      // Break-glass least privilege: a fire call may wait for an approver before its certificate is signed.
      for (const [column, type] of [['approval', 'text'], ['requested_at', 'text'], ['public_key', 'text'], ['ttl_ms', 'bigint'], ['approved_by', 'text'], ['approved_at', 'text'], ['override_reason', 'text']] as const) {
        await db.schema.alterTable('firecalls').addColumn(column, type).execute();
      }
    },
  },
  '0012_parity_alert_states': {
    async up(db: Kysely<unknown>) {
      // What scheduled parity last found per environment pair, so a restarted server alerts no difference twice.
      await db.schema
        .createTable('parity_alert_states')
        .addColumn('pair', 'text', (c) => c.primaryKey())
        .addColumn('differences', 'text', (c) => c.notNull())
        .addColumn('since', 'text')
        .addColumn('checked_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0013_step_progress': {
    async up(db: Kysely<unknown>) {
      // A host's staging progress (bytes and files), for the live view of a deployment.
      await db.schema.alterTable('deployment_hosts').addColumn('progress', 'text').execute();
    },
  },
  '0014_upload_sessions': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('upload_sessions')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('token', 'text', (c) => c.notNull())
        .addColumn('blobs', 'text', (c) => c.notNull())
        .addColumn('missing', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('closed_at', 'text')
        .execute();
      await db.schema
        .createTable('blob_holds')
        .addColumn('holder', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('blob_holds_pk', ['holder', 'hash'])
        .execute();
      await db.schema.createIndex('blob_holds_hash').on('blob_holds').column('hash').execute();
    },
  },
};

/** The migrations, in order, for Kysely's Migrator. */
export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
