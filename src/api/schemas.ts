/**
 * The wire protocol under /api/v1: request and response schemas shared by
 * the server (which validates every body with them), the agent, the CLI's
 * client and the dashboard. Types are inferred from the schemas.
 */
import { z } from 'zod';
import { APPROVAL_DECISIONS, DEPLOYMENT_KINDS, DEPLOYMENT_STATES, STEP_STATES } from '../core/deployment-states.js';
import { AGENT_COMMAND_KINDS, AGENT_COMMAND_STATES, DRIFT_ITEM_STATES, DRIFT_SCOPES } from '../core/drift-items.js';
import { FIRECALL_APPROVALS, FIRECALL_RECORD_KINDS, RECONCILE_MODES } from '../core/firecall-kinds.js';
import { USER_ROLES } from '../core/token-roles.js';
import { FORBIDDEN_ENTRY_TYPES } from '../core/manifest.js';
import { SYSTEM_CATEGORIES, type SystemCategory } from '../core/parity.js';

/** The largest id or count an integer column holds: PostgreSQL's integer stops at 2^31 - 1 (a larger one in a query is an error there, not "not found"). */
export const MAX_STORED_INT = 2_147_483_647;

export { API_PREFIX } from './paths.js';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 hex digest');
const name = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'expected lowercase letters, digits and - (at most 32, starting with a letter)');
/** Host names may contain dots (FQDNs). */
const hostName = z.string().regex(/^[a-z0-9][a-z0-9.-]{0,62}$/, 'expected a host name of lowercase letters, digits, . and -');

/** A manifest entry as sent by a client. Forbidden kinds are accepted here so that the validator can name them. */
export const wireEntry = z.discriminatedUnion('type', [
  z.strictObject({ path: z.string(), type: z.literal('file'), mode: z.number().int(), size: z.number().int(), sha256: z.string() }),
  z.strictObject({ path: z.string(), type: z.literal('dir'), mode: z.number().int() }),
  z.strictObject({ path: z.string(), type: z.literal('symlink'), target: z.string() }),
  z.strictObject({ path: z.string(), type: z.enum(FORBIDDEN_ENTRY_TYPES) }),
]);

/**
 * A release's system parts as they travel (see core/system-parts.ts): shapes only here; the
 * rules that need the tree (sources exist, paths, versions) are systemPartsProblems, run where it enters.
 */
export const wireSystemParts = z.strictObject({
  files: z
    .array(
      z.strictObject({
        path: z.string().max(4096),
        source: z.string().max(4096),
        mode: z.number().int(),
        owner: z.string().max(200).optional(),
        template: z.boolean(),
        afterChange: z.string().max(4096).optional(),
      }),
    )
    .max(10_000),
  packages: z
    .array(
      z.discriminatedUnion('kind', [
        z.strictObject({ kind: z.literal('deb'), deb: z.string().max(4096), name: z.string().max(200), version: z.string().max(200), architecture: z.string().max(64) }),
        z.strictObject({ kind: z.literal('apt'), name: z.string().max(200), version: z.string().max(200) }),
      ]),
    )
    .max(10_000),
});

export const createReleaseRequest = z.strictObject({
  /** Defaults to the `app` of the applied lockstep.yaml. */
  app: name.optional(),
  version: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/, 'expected a version of letters, digits, ., _, + and - (at most 64)'),
  entries: z.array(wireEntry).max(1_000_000),
  /** Managed files and packages, from the release dir's lockstep-release.yaml. */
  system: wireSystemParts.optional(),
  /** The upload session that carried its blobs (POST /uploads); creating the release closes it. */
  uploadSession: z.number().int().positive().optional(),
});
export type CreateReleaseRequest = z.infer<typeof createReleaseRequest>;

export const missingBlobsRequest = z.strictObject({ hashes: z.array(sha256).max(1_000_000) });
export const missingBlobsResponse = z.object({ missing: z.array(sha256) });

/** Opens an upload session: every blob a release being created references, with its size. */
export const openUploadRequest = z.strictObject({ blobs: z.array(z.strictObject({ hash: sha256, size: z.number().int().min(0).max(16 * 1024 ** 3) })).max(1_000_000) });
/** An open upload session: the blobs the server lacks, to be sent in batches (PUT /uploads/:id) before it expires. */
export const uploadSessionView = z.object({ id: z.number(), missing: z.array(sha256), missingBytes: z.number(), expiresAt: z.string() });
/** What one upload batch stored. */
export const uploadBatchResponse = z.object({ blobs: z.number(), bytes: z.number(), created: z.number() });
/** `lockstep gc`: list only (dryRun) or remove. */
export const gcRequest = z.strictObject({ dryRun: z.boolean().default(false) });
/** The blobs gc removed (or would remove), with their total. */
export const gcResponse = z.object({
  dryRun: z.boolean(),
  graceSeconds: z.number(),
  count: z.number(),
  bytes: z.number(),
  blobs: z.array(z.object({ hash: sha256, size: z.number(), storedAt: z.string() })),
});
export type UploadSessionView = z.infer<typeof uploadSessionView>;
export type UploadBatchResponse = z.infer<typeof uploadBatchResponse>;
export type GcResponse = z.infer<typeof gcResponse>;

