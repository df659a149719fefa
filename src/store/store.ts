/**
 * The persistence interface of the server. One implementation over Kysely
 * (kysely-store.ts) serves every database; src/store/sqlite/ and
 * src/store/postgres/ only build the Kysely dialect for theirs.
 */
import type { Selectable } from 'kysely';
import type {
  ConfigsTable,
  DeploymentHostsTable,
  DeploymentsTable,
  HostsTable,
  ReleaseEnvironmentsTable,
  ReleasesTable,
  TokensTable,
  AuditEventsTable,
  DeploymentLogsTable,
  ApprovalsTable,
  AuditCheckpointsTable,
  FirecallsTable,
  FirecallRecordsTable,
  FirecallHostsTable,
  DriftItemsTable,
  AgentCommandsTable,
  DriftScansTable,
} from './schema.js';

export type ConfigRow = Selectable<ConfigsTable>;
export type TokenRow = Selectable<TokensTable>;
export type ReleaseRow = Selectable<ReleasesTable>;
export type ReleaseEnvironmentRow = Selectable<ReleaseEnvironmentsTable>;
export type HostRow = Selectable<HostsTable>;
export type DeploymentRow = Selectable<DeploymentsTable>;
export type DeploymentHostRow = Selectable<DeploymentHostsTable>;
export type AuditEventRow = Selectable<AuditEventsTable>;
export type DeploymentLogRow = Selectable<DeploymentLogsTable>;
export type ApprovalRow = Selectable<ApprovalsTable>;
export type AuditCheckpointRow = Selectable<AuditCheckpointsTable>;
export type FirecallRow = Selectable<FirecallsTable>;
export type FirecallRecordRow = Selectable<FirecallRecordsTable>;
export type FirecallHostRow = Selectable<FirecallHostsTable>;
export type DriftItemRow = Selectable<DriftItemsTable>;
export type AgentCommandRow = Selectable<AgentCommandsTable>;
export type DriftScanRow = Selectable<DriftScansTable>;

/** Which drift items to list. */
export interface DriftItemFilter {
  readonly host?: string | undefined;
  readonly env?: string | undefined;
  /** Default: every state. */
  readonly states?: readonly string[] | undefined;
}

/** An audit event before it is chained. */
export interface AuditInput {
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly details: unknown;
}

/** Queries that change nothing. */
export interface ReadRepo {
  latestConfig(): Promise<ConfigRow | undefined>;

  tokenByHash(hash: string): Promise<TokenRow | undefined>;
  tokenByName(name: string): Promise<TokenRow | undefined>;

  release(id: string): Promise<ReleaseRow | undefined>;
  releasesByPrefix(prefix: string, limit: number): Promise<ReleaseRow[]>;
  releaseByVersion(app: string, version: string): Promise<ReleaseRow | undefined>;
  /** Newest first, without manifests. */
  listReleases(limit: number): Promise<Omit<ReleaseRow, 'manifest'>[]>;
  releaseEnvironment(releaseId: string, env: string): Promise<ReleaseEnvironmentRow | undefined>;
  releaseEnvironments(releaseId: string): Promise<ReleaseEnvironmentRow[]>;
  /** Releases ever deployed to an environment (agents may fetch only these). */
  releaseIdsDeployedTo(env: string): Promise<string[]>;
  /**
   * Known-good releases of an environment: succeeded there and not rolled
   * back, newest success first.
   */
  knownGoodReleases(env: string): Promise<ReleaseEnvironmentRow[]>;

  environmentCurrent(env: string): Promise<string | undefined>;

  host(name: string): Promise<HostRow | undefined>;
  listHosts(env?: string): Promise<HostRow[]>;

  deployment(id: number): Promise<DeploymentRow | undefined>;
  deploymentHosts(id: number): Promise<DeploymentHostRow[]>;
  /** Newest first. */
  listDeployments(options: { env?: string | undefined; limit: number }): Promise<DeploymentRow[]>;
  runningDeployments(env?: string): Promise<DeploymentRow[]>;
  /** Captured hook and health-check output of a deployment, oldest first. */
  deploymentLogs(id: number, host?: string): Promise<DeploymentLogRow[]>;
  /** Deployments that are awaiting approval, running or rolling back. */
  activeDeployments(env?: string): Promise<DeploymentRow[]>;
  approvals(deploymentId: number): Promise<ApprovalRow[]>;
  /** Tokens of people and scripts (not agents' or enrollment tokens), by name. */
  listUserTokens(): Promise<TokenRow[]>;
  /** Deployments created at or after `since` (ISO), newest first. */
  deploymentsSince(since: string, env?: string): Promise<DeploymentRow[]>;
  /** Audit events at or after `since` (ISO) with one of `actions`, oldest first. */
  auditSince(since: string, actions: readonly string[]): Promise<AuditEventRow[]>;
  /** The host's unfinished step of a running deployment, if any. */
  pendingStep(host: string): Promise<{ deployment: DeploymentRow; step: DeploymentHostRow } | undefined>;

