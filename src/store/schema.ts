/**
 * The database schema as Kysely table types. Portable on purpose: text,
 * integer and real columns only; times are ISO-8601 UTC text (sortable);
 * JSON is text. Ids come from the `counters` table, so no dialect-specific
 * auto-increment is needed. State and kind columns are typed with the unions
 * of src/core/, so rows need no casts (the database itself stores text).
 */
import type { ApprovalDecision, DeploymentKind, DeploymentState, StepState } from '../core/deployment-states.js';
import type { AgentCommandKind, AgentCommandState, DriftItemState, DriftScope } from '../core/drift-items.js';
import type { FirecallApproval, FirecallRecordKind, ReconcileMode } from '../core/firecall-kinds.js';
import type { HostAlertState, HostHealth } from '../core/host-presence.js';
import type { TokenRole } from '../core/token-roles.js';
export interface CountersTable {
  name: string;
  value: number;
}

export interface ConfigsTable {
  version: number;
  yaml: string;
  /** The validated configuration as JSON. */
  parsed: string;
  applied_by: string;
  applied_at: string;
}

export interface TokensTable {
  name: string;
  /** SHA-256 of the secret; the secret itself is never stored. */
  token_hash: string;
  role: TokenRole;
  /** JSON array of environment names this token may act on; null: all. */
  envs: string | null;
  host: string | null;
  created_at: string;
  used_at: string | null;
  revoked_at: string | null;
}

export interface ReleasesTable {
  id: string;
  app: string;
  version: string;
  /** Canonical manifest JSON. */
  manifest: string;
  files: number;
  bytes: number;
  created_by: string;
  created_at: string;
}

export interface ReleaseEnvironmentsTable {
  release_id: string;
  env: string;
  /** Set when a deployment of the release was first created for the environment. */
  first_deployed_at: string;
  succeeded_at: string | null;
  rolled_back_at: string | null;
  rolled_back_reason: string | null;
  /** When another release replaced it as the environment's current release (null: still current, or never was). */
  superseded_at: string | null;
  /** Set when the release must not be promoted onward from this environment. */
  rejected_at: string | null;
  rejected_reason: string | null;
}

export interface EnvironmentsTable {
  name: string;
  current_release_id: string | null;
  updated_at: string;
}

export interface HostsTable {
  name: string;
  env: string;
  created_at: string;
  enrolled_at: string | null;
  last_seen_at: string | null;
  current_release_id: string | null;
  agent_version: string | null;
  /** null: no checks reported yet. */
  health: HostHealth | null;
  health_detail: string | null;
  health_at: string | null;
}

export interface DeploymentsTable {
  id: number;
  env: string;
  kind: DeploymentKind;
  release_id: string;
  from_release_id: string | null;
  state: DeploymentState;
  requested_by: string;
  reason: string | null;
  created_at: string;
  finished_at: string | null;
  error: string | null;
  revision: number;
  /** Index of the batch being rolled out (0: the canary). */
  current_batch: number;
  batches: number;
  /** When the next batch may start (a pause between batches). */
  next_batch_at: string | null;
  /** Set when an admin overrode refused rules (--override --reason). */
  override_reason: string | null;
}

export interface ApprovalsTable {
  deployment_id: number;
  /** The token name that decided. */
  actor: string;
  decision: ApprovalDecision;
  comment: string | null;
  at: string;
}

export interface DeploymentHostsTable {
  deployment_id: number;
  host: string;
  from_release_id: string | null;
  state: StepState;
  error: string | null;
  updated_at: string;
  batch: number;
  /** When a host that has not finished its step fails it (host_timeout). */
  deadline_at: string | null;
  /** The host's last staging progress (JSON of api's StagingProgress), shown by `deploy --follow`; null: none reported. */
  progress: string | null;
}

export interface DeploymentLogsTable {
  deployment_id: number;
  host: string;
  at: string;
  line: number;
  /** What produced the line: `hook:after_activate`, `health`, `agent`. */
  source: string;
  text: string;
}

export interface AuditEventsTable {
  seq: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  /** Canonical JSON. */
  details: string;
  prev_hash: string;
  hash: string;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}