export const releaseSummary = z.object({
  id: sha256,
  app: z.string(),
  version: z.string(),
  createdAt: z.string(),
  createdBy: z.string(),
  files: z.number(),
  bytes: z.number(),
  environments: z.array(z.object({ env: z.string(), succeededAt: z.string().nullable(), rolledBackAt: z.string().nullable(), current: z.boolean() })),
});
export type ReleaseSummary = z.infer<typeof releaseSummary>;
export const createReleaseResponse = z.object({ release: releaseSummary, created: z.boolean() });

export const applyConfigRequest = z.strictObject({ yaml: z.string().max(1_000_000), file: z.string().max(4096).default('lockstep.yaml') });
export const applyConfigResponse = z.object({ version: z.number(), changed: z.boolean() });

export const addHostRequest = z.strictObject({ name: hostName, env: name });
/** `caFingerprint`: the server's CA, for the agent's --ca-fingerprint (null when the server speaks plain HTTP). */
export const addHostResponse = z.object({ host: z.string(), env: z.string(), enrollToken: z.string(), caFingerprint: z.string().nullable() });
/** The server's CA certificate (PEM) and its fingerprint; both null when the server speaks plain HTTP. */
export const serverCaResponse = z.object({ fingerprint: z.string().nullable(), pem: z.string().nullable() });

export const deployRequest = z.strictObject({
  release: z.string().min(1).max(200),
  env: name,
  reason: z.string().max(2000).optional(),
  /** Admin only: proceed past refused rules (needs a reason; forbidden by allow_override: false). */
  override: z.boolean().optional(),
});
export const rollbackRequest = z.strictObject({
  to: z.string().min(1).max(200).optional(),
  reason: z.string().max(2000).optional(),
});

/**
 * A host's step in a deployment: waiting (a later batch) → pending (its task
 * is available) → staging → activated (switched; health checks running) →
 * succeeded | failed; skipped when the rollout stopped first; reverting →
 * reverted | revert_failed when a stopped rollout returns the host to the
 * release it had.
 */
export const hostStepState = z.enum(STEP_STATES);
export type HostStepState = z.infer<typeof hostStepState>;
/** awaiting_approval → running → rolling_back? → succeeded | failed; or awaiting_approval → rejected | expired. */
export const deploymentState = z.enum(DEPLOYMENT_STATES);
export type DeploymentState = z.infer<typeof deploymentState>;

/** What a host has staged of its task so far: bytes and blobs fetched of those it lacked. */
export const stagingProgress = z.strictObject({
  bytes: z.number().int().min(0),
  totalBytes: z.number().int().min(0),
  files: z.number().int().min(0),
  totalFiles: z.number().int().min(0),
  /** Since staging started, on the host's clock (for the rate). */
  elapsedMs: z.number().int().min(0),
});
export type StagingProgress = z.infer<typeof stagingProgress>;

export const deploymentView = z.object({
  id: z.number(),
  env: z.string(),
  /** `return`: one host brought back to its environment's release after it switched late (see docs/concepts.md). */
  kind: z.enum(DEPLOYMENT_KINDS),
  releaseId: z.string(),
  version: z.string(),
  fromReleaseId: z.string().nullable(),
  state: deploymentState,
  requestedBy: z.string(),
  reason: z.string().nullable(),
  createdAt: z.string(),
  /** When the rollout began: the approval that let it run, else when it was created. */
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  /** How long it ran (finishedAt − startedAt, by the server's clock); null while it runs. */
  durationMs: z.number().nullable(),
  error: z.string().nullable(),
  /** Increases with every change; pass it back as `since` to long-poll for the next change. */
  revision: z.number(),
  /** Index of the batch being rolled out (0 is the canary when there is one). */
  currentBatch: z.number(),
  batches: z.number(),
  /** Set when an admin overrode refused rules. */
  overrideReason: z.string().nullable(),
  approvals: z.array(z.object({ actor: z.string(), decision: z.enum(APPROVAL_DECISIONS), comment: z.string().nullable(), at: z.string() })),
  hosts: z.array(
    z.object({
      host: z.string(), batch: z.number(), state: hostStepState, fromReleaseId: z.string().nullable(), error: z.string().nullable(), updatedAt: z.string(),
      /** The host's last staging progress in this deployment (absent: none reported). */
      progress: stagingProgress.optional(),
    }),
  ),
});
export type DeploymentView = z.infer<typeof deploymentView>;

export const hostView = z.object({
  name: z.string(),
  env: z.string(),
  enrolled: z.boolean(),
  online: z.boolean(),
  releaseId: z.string().nullable(),
  version: z.string().nullable(),
  lastSeenAt: z.string().nullable(),
  /** From the agent's continuous health checks; null when none are configured or reported yet. */
  health: z.object({ healthy: z.boolean(), detail: z.string(), at: z.string() }).nullable(),
  /** Open drift items (`drifted (N)` in status); 0 from servers before drift detection. */
  openDrift: z.number().default(0),
  /** When the host's agent last reported its drift findings (null: never). */
  driftReportAt: z.string().nullable().default(null),
  /**
   * Online, but no drift report for longer than two periodic scans and a minute: its drift
   * monitoring is not working, so "no drift" means nothing for it (`drift unknown` in status).
   */
  driftStale: z.boolean().default(false),
  /**
   * Its release differs from its environment's current release while no deployment runs there
   * (a late switch, a hand-edited `current`, a failed revert): `diverged` in status.
   */
  diverged: z.boolean().default(false),
});
export type HostView = z.infer<typeof hostView>;