  /** Oldest first, starting after `afterSeq`. */
  listAudit(options: { afterSeq?: number; limit: number }): Promise<AuditEventRow[]>;
  /** The chain head: the last seq written and its hash. */
  auditHead(): Promise<{ seq: number; hash: string }>;
  /** Signed checkpoints, oldest first, starting after `afterSeq`. */
  listAuditCheckpoints(options: { afterSeq?: number; limit: number }): Promise<AuditCheckpointRow[]>;
  /** The newest checkpoint, or with `beforeSeq` the newest one covering less than it. */
  lastAuditCheckpoint(beforeSeq?: number): Promise<AuditCheckpointRow | undefined>;
  /** The first event dated at or after `at`. */
  firstAuditSeqSince(at: string): Promise<number | undefined>;

  firecall(id: number): Promise<FirecallRow | undefined>;
  /** Newest first. */
  listFirecalls(options: { env?: string | undefined; limit: number }): Promise<FirecallRow[]>;
  /** Fire calls not closed yet, oldest first (the sweeper closes the expired ones). */
  openFirecalls(): Promise<FirecallRow[]>;
  /** The oldest closed fire call of an environment that was not reconciled. */
  unreconciledFirecall(env: string): Promise<FirecallRow | undefined>;
  /** What agents shipped about a fire call, by host, kind, file and offset. */
  firecallRecords(id: number): Promise<FirecallRecordRow[]>;
  /** The trust each host of the list last installed. */
  firecallHosts(hosts: readonly string[]): Promise<FirecallHostRow[]>;
  /** Drift items by host and path (then id: a path's history in order). */
  driftItems(filter: DriftItemFilter): Promise<DriftItemRow[]>;
  /** How many open drift items each host has (hosts without any are absent). */
  openDriftCounts(): Promise<Map<string, number>>;
  /** The host's latest drift report. */
  driftScan(host: string): Promise<DriftScanRow | undefined>;
  /** Host → when its agent last reported drift, for every host that ever did (one query for a whole status). */
  driftReportTimes(): Promise<Map<string, string>>;
  agentCommand(id: number): Promise<AgentCommandRow | undefined>;
  /** The host's oldest command that was not handed out yet. */
  pendingCommand(host: string): Promise<AgentCommandRow | undefined>;
}

/** Queries and changes; only available inside a transaction. */
export interface WriteRepo extends ReadRepo {
  /** The next value of a named counter (ids). */
  next(counter: string): Promise<number>;
  insertConfig(row: Omit<ConfigRow, 'version'>): Promise<number>;
  insertToken(row: TokenRow): Promise<void>;
  updateToken(name: string, patch: Partial<Pick<TokenRow, 'used_at' | 'revoked_at'>>): Promise<void>;
  insertRelease(row: ReleaseRow): Promise<void>;
  upsertReleaseEnvironment(
    releaseId: string,
    env: string,
    patch: Partial<Pick<ReleaseEnvironmentRow, 'succeeded_at' | 'rolled_back_at' | 'rolled_back_reason' | 'rejected_at' | 'rejected_reason' | 'superseded_at'>>,
    at: string,
  ): Promise<void>;
  setEnvironmentCurrent(env: string, releaseId: string | null, at: string): Promise<void>;
  insertHost(row: HostRow): Promise<void>;
  updateHost(name: string, patch: Partial<Omit<HostRow, 'name' | 'env' | 'created_at'>>): Promise<void>;
  insertDeployment(row: DeploymentRow): Promise<void>;
  /** Updates a deployment and increments its revision (in PostgreSQL this also locks its row). */
  updateDeployment(id: number, patch: Partial<Pick<DeploymentRow, 'state' | 'finished_at' | 'error' | 'current_batch' | 'next_batch_at' | 'override_reason'>>): Promise<DeploymentRow>;
  insertDeploymentHost(row: DeploymentHostRow): Promise<void>;
  updateDeploymentHost(id: number, host: string, patch: Partial<Pick<DeploymentHostRow, 'state' | 'error' | 'updated_at' | 'deadline_at'>>): Promise<void>;
  appendDeploymentLogs(rows: readonly DeploymentLogRow[]): Promise<void>;
  insertApproval(row: ApprovalRow): Promise<void>;
  /** Appends one event to the hash chain and returns it. */
  appendAudit(event: AuditInput): Promise<AuditEventRow>;
  /** Stores a signed checkpoint; false when one for that seq exists already (another server signed it). */
  insertAuditCheckpoint(row: AuditCheckpointRow): Promise<boolean>;
  insertFirecall(row: FirecallRow): Promise<void>;
  updateFirecall(id: number, patch: Partial<Pick<FirecallRow, 'closed_at' | 'closed_by' | 'close_note' | 'reconciled_at' | 'reconciled_by' | 'reconcile_mode' | 'reconcile_version'>>): Promise<void>;
  /** Stores records; a piece already stored (same host, kind, file and offset) is skipped. */
  appendFirecallRecords(rows: readonly FirecallRecordRow[]): Promise<void>;
  setFirecallHost(row: FirecallHostRow): Promise<void>;