export interface AuditCheckpointsTable {
  seq: number;
  hash: string;
  at: string;
  every: number;
  interval_ms: number;
  key_id: string;
  /** Ed25519, base64. */
  signature: string;
}

/** One fire call (issue 5): an emergency certificate, its window, its close and its reconciliation. */
export interface FirecallsTable {
  /** Also the certificate's serial. */
  id: number;
  env: string;
  requested_by: string;
  reason: string;
  /** `firecall-<id>-<requester>`: sshd logs it with every login. */
  key_id: string;
  /** JSON array of account names. */
  principals: string;
  /** JSON array of host names the certificate is limited to; null: every host of the environment. */
  hosts: string | null;
  source_address: string | null;
  certificate: string;
  opened_at: string;
  expires_at: string;
  /** Set when closed by hand or, once the certificate expired, by the server (closed_by 'lockstep'). */
  closed_at: string | null;
  closed_by: string | null;
  close_note: string | null;
  /** Set when its changes were reverted or adopted; until then deployments to the environment are refused. */
  reconciled_at: string | null;
  reconciled_by: string | null;
  reconcile_mode: ReconcileMode | null;
  /** The release version the changes were adopted into. */
  reconcile_version: string | null;
  /**
   * With firecall.require_approval: where the request stands (null: no approval was required).
   * While `awaiting`, `certificate` is empty, `opened_at` is the request's time and `expires_at`
   * the request's own expiry; approval signs the certificate and sets both from the approval's time.
   */
  approval: FirecallApproval | null;
  /** When the fire call was requested (null on rows from before approvals: opened_at). */
  requested_at: string | null;
  /** The requester's public key line, kept while the request awaits approval (the certificate is signed then). */
  public_key: string | null;
  /** The validity asked for, counted from the approval. */
  ttl_ms: number | null;
  approved_by: string | null;
  approved_at: string | null;
  /** An admin's --override reason: opened without the required approval. */
  override_reason: string | null;
}

/** What agents shipped about a fire call: sshd log lines naming its key id and pieces of session transcripts. */
export interface FirecallRecordsTable {
  firecall_id: number;
  host: string;
  kind: FirecallRecordKind;
  /** The transcript file (one per session), or the log file's identity for sshd lines. */
  name: string;
  /** Byte offset in that file: with `name`, makes a resent piece a no-op. */
  byte_offset: number;
  /** When the agent read it. */
  at: string;
  text: string;
}

/** The fire-call trust each host last installed, so `firecall close` can tell when revocation is in force. */
export interface FirecallHostsTable {
  host: string;
  revision: string;
  applied_at: string;
  /** Why the host could not install it (null: installed). */
  error: string | null;
}

/** One drifted path on one host, from first detection until it is closed. */
export interface DriftItemsTable {
  id: number;
  host: string;
  env: string;
  scope: DriftScope;
  /** Absolute host path. */
  path: string;
  /** JSON array of finding kinds (added, content, mode…). */
  kinds: string;
  /** JSON driftEntryAttrs or null. */
  expected: string | null;
  actual: string | null;
  state: DriftItemState;
  first_seen_at: string;
  last_seen_at: string;
  closed_at: string | null;
  /** Who or what closed it: a token name, `deployment #N`, `lockstep`. */
  closed_by: string | null;
  /** The release a `drift adopt` made from it; the item stays open until that release runs on the host. */
  adopted_into: string | null;
  reason: string | null;
  /** The fire call during which it was first seen (set by the fire-call feature). */
  firecall_id: number | null;
}

/** Work for one host's agent besides deployments (drift scan, revert, accept). */
export interface AgentCommandsTable {
  id: number;
  host: string;
  kind: AgentCommandKind;
  /** JSON of the command's fields besides id and kind. */
  payload: string;
  state: AgentCommandState;
  created_by: string;
  created_at: string;
  sent_at: string | null;
  finished_at: string | null;
  /** JSON commandResult once finished. */
  result: string | null;
}

/** The latest drift report of each host. */
export interface DriftScansTable {
  host: string;
  reported_at: string;
  release_id: string | null;
  full: number;
  cause: string;
  truncated: number;
  entries: number;
  hashed_files: number;
  elapsed_ms: number;
}