/** A fire call that keeps an environment from being clean: open, or closed and not reconciled yet. */
export const firecallSummary = z.object({ id: z.number(), state: z.enum(['open', 'unreconciled']), requestedBy: z.string(), reason: z.string(), expiresAt: z.string() });
export type FirecallSummary = z.infer<typeof firecallSummary>;

export const statusResponse = z.object({
  app: z.string().nullable(),
  environments: z.array(
    z.object({
      name: z.string(),
      promoteFrom: z.string().nullable(),
      current: z.object({ id: z.string(), version: z.string() }).nullable(),
      hosts: z.array(hostView),
      lastDeployment: deploymentView.nullable(),
      /** Absent from servers without fire calls. */
      firecall: firecallSummary.nullable().optional(),
    }),
  ),
  /** Scheduled parity (`parity:` in lockstep.yaml): per pair, the undeclared differences of the last check. Absent from older servers. */
  parity: z.array(z.object({ a: z.string(), b: z.string(), undeclared: z.number(), since: z.string().nullable(), checkedAt: z.string().nullable() })).optional(),
});
export type StatusResponse = z.infer<typeof statusResponse>;

export const auditEventView = z.object({
  seq: z.number(),
  at: z.string(),
  actor: z.string(),
  action: z.string(),
  target: z.string(),
  details: z.unknown(),
  prevHash: z.string(),
  hash: z.string(),
});
export type AuditEventView = z.infer<typeof auditEventView>;

/** The error body of every non-2xx response. */

// ---- agent protocol ----

export const enrollRequest = z.strictObject({ token: z.string().min(1).max(200), agentVersion: z.string().max(64).optional() });
export const enrollResponse = z.object({ host: z.string(), env: z.string(), credential: z.string() });

const durationMs = z.number().int().min(0);
export const healthCheckSpec = z.union([
  z.object({ http: z.string(), status: z.object({ min: z.number(), max: z.number() }), body: z.string().optional(), timeout: durationMs }),
  z.object({ tcp: z.string(), timeout: durationMs }),
  z.object({ exec: z.string(), timeout: durationMs }),
]);
export type HealthCheckSpec = z.infer<typeof healthCheckSpec>;
export const healthSpec = z.object({
  checks: z.array(healthCheckSpec),
  interval: durationMs,
  healthy_after: z.number().int().min(1),
  timeout: durationMs,
  watch_interval: durationMs,
});
export type HealthSpec = z.infer<typeof healthSpec>;
export const hooksSpec = z.object({
  before_activate: z.string().optional(),
  after_activate: z.string().optional(),
  after_rollback: z.string().optional(),
  timeout: durationMs,
});
export type HooksSpec = z.infer<typeof hooksSpec>;

/**
 * One unit of work for one host: make `releaseId` the active release.
 * `deploy` runs before_activate/after_activate hooks; `rollback` (an
 * environment's rollback) and `revert` (a stopped rollout returning this
 * host to the release it had) run after_rollback. Health checks follow each.
 */
export const agentTask = z.object({
  deploymentId: z.number(),
  kind: z.enum(['deploy', 'rollback', 'revert']),
  env: z.string(),
  releaseId: sha256,
  version: z.string(),
  deployTo: z.string(),
  keepReleases: z.number().int(),
  vars: z.record(z.string(), z.string()),
  /**
   * The environment's secrets, name → value, in plaintext (also the `secrets.NAME` of managed-file templates): only ever in the answer to an agent of that
   * environment. Written to DEPLOY_TO/shared/secrets/NAME (0400), or into lockstep.env with `secretsInEnv`.
   */
  secrets: z.record(z.string(), z.string()).default({}),
  /** The environment's secrets_in_env: secrets go into lockstep.env (then 0600) instead of files. */
  secretsInEnv: z.boolean().default(false),
  health: healthSpec,
  hooks: hooksSpec,
  /**
   * When the step's deadline passes (server clock, ISO 8601), for logs; null or absent: none (reverts).
   * The agent goes by `remainingMs`, so that a skewed clock cannot move its deadline.
   */
  deadlineAt: z.string().nullable().optional(),
  /**
   * Milliseconds left until the deadline when the server answered. The agent counts them on its
   * monotonic clock from when it received the task, and drops the task (no switch) once they ran out.
   */
  remainingMs: z.number().int().min(0).nullable().optional(),
});
export type AgentTask = z.infer<typeof agentTask>;
/**
 * What the server asks of a host besides deployments. The agent answers each
 * with POST /agent/commands/:id (commandResult), after it sent the drift
 * report of the re-scan that confirms it (cause: { kind: 'command', commandId }).
 * Paths are absolute host paths as drift items name them; null: every open item.
 */
export const agentCommand = z.discriminatedUnion('kind', [
  z.object({ id: z.number().int(), kind: z.literal('drift-scan'), full: z.boolean() }),
  z.object({ id: z.number().int(), kind: z.literal('drift-revert'), paths: z.array(z.string()).nullable() }),
  z.object({ id: z.number().int(), kind: z.literal('drift-accept'), paths: z.array(z.string()).min(1) }),
  // `release capture`: upload the .deb files of the apt cache (with --packages) and the given files, and describe them.
  z.object({ id: z.number().int(), kind: z.literal('release-capture'), packages: z.boolean(), paths: z.array(z.string()) }),
]);
export type AgentCommand = z.infer<typeof agentCommand>;