  /** Inserts a drift item and returns its id (a second open item for the same host, scope and path is refused by the database). */
  insertDriftItem(row: Omit<DriftItemRow, 'id'>): Promise<number>;
  updateDriftItem(id: number, patch: Partial<Pick<DriftItemRow, 'kinds' | 'expected' | 'actual' | 'state' | 'last_seen_at' | 'closed_at' | 'closed_by' | 'adopted_into' | 'reason' | 'firecall_id'>>): Promise<void>;
  /** Records the host's latest drift report (replacing the one before). */
  upsertDriftScan(row: DriftScanRow): Promise<void>;
  /** Inserts a command and returns its id. */
  insertAgentCommand(row: Omit<AgentCommandRow, 'id'>): Promise<number>;
  updateAgentCommand(id: number, patch: Partial<Pick<AgentCommandRow, 'state' | 'sent_at' | 'finished_at' | 'result'>>): Promise<void>;
  /** Marks the host's oldest pending command sent and returns it; a command is handed out once even with several servers. */
  claimPendingCommand(host: string, at: string): Promise<AgentCommandRow | undefined>;
  /** Hands the host's sent but unanswered commands out again (its agent restarted and lost them); returns how many. */
  requeueSentCommands(host: string): Promise<number>;
  /** Sets last_seen_at of every open drift item of the host. */
  touchOpenDriftItems(host: string, at: string): Promise<void>;
}

/** What differs between databases, stated as capabilities rather than names. */
export interface StoreCapabilities {
  /** Several server processes may share the database. */
  readonly sharedByServers: boolean;
}

/** A database holding Lockstep's state. */
export interface Store {
  readonly capabilities: StoreCapabilities;
  /** Reads outside any transaction. */
  readonly read: ReadRepo;
  /** Runs `work` in one transaction: everything it writes commits together, or nothing does. */
  transaction<T>(work: (repo: WriteRepo) => Promise<T>): Promise<T>;
  /** Brings the schema up to date. */
  migrate(): Promise<void>;
  close(): Promise<void>;
}

// ---- host facts (lockstep parity) ----
// Declaration merging adds these to the repos above, keeping the parity block in one place.

export type HostFactsRow = Selectable<import('./schema.js').HostFactsTable>;

export interface ReadRepo {
  /** The latest facts of these hosts (hosts that never reported have no row). */
  hostFacts(hosts: readonly string[]): Promise<HostFactsRow[]>;
}

export interface WriteRepo {
  /** Stores a host's latest facts, replacing what it reported before. */
  putHostFacts(row: HostFactsRow): Promise<void>;
}

// ---- alerts on hosts that go quiet ----

export type HostAlertStateRow = Selectable<import('./schema.js').HostAlertStatesTable>;

export interface ReadRepo {
  /** Host → what was last alerted about its presence and drift reporting (hosts never alerted on are absent). */
  hostAlertStates(): Promise<Map<string, HostAlertStateRow>>;
}

export interface WriteRepo {
  /**
   * Replaces the host's alert state if it still is `expected` (undefined: no
   * row yet); false when another writer changed it first, so of several
   * servers sweeping one database exactly one alerts.
   */
  swapHostAlertState(expected: HostAlertStateRow | undefined, next: HostAlertStateRow): Promise<boolean>;
}
