/**
 * The one implementation of the store, over any Kysely dialect. Dialect
 * differences stay in the dialect folders; nothing here asks which database it has.
 */
import { Migrator, sql, type Kysely, type Transaction } from 'kysely';
import { auditHash } from '../core/audit-hash.js';
import { canonicalJson } from '../core/manifest.js';
import { migrationProvider } from './migrations.js';
import type { Database } from './schema.js';
import type {
  AgentCommandRow,
  FirecallHostRow,
  FirecallRecordRow,
  FirecallRow,
  ApprovalRow,
  AuditCheckpointRow,
  AuditEventRow,
  AuditInput,
  ConfigRow,
  DeploymentLogRow,
  DeploymentHostRow,
  DeploymentRow,
  DriftItemFilter,
  DriftItemRow,
  DriftScanRow,
  HostRow,
  ReleaseRow,
  Store,
  StoreCapabilities,
  TokenRow,
  WriteRepo,
} from './store.js';
import type { HostAlertStateRow, HostFactsRow } from './store.js';

type Executor = Kysely<Database> | Transaction<Database>;

/** Builds a store over a Kysely instance whose dialect the caller chose. */
export function createKyselyStore(db: Kysely<Database>, capabilities: StoreCapabilities): Store {
  return {
    capabilities,
    read: new Repo(db),
    transaction: (work) => db.transaction().execute((tx) => work(new Repo(tx))),
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

class Repo implements WriteRepo {
  constructor(private readonly db: Executor) {}

  // ---- reads ----

  latestConfig() {
    return this.db.selectFrom('configs').selectAll().orderBy('version', 'desc').limit(1).executeTakeFirst();
  }
  tokenByHash(hash: string) {
    return this.db.selectFrom('tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst();
  }
  tokenByName(name: string) {
    return this.db.selectFrom('tokens').selectAll().where('name', '=', name).executeTakeFirst();
  }
  release(id: string) {
    return this.db.selectFrom('releases').selectAll().where('id', '=', id).executeTakeFirst();
  }
  releasesByPrefix(prefix: string, limit: number) {
    // Ids are lowercase hex; anything else (a version such as "1.0.0", LIKE wildcards) matches nothing.
    if (!/^[0-9a-f]*$/.test(prefix)) return Promise.resolve([]);
    return this.db.selectFrom('releases').selectAll().where('id', 'like', `${prefix}%`).limit(limit).execute();
  }
  releaseByVersion(app: string, version: string) {
    return this.db.selectFrom('releases').selectAll().where('app', '=', app).where('version', '=', version).executeTakeFirst();
  }
  listReleases(limit: number) {
    return this.db
      .selectFrom('releases')
      .select(['id', 'app', 'version', 'files', 'bytes', 'created_by', 'created_at'])
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(limit)
      .execute();
  }
  releaseEnvironment(releaseId: string, env: string) {
    return this.db.selectFrom('release_environments').selectAll().where('release_id', '=', releaseId).where('env', '=', env).executeTakeFirst();
  }
  releaseEnvironments(releaseId: string) {
    return this.db.selectFrom('release_environments').selectAll().where('release_id', '=', releaseId).orderBy('first_deployed_at').execute();
  }
  async releaseIdsDeployedTo(env: string) {
    const rows = await this.db.selectFrom('release_environments').select('release_id').where('env', '=', env).execute();
    return rows.map((row) => row.release_id);
  }
  knownGoodReleases(env: string) {
    return this.db
      .selectFrom('release_environments')
      .selectAll()
      .where('env', '=', env)
      .where('succeeded_at', 'is not', null)
      .where('rolled_back_at', 'is', null)
      .orderBy('succeeded_at', 'desc')
      .execute();
  }
  async environmentCurrent(env: string) {
    const row = await this.db.selectFrom('environments').select('current_release_id').where('name', '=', env).executeTakeFirst();
    return row?.current_release_id ?? undefined;
  }
  host(name: string) {
    return this.db.selectFrom('hosts').selectAll().where('name', '=', name).executeTakeFirst();
  }
  listHosts(env?: string) {
    let query = this.db.selectFrom('hosts').selectAll();
    if (env !== undefined) query = query.where('env', '=', env);
    return query.orderBy('name').execute();
  }
  deployment(id: number) {
    return this.db.selectFrom('deployments').selectAll().where('id', '=', id).executeTakeFirst();
  }
  deploymentHosts(id: number) {
    return this.db.selectFrom('deployment_hosts').selectAll().where('deployment_id', '=', id).orderBy('host').execute();
  }
  listDeployments(options: { env?: string | undefined; limit: number }) {
    let query = this.db.selectFrom('deployments').selectAll();
    if (options.env !== undefined) query = query.where('env', '=', options.env);
    return query.orderBy('id', 'desc').limit(options.limit).execute();
  }
  activeDeployments(env?: string) {
    let query = this.db.selectFrom('deployments').selectAll().where('state', 'in', ['awaiting_approval', 'running', 'rolling_back']);
    if (env !== undefined) query = query.where('env', '=', env);
    return query.orderBy('id').execute();
  }
  approvals(deploymentId: number) {
    return this.db.selectFrom('approvals').selectAll().where('deployment_id', '=', deploymentId).orderBy('at').execute();
  }
  listUserTokens() {
    return this.db.selectFrom('tokens').selectAll().where('role', 'not in', ['agent', 'enroll']).orderBy('name').execute();
  }
  deploymentsSince(since: string, env?: string) {
    let query = this.db.selectFrom('deployments').selectAll().where('created_at', '>=', since);
    if (env !== undefined) query = query.where('env', '=', env);
    return query.orderBy('id', 'desc').execute();
  }
  auditSince(since: string, actions: readonly string[]) {
    if (actions.length === 0) return Promise.resolve([]);
    return this.db.selectFrom('audit_events').selectAll().where('at', '>=', since).where('action', 'in', [...actions]).orderBy('seq').execute();
  }
  deploymentLogs(id: number, host?: string) {
    let query = this.db.selectFrom('deployment_logs').selectAll().where('deployment_id', '=', id);
    if (host !== undefined) query = query.where('host', '=', host);
    return query.orderBy('at').orderBy('host').orderBy('line').execute();
  }
  runningDeployments(env?: string) {
    let query = this.db.selectFrom('deployments').selectAll().where('state', '=', 'running');
    if (env !== undefined) query = query.where('env', '=', env);
    return query.orderBy('id').execute();
  }
  async pendingStep(host: string) {
    const row = await this.db
      .selectFrom('deployment_hosts as step')
      .innerJoin('deployments as d', 'd.id', 'step.deployment_id')
      .selectAll('step')
      .where('step.host', '=', host)
      .where('step.state', 'in', ['pending', 'staging', 'activated', 'reverting'])
      .where('d.state', 'in', ['running', 'rolling_back'])
      .orderBy('step.deployment_id')
      .executeTakeFirst();
    if (!row) return undefined;
    const deployment = await this.deployment(row.deployment_id);
    return deployment ? { deployment, step: row } : undefined;
  }
  listAudit(options: { afterSeq?: number; limit: number }) {
    return this.db
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '>', options.afterSeq ?? 0)
      .orderBy('seq')
      .limit(options.limit)
      .execute();
  }

  async auditHead() {
    const row = await this.db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
    return { seq: Number(row.seq), hash: row.hash };
  }
  async listAuditCheckpoints(options: { afterSeq?: number; limit: number }) {
    const rows = await this.db
      .selectFrom('audit_checkpoints')
      .selectAll()
      .where('seq', '>', options.afterSeq ?? 0)
      .orderBy('seq')
      .limit(options.limit)
      .execute();
    return rows.map(checkpointRow);
  }
  async lastAuditCheckpoint(beforeSeq?: number) {
    let query = this.db.selectFrom('audit_checkpoints').selectAll();
    if (beforeSeq !== undefined) query = query.where('seq', '<', beforeSeq);
    const row = await query.orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return row ? checkpointRow(row) : undefined;
  }
  async firstAuditSeqSince(at: string) {
    const row = await this.db.selectFrom('audit_events').select('seq').where('at', '>=', at).orderBy('seq').limit(1).executeTakeFirst();
    return row ? Number(row.seq) : undefined;
  }

  async firecall(id: number) {
    const row = await this.db.selectFrom('firecalls').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? firecallRow(row) : undefined;
  }
  async listFirecalls(options: { env?: string | undefined; limit: number }) {
    let query = this.db.selectFrom('firecalls').selectAll();
    if (options.env !== undefined) query = query.where('env', '=', options.env);
    return (await query.orderBy('id', 'desc').limit(options.limit).execute()).map(firecallRow);
  }
  async openFirecalls() {
    return (await this.db.selectFrom('firecalls').selectAll().where('closed_at', 'is', null).orderBy('id').execute()).map(firecallRow);
  }
  async unreconciledFirecall(env: string) {
    const row = await this.db
      .selectFrom('firecalls')
      .selectAll()
      .where('env', '=', env)
      .where('closed_at', 'is not', null)
      .where('reconciled_at', 'is', null)
      .orderBy('id')
      .limit(1)
      .executeTakeFirst();
    return row ? firecallRow(row) : undefined;
  }
  async firecallRecords(id: number) {
    const rows = await this.db.selectFrom('firecall_records').selectAll().where('firecall_id', '=', id).orderBy('host').orderBy('kind').orderBy('name').orderBy('byte_offset').execute();
    return rows.map((row) => ({ ...row, firecall_id: Number(row.firecall_id), byte_offset: Number(row.byte_offset) }));
  }
  firecallHosts(hosts: readonly string[]) {
    if (hosts.length === 0) return Promise.resolve([]);
    return this.db.selectFrom('firecall_hosts').selectAll().where('host', 'in', [...hosts]).execute();
  }
  async driftItems(filter: DriftItemFilter) {
    let query = this.db.selectFrom('drift_items').selectAll();
    if (filter.host !== undefined) query = query.where('host', '=', filter.host);
    if (filter.env !== undefined) query = query.where('env', '=', filter.env);
    if (filter.states !== undefined) {
      if (filter.states.length === 0) return [];
      query = query.where('state', 'in', [...filter.states]);
    }
    const rows = await query.orderBy('host').orderBy('path').orderBy('id').execute();
    return rows.map(driftItemRow);
  }
  async openDriftCounts() {
    const rows = await this.db
      .selectFrom('drift_items')
      .select(['host', (eb) => eb.fn.countAll().as('count')])
      .where('state', '=', 'open')
      .groupBy('host')
      .execute();
    return new Map(rows.map((row) => [row.host, Number(row.count)]));
  }
  async driftScan(host: string) {
    const row = await this.db.selectFrom('drift_scans').selectAll().where('host', '=', host).executeTakeFirst();
    return row ? { ...row, full: Number(row.full), truncated: Number(row.truncated), entries: Number(row.entries), hashed_files: Number(row.hashed_files), elapsed_ms: Number(row.elapsed_ms) } : undefined;
  }
  async driftReportTimes() {
    const rows = await this.db.selectFrom('drift_scans').select(['host', 'reported_at']).execute();
    return new Map(rows.map((row) => [row.host, row.reported_at]));
  }
  async agentCommand(id: number) {
    const row = await this.db.selectFrom('agent_commands').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? commandRow(row) : undefined;
  }
  async pendingCommand(host: string) {
    const row = await this.db.selectFrom('agent_commands').selectAll().where('host', '=', host).where('state', '=', 'pending').orderBy('id').limit(1).executeTakeFirst();
    return row ? commandRow(row) : undefined;
  }

  // ---- writes ----

  async next(counter: string): Promise<number> {
    // One upsert: it locks the row in PostgreSQL (also on a counter's first use,
    // where a separate UPDATE-then-INSERT let two transactions both insert) and
    // runs under SQLite's single writer, so concurrent transactions never share a value.
    const row = await this.db
      .insertInto('counters')
      .values({ name: counter, value: 1 })
      .onConflict((conflict) => conflict.column('name').doUpdateSet({ value: sql`counters.value + 1` }))
      .returning('value')
      .executeTakeFirstOrThrow();
    return Number(row.value);
  }
  async insertConfig(row: Omit<ConfigRow, 'version'>) {
    const version = await this.next('config');
    await this.db.insertInto('configs').values({ ...row, version }).execute();
    return version;
  }
  async insertToken(row: TokenRow) {
    await this.db.insertInto('tokens').values(row).execute();
  }
  async updateToken(name: string, patch: { used_at?: string | null; revoked_at?: string | null }) {
    await this.db.updateTable('tokens').set(patch).where('name', '=', name).execute();
  }
  async insertRelease(row: ReleaseRow) {
    await this.db.insertInto('releases').values(row).execute();
  }
  async upsertReleaseEnvironment(
    releaseId: string,
    env: string,
    patch: { succeeded_at?: string | null; rolled_back_at?: string | null; rolled_back_reason?: string | null; rejected_at?: string | null; rejected_reason?: string | null; superseded_at?: string | null },
    at: string,
  ) {
    const existing = await this.releaseEnvironment(releaseId, env);
    if (existing) {
      if (Object.keys(patch).length > 0) {
        await this.db.updateTable('release_environments').set(patch).where('release_id', '=', releaseId).where('env', '=', env).execute();
      }
      return;
    }
    await this.db
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
  }
  async setEnvironmentCurrent(env: string, releaseId: string | null, at: string) {
    const result = await this.db.updateTable('environments').set({ current_release_id: releaseId, updated_at: at }).where('name', '=', env).executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) {
      await this.db.insertInto('environments').values({ name: env, current_release_id: releaseId, updated_at: at }).execute();
    }
  }
  async insertHost(row: HostRow) {
    await this.db.insertInto('hosts').values(row).execute();
  }
  async updateHost(name: string, patch: Partial<Omit<HostRow, 'name' | 'env' | 'created_at'>>) {
    await this.db.updateTable('hosts').set(patch).where('name', '=', name).execute();
  }
  async insertDeployment(row: DeploymentRow) {
    await this.db.insertInto('deployments').values(row).execute();
  }
  async updateDeployment(id: number, patch: { state?: string; finished_at?: string | null; error?: string | null; current_batch?: number; next_batch_at?: string | null; override_reason?: string | null }) {
    const row = await this.db
      .updateTable('deployments')
      .set({ ...patch, revision: sql`revision + 1` })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return { ...row, revision: Number(row.revision), current_batch: Number(row.current_batch), batches: Number(row.batches) };
  }
  async insertDeploymentHost(row: DeploymentHostRow) {
    await this.db.insertInto('deployment_hosts').values(row).execute();
  }
  async updateDeploymentHost(id: number, host: string, patch: { state?: string; error?: string | null; updated_at?: string; deadline_at?: string | null }) {
    await this.db.updateTable('deployment_hosts').set(patch).where('deployment_id', '=', id).where('host', '=', host).execute();
  }
  async insertApproval(row: ApprovalRow) {
    await this.db.insertInto('approvals').values(row).execute();
  }
  async appendDeploymentLogs(rows: readonly DeploymentLogRow[]) {
    // Chunked: SQLite limits the number of bound parameters per statement.
    for (let start = 0; start < rows.length; start += 100) {
      await this.db.insertInto('deployment_logs').values(rows.slice(start, start + 100)).execute();
    }
  }
  async appendAudit(event: AuditInput): Promise<AuditEventRow> {
    // Advancing the head first serializes writers: in PostgreSQL the UPDATE
    // holds the head's row lock until commit, so the chain cannot fork.
    const head = await this.db
      .updateTable('audit_head')
      .set({ seq: sql`seq + 1` })
      .where('id', '=', 1)
      .returning(['seq', 'hash'])
      .executeTakeFirstOrThrow();
    const seq = Number(head.seq);
    const details = JSON.parse(canonicalJson(event.details ?? {})) as unknown;
    const hash = auditHash(head.hash, { seq, at: event.at, actor: event.actor, action: event.action, target: event.target, details });
    const row: AuditEventRow = {
      seq,
      at: event.at,
      actor: event.actor,
      action: event.action,
      target: event.target,
      details: canonicalJson(details),
      prev_hash: head.hash,
      hash,
    };
    await this.db.insertInto('audit_events').values(row).execute();
    await this.db.updateTable('audit_head').set({ hash }).where('id', '=', 1).execute();
    return row;
  }
  async insertAuditCheckpoint(row: AuditCheckpointRow) {
    const result = await this.db
      .insertInto('audit_checkpoints')
      .values(row)
      .onConflict((conflict) => conflict.column('seq').doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
  }
  async insertFirecall(row: FirecallRow) {
    await this.db.insertInto('firecalls').values(row).execute();
  }
  async updateFirecall(id: number, patch: Partial<Pick<FirecallRow, 'closed_at' | 'closed_by' | 'close_note' | 'reconciled_at' | 'reconciled_by' | 'reconcile_mode' | 'reconcile_version'>>) {
    await this.db.updateTable('firecalls').set(patch).where('id', '=', id).execute();
  }
  async appendFirecallRecords(rows: readonly FirecallRecordRow[]) {
    // Chunked: SQLite limits the number of bound parameters per statement.
    for (let start = 0; start < rows.length; start += 100) {
      await this.db
        .insertInto('firecall_records')
        .values(rows.slice(start, start + 100))
        .onConflict((conflict) => conflict.columns(['firecall_id', 'host', 'kind', 'name', 'byte_offset']).doNothing())
        .execute();
    }
  }
  async setFirecallHost(row: FirecallHostRow) {
    await this.db
      .insertInto('firecall_hosts')
      .values(row)
      .onConflict((conflict) => conflict.column('host').doUpdateSet({ revision: row.revision, applied_at: row.applied_at, error: row.error }))
      .execute();
  }
  async insertDriftItem(row: Omit<DriftItemRow, 'id'>) {
    const id = await this.next('drift_item');
    await this.db.insertInto('drift_items').values({ ...row, id }).execute();
    return id;
  }
  async updateDriftItem(id: number, patch: Partial<Omit<DriftItemRow, 'id' | 'host' | 'env' | 'scope' | 'path' | 'first_seen_at'>>) {
    await this.db.updateTable('drift_items').set(patch).where('id', '=', id).execute();
  }
  async upsertDriftScan(row: DriftScanRow) {
    const { host: _host, ...rest } = row;
    await this.db
      .insertInto('drift_scans')
      .values(row)
      .onConflict((conflict) => conflict.column('host').doUpdateSet(rest))
      .execute();
  }
  async insertAgentCommand(row: Omit<AgentCommandRow, 'id'>) {
    const id = await this.next('agent_command');
    await this.db.insertInto('agent_commands').values({ ...row, id }).execute();
    return id;
  }
  async updateAgentCommand(id: number, patch: Partial<Pick<AgentCommandRow, 'state' | 'sent_at' | 'finished_at' | 'result'>>) {
    await this.db.updateTable('agent_commands').set(patch).where('id', '=', id).execute();
  }
  async claimPendingCommand(host: string, at: string) {
    const pending = await this.pendingCommand(host);
    if (!pending) return undefined;
    // Conditional on the state: of two servers claiming the same row, one updates it and the other gets nothing.
    const row = await this.db
      .updateTable('agent_commands')
      .set({ state: 'sent', sent_at: at })
      .where('id', '=', pending.id)
      .where('state', '=', 'pending')
      .returningAll()
      .executeTakeFirst();
    return row ? commandRow(row) : undefined;
  }
  async requeueSentCommands(host: string) {
    const result = await this.db.updateTable('agent_commands').set({ state: 'pending', sent_at: null }).where('host', '=', host).where('state', '=', 'sent').executeTakeFirst();
    return Number(result.numUpdatedRows);
  }
  async touchOpenDriftItems(host: string, at: string) {
    await this.db.updateTable('drift_items').set({ last_seen_at: at }).where('host', '=', host).where('state', '=', 'open').execute();
  }

  // ---- host facts (lockstep parity) ----

  hostFacts(hosts: readonly string[]): Promise<HostFactsRow[]> {
    if (hosts.length === 0) return Promise.resolve([]);
    return this.db.selectFrom('host_facts').selectAll().where('host', 'in', [...hosts]).orderBy('host').execute();
  }
  async putHostFacts(row: HostFactsRow): Promise<void> {
    await this.db
      .insertInto('host_facts')
      .values(row)
      .onConflict((conflict) => conflict.column('host').doUpdateSet({ facts: row.facts, reported_at: row.reported_at, changed_at: row.changed_at }))
      .execute();
  }
  async hostAlertStates() {
    const rows = await this.db.selectFrom('host_alert_states').selectAll().execute();
    return new Map(rows.map((row) => [row.host, row]));
  }
  async swapHostAlertState(expected: HostAlertStateRow | undefined, next: HostAlertStateRow) {
    if (expected === undefined) {
      const inserted = await this.db.insertInto('host_alert_states').values(next).onConflict((conflict) => conflict.column('host').doNothing()).executeTakeFirst();
      return Number(inserted.numInsertedOrUpdatedRows ?? 0n) > 0;
    }
    // Conditional on every field: of two servers judging the same change, one updates the row and the other gets nothing.
    const updated = await this.db
      .updateTable('host_alert_states')
      .set({ presence: next.presence, presence_at: next.presence_at, drift: next.drift, drift_at: next.drift_at })
      .where('host', '=', expected.host)
      .where('presence', '=', expected.presence)
      .where('presence_at', '=', expected.presence_at)
      .where('drift', '=', expected.drift)
      .where('drift_at', '=', expected.drift_at)
      .executeTakeFirst();
    return Number(updated.numUpdatedRows) > 0;
  }
}

/** Integer columns may come back as strings or bigints; rows hold numbers. */
function driftItemRow(row: DriftItemRow): DriftItemRow {
  return { ...row, id: Number(row.id), firecall_id: row.firecall_id === null ? null : Number(row.firecall_id) };
}

function commandRow(row: AgentCommandRow): AgentCommandRow {
  return { ...row, id: Number(row.id) };
}

/** Integer columns may come back as strings (PostgreSQL bigint). */
function firecallRow(row: FirecallRow): FirecallRow {
  return { ...row, id: Number(row.id) };
}

/** bigint columns may come back as strings; checkpoints hold numbers. */
function checkpointRow(row: AuditCheckpointRow): AuditCheckpointRow {
  return { ...row, seq: Number(row.seq), every: Number(row.every), interval_ms: Number(row.interval_ms) };
}