/** The answer to a command: ok, or an error that says what went wrong on the host. `detail` is one line for people. */
export const commandResult = z.strictObject({
  host: hostName,
  ok: z.boolean(),
  error: z.string().max(4000).optional(),
  detail: z.string().max(4000).optional(),
  /** What a `release-capture` command found on the host (its content uploaded first). */
  capture: z
    .strictObject({
      /** Every installed package (with --packages); `deb`: the uploaded .deb of the apt cache, when there was one. */
      packages: z.array(
        z.strictObject({
          name: z.string().max(200),
          version: z.string().max(200),
          deb: z.strictObject({ sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().min(0), architecture: z.string().max(64) }).optional(),
        }),
      ).max(100_000),
      files: z.array(z.strictObject({ path: z.string().max(4096), sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().min(0), mode: z.number().int().min(0).max(0o7777) })).max(10_000),
    })
    .optional(),
});
export type CommandResult = z.infer<typeof commandResult>;

/** A watched path, as lockstep.yaml's `watch:` says it. */
export const watchSpec = z.object({ path: z.string(), include: z.array(z.string()), exclude: z.array(z.string()) });
export type WatchSpec = z.infer<typeof watchSpec>;

/**
 * What a host should know apart from tasks, from the applied lockstep.yaml and
 * server state: where releases live, what to watch and how often to scan.
 * `revision` changes whenever anything in it changes; every work response
 * carries the current revision so that the agent re-fetches when it differs.
 */
export const hostSettings = z.object({
  revision: z.string(),
  env: z.string(),
  /** deploy_to of the applied config (null: no config yet). */
  deployTo: z.string().nullable(),
  watch: z.array(watchSpec),
  scan: z.object({
    periodicMs: z.number().int().min(1000),
    fullMs: z.number().int().min(1000),
    /** How politely the scanner's threads run (defaults: an older server's settings lack them). */
    nice: z.number().int().min(0).max(19).default(10),
    ionice: z.enum(['idle', 'best-effort', 'none']).default('idle'),
    maxReadBytesPerSecond: z.number().int().min(1).nullable().default(null),
  }),
});
export type HostSettings = z.infer<typeof hostSettings>;

export const workResponse = z.object({ task: agentTask.nullable(), command: agentCommand.nullable().default(null), settingsRevision: z.string().default('') });

/** One side of a drift finding: what the baseline says or what the host has (absent fields: not applicable). */
export const driftEntryAttrs = z.strictObject({
  type: z.enum(['file', 'dir', 'symlink', 'other']),
  mode: z.number().int().min(0).max(0o7777).optional(),
  uid: z.number().int().min(0).optional(),
  gid: z.number().int().min(0).optional(),
  size: z.number().int().min(0).optional(),
  sha256: sha256.optional(),
  target: z.string().max(4096).optional(),
  special: z.string().max(32).optional(),
  /** unreadable, vanished, loop, too-large. */
  problem: z.string().max(32).optional(),
  detail: z.string().max(500).optional(),
  /** A package finding (type `other`, special `package`): the version installed (see docs/system-changes.md). */
  version: z.string().max(256).optional(),
  /** A file finding: the package that owns the file according to dpkg (a hand edit of a packaged file). */
  ownedBy: z.string().max(256).optional(),
  /** A package finding whose new version's .deb apt left in its cache: that .deb's architecture (sha256 and size: the uploaded .deb, for drift adopt). */
  architecture: z.string().max(64).optional(),
});
export type DriftEntryAttrs = z.infer<typeof driftEntryAttrs>;

/**
 * One drifted path on a host: `release` scope is a path of the active release (under DEPLOY_TO/current),
 * `watch` scope a path under a watched path. `path` is the absolute host path (without --root);
 * `kinds` are the finding kinds of src/core/drift.ts (added, removed, type, target, content, mode, owner, group, unreadable, …).
 */
export const driftFinding = z.strictObject({
  scope: z.enum(DRIFT_SCOPES),
  path: z.string().min(1).max(4096),
  kinds: z.array(z.string().max(32)).min(1).max(16),
  expected: driftEntryAttrs.nullable(),
  actual: driftEntryAttrs.nullable(),
});
export type DriftFinding = z.infer<typeof driftFinding>;

/**
 * The complete set of a host's findings after a scan (not a delta): the server opens items for new ones,
 * updates last-seen of known ones, and closes open items that are gone: `reverted` / `accepted` when the
 * cause is the revert / accept command, `adopted` when a deployment of the release they were adopted into
 * made them go, else `resolved`. Sent when the set changed, after each command and deployment, and at
 * least once per periodic scan.
 */
export const driftReport = z.strictObject({
  host: hostName,
  /** The release whose tree was scanned (null: none active). */
  releaseId: sha256.nullable(),
  full: z.boolean(),
  cause: z.discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('scan') }),
    z.strictObject({ kind: z.literal('watch') }),
    z.strictObject({ kind: z.literal('command'), commandId: z.number().int().max(MAX_STORED_INT) }),
    z.strictObject({ kind: z.literal('deployment'), deploymentId: z.number().int().max(MAX_STORED_INT) }),
  ]),
  findings: z.array(driftFinding).max(10_000),
  /** More findings existed than were sent. */
  truncated: z.boolean(),
  /** Entries the scan looked at and how long it took, for `lockstep drift scan`. */
  stats: z.strictObject({ entries: z.number().int().min(0).max(MAX_STORED_INT), hashedFiles: z.number().int().min(0).max(MAX_STORED_INT), elapsedMs: z.number().min(0) }),
});
export type DriftReport = z.infer<typeof driftReport>;