export interface Database {
  audit_head: AuditHeadTable;
  counters: CountersTable;
  configs: ConfigsTable;
  tokens: TokensTable;
  releases: ReleasesTable;
  release_environments: ReleaseEnvironmentsTable;
  environments: EnvironmentsTable;
  hosts: HostsTable;
  deployments: DeploymentsTable;
  deployment_hosts: DeploymentHostsTable;
  deployment_logs: DeploymentLogsTable;
  approvals: ApprovalsTable;
  audit_events: AuditEventsTable;
  audit_checkpoints: AuditCheckpointsTable;
  firecalls: FirecallsTable;
  firecall_records: FirecallRecordsTable;
  firecall_hosts: FirecallHostsTable;
  drift_items: DriftItemsTable;
  agent_commands: AgentCommandsTable;
  drift_scans: DriftScansTable;
}

// ---- host facts (lockstep parity) ----

export interface HostFactsTable {
  host: string;
  /** The agent's facts report (hostFacts in src/api/schemas.ts) as JSON. */
  facts: string;
  /** When the agent last reported (it reports at start and whenever its facts change). */
  reported_at: string;
  /** When the facts last differed from the previous report. */
  changed_at: string;
}

// Merged into Database above; kept in its own block so the parity tables stay apart from the drift ones.
export interface Database {
  host_facts: HostFactsTable;
}

// ---- alerts on hosts that go quiet (src/server/host-presence-service.ts) ----

export interface HostAlertStatesTable {
  host: string;
  /** As last alerted. */
  presence: HostAlertState['presence'];
  presence_at: string;
  /** Whether the agent's drift reports arrive, as last alerted. */
  drift: HostAlertState['drift'];
  drift_at: string;
}

// Merged into Database above.
export interface Database {
  host_alert_states: HostAlertStatesTable;
}

// ---- secrets per environment (src/server/secrets/) ----

export interface SecretsTable {
  env: string;
  /** A variable-like name (DB_PASSWORD). */
  name: string;
  /** Counts every set of this name in this environment, removals included, so a version is never reused. */
  version: number;
  /** base64 of nonce (12 bytes) ‖ AES-256-GCM ciphertext ‖ tag (16 bytes); the AAD binds env, name and version. */
  sealed: string;
  /** Which key sealed it (a short fingerprint of DATA_DIR/secrets.key), to name the right key when another does not fit. */
  key_id: string;
  /** A keyed digest (HMAC) of the value, so parity compares environments without decrypting; never leaves the server. */
  digest: string;
  set_by: string;
  set_at: string;
}

// ---- scheduled parity (src/server/drift/parity-watch-service.ts) ----

export interface ParityAlertStatesTable {
  /** `A B`: the pair as lockstep.yaml names it. */
  pair: string;
  /** JSON array of the undeclared differences (keys) found at the last check, sorted. */
  differences: string;
  /** Since when at least one undeclared difference was found without a break (null: none now). */
  since: string | null;
  checked_at: string;
}

// ---- blob intake: upload sessions and quotas (src/server/releases/upload-service.ts) ----

/** A short-lived permission to upload the blobs of one release being created. */
export interface UploadSessionsTable {
  id: number;
  /** The token that opened it: only that token may upload into it. */
  token: string;
  /** JSON array of every blob hash the release references (gc keeps them while the session is open). */
  blobs: string;
  /** JSON array of the hashes the server lacked when it opened: the ones it accepts. */
  missing: string;
  created_at: string;
  expires_at: string;
  /** When the release was created with it. */
  closed_at: string | null;
}

/** A blob uploaded outside a session, counted against its uploader's quota until a release references it. */
export interface BlobHoldsTable {
  /** `token:NAME` (a deployer's PUT /blobs/:hash) or `host:NAME` (a drift upload). */
  holder: string;
  hash: string;
  size: number;
  at: string;
}

// Merged into Database above.
export interface Database {
  secrets: SecretsTable;
  parity_alert_states: ParityAlertStatesTable;
  upload_sessions: UploadSessionsTable;
  blob_holds: BlobHoldsTable;
}