/** A drift item as the API shows it (`lockstep drift`). */
export const driftItemView = z.object({
  id: z.number(),
  host: z.string(),
  env: z.string(),
  scope: z.enum(DRIFT_SCOPES),
  path: z.string(),
  kinds: z.array(z.string()),
  expected: driftEntryAttrs.nullable(),
  actual: driftEntryAttrs.nullable(),
  state: z.enum(DRIFT_ITEM_STATES),
  firstSeenAt: z.string(),
  lastSeenAt: z.string(),
  closedAt: z.string().nullable(),
  /** A token name, `deployment #N`, or `lockstep` (went away by itself). */
  closedBy: z.string().nullable(),
  /** The release `drift adopt` made from it; the item stays open until that release runs on the host. */
  adoptedInto: z.object({ id: z.string(), version: z.string() }).nullable(),
  reason: z.string().nullable(),
  /** The fire call open in the environment when it was first seen: a change made under it, not an intrusion. */
  firecall: z.number().nullable().default(null),
});
export type DriftItemView = z.infer<typeof driftItemView>;
export const driftListResponse = z.object({ items: z.array(driftItemView) });
export type DriftListResponse = z.infer<typeof driftListResponse>;

/** An agent command as the API shows it; `ok`, `error` and `detail` come from the host's answer. */
export const commandView = z.object({
  id: z.number(),
  host: z.string(),
  kind: z.enum(AGENT_COMMAND_KINDS),
  state: z.enum(AGENT_COMMAND_STATES),
  paths: z.array(z.string()).nullable(),
  createdBy: z.string(),
  createdAt: z.string(),
  sentAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  ok: z.boolean().nullable(),
  error: z.string().nullable(),
  detail: z.string().nullable(),
});
export type CommandView = z.infer<typeof commandView>;
/** `drift revert`: one command per host with open drift; hosts without any are skipped. */
export const driftRevertResponse = z.object({ commands: z.array(commandView), skipped: z.array(z.string()) });
export type DriftRevertResponse = z.infer<typeof driftRevertResponse>;
/** `drift adopt`: the release made, how many items it adopted, and where to deploy it first. */
export const driftAdoptResponse = z.object({ release: releaseSummary, created: z.boolean(), host: z.string(), items: z.number(), firstEnv: z.string().nullable() });
export type DriftAdoptResponse = z.infer<typeof driftAdoptResponse>;

/** The bulk blob fetch: blobs of one release the host is being deployed (or has); the answer is a framed stream (content/blob-frames.ts). */
export const agentBlobsRequest = z.strictObject({
  host: hostName,
  releaseId: sha256,
  hashes: z.array(sha256).min(1).max(100_000),
});
export type AgentBlobsRequest = z.infer<typeof agentBlobsRequest>;


export const agentReport = z.strictObject({
  host: hostName,
  deploymentId: z.number().int().max(MAX_STORED_INT),
  /** `cancelled`: the agent dropped the task at its deadline; `currentReleaseId` says whether it had switched. */
  state: z.enum(['staging', 'activated', 'succeeded', 'failed', 'cancelled']),
  /** The kind of the task reported on (absent from older agents). */
  taskKind: z.enum(['deploy', 'rollback', 'revert']).optional(),
  error: z.string().max(4000).optional(),
  /** Output of hooks and health checks since the last report. */
  logs: z.array(z.strictObject({ source: z.string().max(64), text: z.string().max(16_384) })).max(2000).optional(),
  /** The release `current` points at after this step (null: none). */
  currentReleaseId: sha256.nullable(),
  /** With `staging`: how far the transfer got; progress pushes the step's deadline forward (host_timeout counts silence). */
  progress: stagingProgress.optional(),
});
export type AgentReport = z.infer<typeof agentReport>;
/** The answer to a report: the time the host has left to switch after it (null: no deadline; absent: unknown). */
export const agentReportResponse = z.object({ ok: z.literal(true), remainingMs: z.number().nullable().optional() });
export type AgentReportResponse = z.infer<typeof agentReportResponse>;

export const heartbeatRequest = z.strictObject({
  host: hostName,
  currentReleaseId: sha256.nullable(),
  agentVersion: z.string().max(64).optional(),
  /** The latest round of continuous health checks (absent: none configured yet). */
  health: z.strictObject({ healthy: z.boolean(), detail: z.string().max(4000) }).optional(),
});

// ---- fire call (issue 5) ----

/**
 * What sshd on one host must trust for fire calls. The agent installs it under its --root: the CA public key,
 * the key revocation list (`krl`, base64 of `ssh-keygen -k` output: closed fire calls and open ones limited to
 * other hosts) and the sshd drop-in; it runs `reloadCommand` when a file changed, ends the sessions of the
 * key ids in `endSessions`, and reports `revision` back. `enabled: false`: the environment has no fire-call
 * policy, and the agent removes what it installed.
 */
export const firecallTrust = z.object({
  revision: z.string(),
  enabled: z.boolean(),
  caPublicKey: z.string().nullable(),
  principals: z.array(z.string()),
  krl: z.string(),
  reloadCommand: z.string().nullable(),
  endSessions: z.array(z.string()),
});
export type FirecallTrust = z.infer<typeof firecallTrust>;

/** One piece an agent ships: an sshd log line naming a fire call's key id, or a piece of a session transcript. */
export const firecallRecord = z.strictObject({
  firecallId: z.number().int().positive().max(MAX_STORED_INT),
  kind: z.enum(FIRECALL_RECORD_KINDS),
  /** The transcript's file name, or the identity of the sshd log file. */
  name: z.string().min(1).max(255),
  /** Byte offset in that file; a piece sent twice is stored once. */
  offset: z.number().int().min(0),
  text: z.string().max(65_536),
});
export type FirecallRecord = z.infer<typeof firecallRecord>;

/** The agent's report: the trust revision it installed (or why it could not), and what it recorded. */
export const firecallAgentReport = z.strictObject({
  host: hostName,
  revision: z.string().max(128).optional(),
  error: z.string().max(4000).optional(),
  records: z.array(firecallRecord).max(1000),
});
export type FirecallAgentReport = z.infer<typeof firecallAgentReport>;

export const openFirecallRequest = z.strictObject({
  env: name,
  reason: z.string().trim().min(1, 'a reason is required: --reason TEXT').max(2000),
  /** The user's OpenSSH public key line (ssh-ed25519 or ssh-rsa). */
  publicKey: z.string().min(1, 'a public key is required: --pubkey FILE').max(16_384),
  /** A duration such as 30m (default: 30m, at most the environment's max_ttl). */
  ttl: z.string().max(32).optional(),
  /** Only these hosts accept the certificate (default: every host of the environment). */
  hosts: z.array(hostName).min(1).max(1000).optional(),
  /** Addresses or CIDR blocks the certificate may be used from. */
  from: z.string().min(1).max(1000).optional(),
  /** An admin opens at once where firecall.require_approval asks for an approver (alerted and audited; needs the reason). */
  override: z.boolean().optional(),
});
export const firecallView = z.object({
  id: z.number(),
  env: z.string(),
  state: z.enum(['awaiting_approval', 'expired', 'open', 'unreconciled', 'reconciled']),
  requestedBy: z.string(),
  requestedAt: z.string(),
  reason: z.string(),
  keyId: z.string(),
  serial: z.number(),
  principals: z.array(z.string()),
  hosts: z.array(z.string()).nullable(),
  from: z.string().nullable(),
  openedAt: z.string(),
  expiresAt: z.string(),
  closedAt: z.string().nullable(),
  closedBy: z.string().nullable(),
  closeNote: z.string().nullable(),
  reconciledAt: z.string().nullable(),
  reconciledBy: z.string().nullable(),
  reconcileMode: z.string().nullable(),
  reconcileVersion: z.string().nullable(),
  /** null: no approval was required; else awaiting, approved, overridden or expired. */
  approval: z.enum(FIRECALL_APPROVALS).nullable(),
  approvedBy: z.string().nullable(),
  approvedAt: z.string().nullable(),
  overrideReason: z.string().nullable(),
});
export type FirecallView = z.infer<typeof firecallView>;
/** `certificate` is null while the fire call awaits approval: it is signed when approved. */
export const openFirecallResponse = z.object({ firecall: firecallView, certificate: z.string().nullable(), hosts: z.array(z.string()) });
export type OpenFirecallResponse = z.infer<typeof openFirecallResponse>;
export const firecallListResponse = z.object({ firecalls: z.array(firecallView) });
export type FirecallListResponse = z.infer<typeof firecallListResponse>;
export const closeFirecallRequest = z.strictObject({ note: z.string().max(2000).optional() });
/** After a close: per host of the environment, whether it installed the revocation within the wait. */
export const closeFirecallResponse = z.object({
  firecall: firecallView,
  hosts: z.array(z.object({ host: z.string(), revoked: z.boolean(), detail: z.string() })),
});
export type CloseFirecallResponse = z.infer<typeof closeFirecallResponse>;
export const reconcileFirecallRequest = z
  .strictObject({
    mode: z.enum(RECONCILE_MODES),
    /** With adopt: the version of the release made from the changes. */
    version: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/, 'expected a version of letters, digits, ., _, + and - (at most 64)').optional(),
  })
  .refine((request) => (request.mode === 'adopt') === (request.version !== undefined), { message: 'use --revert, or --adopt with --version V' });
export const firecallShowResponse = z.object({
  firecall: firecallView,
  /** The signed certificate (public, useless without the requester's private key); null until approved. */
  certificate: z.string().nullable(),
  /** Accepted logins, from sshd's log lines. */
  logins: z.array(z.object({ host: z.string(), at: z.string(), user: z.string(), from: z.string() })),
  /** Every sshd line that names the key id (logins, refusals), oldest first per host. */
  events: z.array(z.object({ host: z.string(), at: z.string(), kind: z.enum(['login', 'refused', 'other']), line: z.string() })),
  /** One per session: the terminal transcript `script` recorded. */
  transcripts: z.array(z.object({ host: z.string(), name: z.string(), text: z.string() })),
});
export type FirecallShowResponse = z.infer<typeof firecallShowResponse>;

export const agentReleaseResponse = z.object({
  manifest: z.object({ app: z.string(), version: z.string(), entries: z.array(wireEntry), system: wireSystemParts.optional() }),
});

/** The changes from release `base` to the release asked for: its app and version, entries added or changed, paths removed. */
export const manifestDelta = z.object({
  base: sha256,
  app: z.string(),
  version: z.string(),
  entries: z.array(wireEntry),
  removed: z.array(z.string()),
  /** The system parts of the release asked for, in full (absent: it has none). */
  system: wireSystemParts.optional(),
});
export type ManifestDelta = z.infer<typeof manifestDelta>;

/** What GET /agent/releases/:id answers: the full manifest, or a delta against the `base` the agent named. */
export const agentReleaseAnswer = z.union([agentReleaseResponse, z.object({ delta: manifestDelta })]);

export const blobPutResponse = z.object({ size: z.number(), created: z.boolean() });
export const releaseListResponse = z.object({ releases: z.array(releaseSummary) });
export const releaseShowResponse = z.object({ release: releaseSummary, manifest: agentReleaseResponse.shape.manifest });
export const hostListResponse = z.object({ hosts: z.array(hostView) });
export const ruleResult = z.object({ rule: z.string(), passed: z.boolean(), detail: z.string(), fix: z.string().optional(), waiting: z.boolean().optional() });
const pathChanges = z.object({ count: z.number(), paths: z.array(z.string()) });
export const planResponse = z.object({
  release: releaseSummary,
  env: z.string(),
  verdict: z.object({ kind: z.enum(['allowed', 'waiting', 'refused']), rules: z.array(ruleResult), reason: z.string().optional() }),
  /** Host names per batch, in rollout order (the canary first). */
  batches: z.array(z.array(z.string())),
  rollout: z.object({ canary: z.number(), batch: z.string(), pause: z.number(), maxFailures: z.string() }),
  hosts: z.array(
    z.object({
      host: z.string(),
      currentReleaseId: z.string().nullable(),
      added: pathChanges,
      changed: pathChanges,
      removed: pathChanges,
      fetchBytes: z.number(),
      fetchBlobs: z.number(),
      /** Managed files and packages that would change on this host (absent: neither release has system parts). */
      system: z
        .object({
          files: z.array(z.object({ path: z.string(), change: z.enum(['create', 'update', 'release']), diff: z.string(), error: z.string().optional() })),
          packages: z.array(z.object({ action: z.enum(['install', 'upgrade', 'downgrade', 'remove']), name: z.string(), from: z.string().optional(), to: z.string().optional() })),
        })
        .optional(),
    }),
  ),
});
export const historyResponse = z.object({ deployments: z.array(deploymentView) });
export const auditResponse = z.object({ events: z.array(auditEventView) });

export type ApplyConfigResponse = z.infer<typeof applyConfigResponse>;
export type MissingBlobsResponse = z.infer<typeof missingBlobsResponse>;
export type CreateReleaseResponse = z.infer<typeof createReleaseResponse>;
export type BlobPutResponse = z.infer<typeof blobPutResponse>;
export type ReleaseListResponse = z.infer<typeof releaseListResponse>;
export type ReleaseShowResponse = z.infer<typeof releaseShowResponse>;
export type AddHostResponse = z.infer<typeof addHostResponse>;
export type HostListResponse = z.infer<typeof hostListResponse>;
export type PlanResponse = z.infer<typeof planResponse>;
export type HistoryResponse = z.infer<typeof historyResponse>;
export type AuditResponse = z.infer<typeof auditResponse>;
export const logsResponse = z.object({ logs: z.array(z.object({ host: z.string(), at: z.string(), source: z.string(), text: z.string() })) });
export type LogsResponse = z.infer<typeof logsResponse>;

export const createTokenRequest = z.strictObject({
  name: z.string().regex(/^[a-z][a-z0-9._-]{0,63}$/, 'expected a token name of lowercase letters, digits, ., _ and - (at most 64)'),
  role: z.enum(USER_ROLES),
  /** Environments the token may act on; absent or empty: all. */
  envs: z.array(name).max(64).optional(),
});
export const tokenView = z.object({ name: z.string(), role: z.string(), envs: z.array(z.string()).nullable(), createdAt: z.string(), revokedAt: z.string().nullable() });
export type TokenView = z.infer<typeof tokenView>;
export const createTokenResponse = z.object({ token: z.string(), name: z.string(), role: z.string(), envs: z.array(z.string()).nullable() });
export type CreateTokenResponse = z.infer<typeof createTokenResponse>;
export const tokenListResponse = z.object({ tokens: z.array(tokenView) });
export type TokenListResponse = z.infer<typeof tokenListResponse>;

/** One entry of `lockstep changes`: what changed, who, why, when, the result and the way back. */
export const changeView = z.object({
  at: z.string(),
  env: z.string().nullable(),
  kind: z.string(),
  actor: z.string(),
  what: z.string(),
  why: z.string().nullable(),
  result: z.string(),
  /** The command that would undo it, when there is one. */
  wayBack: z.string().nullable(),
});
export type ChangeView = z.infer<typeof changeView>;
export const changesResponse = z.object({ since: z.string(), changes: z.array(changeView) });
export type ChangesResponse = z.infer<typeof changesResponse>;

// ---- host facts and parity ----

/** Caps that keep one agent's facts report bounded (a large Debian host has ~3,000 packages). */
const MAX_PACKAGES = 50_000;
const MAX_WATCHED = 100_000;
const boundedRecord = (key: z.ZodString, value: z.ZodString, max: number, what: string) =>
  z.record(key, value).refine((record) => Object.keys(record).length <= max, { message: `at most ${max} ${what}` });

/** At most this many entries per system category (units, users, ports, …): a busy host has a few hundred. */
const MAX_SYSTEM_ENTRIES = 10_000;
const systemEntries = boundedRecord(z.string().min(1).max(256), z.string().max(256), MAX_SYSTEM_ENTRIES, 'entries');
/** One source of system facts (SystemFactSet in src/core/parity.ts): per category, name → value. */
const systemFactSet = z.strictObject(Object.fromEntries(SYSTEM_CATEGORIES.map((category) => [category, systemEntries.optional()])) as Record<SystemCategory, z.ZodOptional<typeof systemEntries>>);

/**
 * What an agent reports about its host for `lockstep parity` (the shape of HostFacts in src/core/parity.ts).
 * `watched`: absolute host path → a short digest of the entry as it is now (type, mode, owner, hash or target).
 */
export const hostFacts = z.strictObject({
  os: z.strictObject({ id: z.string().max(64), version: z.string().max(64) }),
  kernel: z.string().max(256),
  arch: z.string().max(32),
  packages: z
    .strictObject({ manager: z.enum(['dpkg', 'rpm']), installed: boundedRecord(z.string().min(1).max(256), z.string().max(256), MAX_PACKAGES, 'packages') })
    .nullable(),
  watched: boundedRecord(z.string().min(1).max(4096).startsWith('/'), z.string().max(200), MAX_WATCHED, 'watched paths'),
  system: z.strictObject({ configured: systemFactSet, live: systemFactSet }).optional(),
  managed: boundedRecord(z.string().min(1).max(4096).startsWith('/'), z.string().max(200), MAX_WATCHED, 'managed files').optional(),
});
export type HostFactsBody = z.infer<typeof hostFacts>;

/** POST /agent/facts: the latest facts of the agent's own host. */
export const factsReport = z.strictObject({ host: hostName, facts: hostFacts });
export type FactsReport = z.infer<typeof factsReport>;

const parityDifference = z.object({
  category: z.enum(['release', 'var', 'secret', 'fact', 'package', 'file', 'watched', ...SYSTEM_CATEGORIES]),
  name: z.string(),
  /** Values per environment (or, within an environment, per host); empty: absent. */
  values: z.record(z.string(), z.array(z.string())),
  declared: z.boolean(),
  /** Set when two hosts of one environment differ. */
  within: z.object({ env: z.string(), host: z.string(), reference: z.string() }).nullable(),
  /** A system fact read from the live system rather than from files under the agent's root. */
  live: z.boolean().optional(),
  files: z.array(z.object({ path: z.string(), onlyIn: z.string().nullable() })).optional(),
  fileCount: z.number().optional(),
});

/** GET /parity?a=ENV&b=ENV: the comparison of two environments (see src/core/parity.ts). */
export const parityResponse = z.object({
  a: z.string(),
  b: z.string(),
  /** Percent of compared items that are equal or differ only as declared. */
  score: z.number(),
  compared: z.number(),
  equal: z.number(),
  declared: z.number(),
  undeclared: z.number(),
  differences: z.array(parityDifference),
  notes: z.array(z.string()),
  /** When each host last reported its facts (null: never). */
  hosts: z.array(z.object({ name: z.string(), env: z.string(), factsAt: z.string().nullable() })),
});
export type ParityResponse = z.infer<typeof parityResponse>;

// ---- secrets per environment ----

/** The longest secret value, in characters: room for a PEM key or certificate chain within the 64 KiB body limit. */
export const SECRET_VALUE_MAX_CHARS = 60_000;

/** PUT /environments/:env/secrets/:name: the new value (never echoed back, never logged). */
export const setSecretRequest = z.strictObject({
  value: z.string().min(1, 'a secret cannot be empty').max(SECRET_VALUE_MAX_CHARS, `a secret holds at most ${SECRET_VALUE_MAX_CHARS} characters`),
});
export type SetSecretRequest = z.infer<typeof setSecretRequest>;

/** One secret as people see it: never its value. */
export const secretView = z.object({ env: z.string(), name: z.string(), version: z.number().int(), setBy: z.string(), setAt: z.string() });
export type SecretView = z.infer<typeof secretView>;

/**
 * GET /environments/:env/secrets: the environment's secrets by name. `deployed`: the environment's last
 * succeeded deployment or rollback started after this version was set, so its hosts have it; false: they get
 * it at the next one.
 */
export const secretListResponse = z.object({ env: z.string(), secrets: z.array(secretView.extend({ deployed: z.boolean() })) });
export type SecretListResponse = z.infer<typeof secretListResponse>;

/** DELETE /environments/:env/secrets/:name: what was removed (the version it had). */
export const removeSecretResponse = z.object({ env: z.string(), name: z.string(), version: z.number().int() });
export type RemoveSecretResponse = z.infer<typeof removeSecretResponse>;
