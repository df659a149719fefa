/**
 * The wire contract: every route of the API under API_PREFIX, by name, with
 * its method, path, who may call it, where an environment scope applies and
 * how its bodies travel. The server registers and authorises routes from this
 * table, both clients build their requests from it, and docs/openapi.json is
 * generated from it (with the schemas of route-schemas.ts, joined by name).
 *
 * No schema library here: the CLI imports this module on its start-up path,
 * and loading zod would add ~150 ms to every command (measured).
 */

/**
 * Who may call a route: nobody in particular (`public`), the holder of a
 * one-time enrollment token in the body (`enroll`), an enrolled host's agent
 * (`agent`), or a user token of at least this role.
 */
export type Access = 'public' | 'enroll' | 'agent' | 'viewer' | 'deployer' | 'approver' | 'admin';

/**
 * Where a route's environment comes from, for tokens limited to some
 * environments (`--env` on a token): a field of the body or path (checked by
 * the server before the handler runs), or the environment of the deployment,
 * host, drift target or fire call it names (checked where that is looked up).
 */
export type EnvironmentScope = 'body.env' | 'params.env' | 'deployment' | 'host' | 'drift-target' | 'firecall';

/** One route of the contract. */
export interface RouteSpec {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Relative to API_PREFIX; `:name` segments are path parameters. */
  readonly path: string;
  readonly access: Access;
  /** One line for the API reference. */
  readonly summary: string;
  /** `json` (the default when the route has a body schema); `optional-json`: an absent body counts as `{}`; `stream`: raw bytes (application/octet-stream). */
  readonly request?: 'json' | 'optional-json' | 'stream';
  /** `json` (the default); `stream`: raw bytes; `ndjson`: JSON lines. */
  readonly response?: 'json' | 'stream' | 'ndjson';
  /** The success status (default 200). */
  readonly status?: 201;
  readonly scope?: EnvironmentScope;
  /** The largest request body accepted, in bytes (default JSON_BODY_MAX_BYTES); larger ones get 413 before they are read. */
  readonly maxBytes?: number;
  /** The longest string a JSON body may hold, in characters (default JSON_MAX_STRING_CHARS). */
  readonly maxStringChars?: number;
  /** A long poll: waits on the server up to the `wait` seconds of its query. */
  readonly longPoll?: true;
}

/** The body limit of every route that names none: enrollment and the other small JSON bodies. */
export const JSON_BODY_MAX_BYTES = 64 * 1024;
/** How deep a JSON body may nest; no schema of ours goes past 6. */
export const JSON_MAX_DEPTH = 64;
/** The longest string a JSON body may hold by default: the longest any body schema accepts (a fire-call transcript piece), except lockstep.yaml. */
export const JSON_MAX_STRING_CHARS = 65_536;
/**
 * A release manifest: sized for 100,000 entries of ~330 bytes of JSON each
 * (a file entry with its 64-hex hash is ~110 bytes plus its path).
 */
export const MANIFEST_MAX_BYTES = 32 * 1024 * 1024;
/** The hashes of a 100,000-file release (67 bytes of JSON each), with room. */
const BLOB_LIST_MAX_BYTES = 8 * 1024 * 1024;
/** lockstep.yaml: its schema takes 1,000,000 characters, and JSON escapes can double some. */
const CONFIG_MAX_BYTES = 4 * 1024 * 1024;
/** Up to 1,000 absolute paths of up to 4,096 characters (drift revert and accept). */
const PATH_LIST_MAX_BYTES = 8 * 1024 * 1024;
/**
 * What an agent's batched reports may reach under their schemas (2,000 log
 * pieces of 16 KiB, 1,000 transcript pieces of 64 KiB, 10,000 drift findings,
 * 100,000 watched paths); only an enrolled host's credential gets this far.
 */
const AGENT_BATCH_MAX_BYTES = 64 * 1024 * 1024;
/** The largest release blob an upload may carry. */
const RELEASE_BLOB_MAX_BYTES = 16 * 1024 * 1024 * 1024;
/** An upload session's blob list: 100,000 blobs of ~90 bytes of JSON each (hash and size), with room. */
const UPLOAD_LIST_MAX_BYTES = 16 * 1024 * 1024;
/** One upload batch: its largest blob plus the 40-byte frame headers of the rest (the CLI sends batches of up to 16 MiB). */
const UPLOAD_BATCH_MAX_BYTES = RELEASE_BLOB_MAX_BYTES + 64 * 1024 * 1024;
/** The largest drifted file an agent may upload (the protocol's cap). */
export const DRIFT_BLOB_MAX_BYTES = 64 * 1024 * 1024;

/** Every route, by name. Adding a route here makes the server refuse to start until a handler is bound to it. */
export const ROUTES = {
  health: { method: 'GET', path: '/health', access: 'public', summary: 'Whether the server answers' },
  openapi: { method: 'GET', path: '/openapi.json', access: 'public', summary: 'This API as an OpenAPI 3.1 document' },
  serverCa: { method: 'GET', path: '/ca', access: 'public', summary: "The server's TLS CA certificate (PEM) and its fingerprint; public, like any CA certificate" },

  // ---- configuration ----
  applyConfig: { method: 'POST', path: '/config', access: 'admin', summary: 'Apply lockstep.yaml', maxBytes: CONFIG_MAX_BYTES, maxStringChars: 1_000_000 },
  getConfig: { method: 'GET', path: '/config', access: 'viewer', summary: 'The lockstep.yaml applied last' },

  // ---- blobs and releases ----
  missingBlobs: { method: 'POST', path: '/blobs/missing', access: 'deployer', summary: 'Which of these blobs the server lacks', maxBytes: BLOB_LIST_MAX_BYTES },
  uploadBlob: { method: 'PUT', path: '/blobs/:hash', access: 'deployer', summary: "Upload one blob (it must be in an open upload session of the token, or fit the token's quota); the server checks its hash", request: 'stream', maxBytes: RELEASE_BLOB_MAX_BYTES },
  openUpload: { method: 'POST', path: '/uploads', access: 'deployer', summary: 'Open an upload session for the blobs of a release being created; answers which the server lacks', status: 201, maxBytes: UPLOAD_LIST_MAX_BYTES },
  uploadBatch: {
    method: 'PUT',
    path: '/uploads/:id',
    access: 'deployer',
    summary: "Upload many blobs of a session in one stream of frames: 32-byte SHA-256, 8-byte big-endian length, the bytes; each is checked against its hash",
    request: 'stream',
    maxBytes: UPLOAD_BATCH_MAX_BYTES,
  },
  gc: { method: 'POST', path: '/gc', access: 'admin', summary: 'Remove (or, with dryRun, list) blobs that no release, open drift item or open upload session references, past the grace period', request: 'optional-json' },
  createRelease: { method: 'POST', path: '/releases', access: 'deployer', summary: 'Create a release from a manifest whose blobs were uploaded', maxBytes: MANIFEST_MAX_BYTES },
  listReleases: { method: 'GET', path: '/releases', access: 'viewer', summary: 'Releases, newest first' },
  showRelease: { method: 'GET', path: '/releases/:ref', access: 'viewer', summary: 'One release (id, id prefix or app@version) with its manifest' },
  rejectRelease: { method: 'POST', path: '/releases/:ref/reject', access: 'deployer', summary: 'Keep a release out of an environment', scope: 'body.env' },
  unrejectRelease: { method: 'POST', path: '/releases/:ref/unreject', access: 'admin', summary: 'Lift a rejection', scope: 'body.env' },

  // ---- hosts ----
  addHost: { method: 'POST', path: '/hosts', access: 'admin', summary: 'Register a host and get its enrollment token', scope: 'body.env' },
  listHosts: { method: 'GET', path: '/hosts', access: 'viewer', summary: 'Every host with its release, health and drift' },

  // ---- deployments ----
  plan: { method: 'POST', path: '/plan', access: 'viewer', summary: 'What a deployment would do (changes nothing)' },
  deploy: { method: 'POST', path: '/deployments', access: 'deployer', summary: 'Deploy a release to an environment', status: 201, scope: 'body.env' },
  deployment: { method: 'GET', path: '/deployments/:id', access: 'viewer', summary: 'A deployment; with since and wait, long-polls for its next revision', longPoll: true },
  deploymentLogs: { method: 'GET', path: '/deployments/:id/logs', access: 'viewer', summary: 'Hook and health-check output of a deployment' },
  approveDeployment: { method: 'POST', path: '/deployments/:id/approve', access: 'approver', summary: 'Approve a deployment awaiting approval', request: 'optional-json', scope: 'deployment' },
  rejectDeployment: { method: 'POST', path: '/deployments/:id/reject', access: 'approver', summary: 'Reject a deployment awaiting approval', scope: 'deployment' },
  rollback: { method: 'POST', path: '/environments/:env/rollback', access: 'deployer', summary: 'Roll an environment back to a known-good release', request: 'optional-json', status: 201, scope: 'params.env' },
  status: { method: 'GET', path: '/status', access: 'viewer', summary: 'Every environment: release, hosts, last deployment, fire call' },
  history: { method: 'GET', path: '/history', access: 'viewer', summary: 'Deployments, newest first' },
  changes: { method: 'GET', path: '/changes', access: 'viewer', summary: 'What changed, who, why, and the way back' },

  // ---- tokens and audit ----
  createToken: { method: 'POST', path: '/tokens', access: 'admin', summary: 'Create a user token', status: 201 },
  listTokens: { method: 'GET', path: '/tokens', access: 'admin', summary: 'User tokens (never their secrets)' },
  revokeToken: { method: 'DELETE', path: '/tokens/:name', access: 'admin', summary: 'Revoke a user token' },
  audit: { method: 'GET', path: '/audit', access: 'viewer', summary: 'Audit events after a sequence number' },
  auditPubkey: { method: 'GET', path: '/audit/pubkey', access: 'viewer', summary: 'The key that verifies audit checkpoints' },
  auditAnchor: { method: 'GET', path: '/audit/anchor', access: 'viewer', summary: 'The anchor file of signed checkpoints', response: 'ndjson' },
  auditExport: { method: 'GET', path: '/audit/export', access: 'viewer', summary: 'The audit trail as JSON lines, for offline verification', response: 'ndjson' },

  // ---- drift ----
  driftList: { method: 'GET', path: '/drift', access: 'viewer', summary: 'Drift items of every host, an environment or a host' },
  driftScan: { method: 'POST', path: '/drift/scan', access: 'deployer', summary: 'Ask a host to scan now', status: 201, scope: 'host' },
  driftRevert: { method: 'POST', path: '/drift/revert', access: 'deployer', summary: 'Put drifted paths back as the baseline says', status: 201, scope: 'drift-target', maxBytes: PATH_LIST_MAX_BYTES },
  driftAccept: { method: 'POST', path: '/drift/accept', access: 'admin', summary: 'Make drifted watched paths the new baseline', status: 201, scope: 'host', maxBytes: PATH_LIST_MAX_BYTES },
  driftAdopt: { method: 'POST', path: '/drift/adopt', access: 'deployer', summary: "Make a release of a host's drifted release files", status: 201, scope: 'host' },
  releaseCapture: { method: 'POST', path: '/releases/capture', access: 'deployer', summary: "Make a release of a host's package set and files", status: 201, scope: 'host', maxBytes: PATH_LIST_MAX_BYTES },
  command: { method: 'GET', path: '/commands/:id', access: 'viewer', summary: 'An agent command; with wait, long-polls until it finished', longPoll: true },

  // ---- parity ----
  parity: { method: 'GET', path: '/parity', access: 'viewer', summary: 'How closely two environments match' },

  // ---- secrets ----
  listSecrets: { method: 'GET', path: '/environments/:env/secrets', access: 'viewer', summary: "An environment's secrets: names, versions, who set them and when (never values)", scope: 'params.env' },
  setSecret: { method: 'PUT', path: '/environments/:env/secrets/:name', access: 'admin', summary: 'Set a secret of an environment: a new version, encrypted at rest', scope: 'params.env' },
  removeSecret: { method: 'DELETE', path: '/environments/:env/secrets/:name', access: 'admin', summary: 'Remove a secret of an environment; its hosts drop it at their next deployment', scope: 'params.env' },

  // ---- fire calls ----
  firecallCa: { method: 'GET', path: '/firecall/ca/:env', access: 'viewer', summary: "An environment's fire-call CA public key" },
  openFirecall: { method: 'POST', path: '/firecalls', access: 'deployer', summary: 'Open a fire call: a short-lived SSH certificate', status: 201, scope: 'body.env', maxBytes: 256 * 1024 },
  listFirecalls: { method: 'GET', path: '/firecalls', access: 'viewer', summary: 'Fire calls, newest first' },
  showFirecall: { method: 'GET', path: '/firecalls/:id', access: 'viewer', summary: 'A fire call with its logins and transcripts' },
  approveFirecall: { method: 'POST', path: '/firecalls/:id/approve', access: 'approver', summary: 'Approve a fire call awaiting approval: its certificate is signed then', request: 'optional-json', scope: 'firecall' },
  closeFirecall: { method: 'POST', path: '/firecalls/:id/close', access: 'deployer', summary: 'Close a fire call and revoke its certificate', request: 'optional-json', scope: 'firecall' },
  reconcileFirecall: { method: 'POST', path: '/firecalls/:id/reconcile', access: 'deployer', summary: 'Revert or adopt what changed under a fire call', scope: 'firecall' },

  // ---- agents ----
  agentEnroll: { method: 'POST', path: '/agent/enroll', access: 'enroll', summary: "Trade a one-time enrollment token for the host's agent credential" },
  agentWork: { method: 'GET', path: '/agent/work', access: 'agent', summary: 'Long-poll for the next task or command', longPoll: true },
  agentRelease: { method: 'GET', path: '/agent/releases/:id', access: 'agent', summary: "A release's manifest, or a delta against a base the agent has" },
  agentBlob: { method: 'GET', path: '/agent/blobs/:hash', access: 'agent', summary: "One blob's bytes", response: 'stream' },
  agentBlobs: { method: 'POST', path: '/agent/blobs', access: 'agent', summary: 'Many blobs of one release in one framed stream (see docs/operations.md)', response: 'stream', maxBytes: BLOB_LIST_MAX_BYTES },
  agentBlobUpload: { method: 'PUT', path: '/agent/blobs/:hash', access: 'agent', summary: 'Upload the content of a drifted file', request: 'stream', maxBytes: DRIFT_BLOB_MAX_BYTES },
  agentReport: { method: 'POST', path: '/agent/report', access: 'agent', summary: "Report a deployment step's progress", maxBytes: AGENT_BATCH_MAX_BYTES },
  agentHeartbeat: { method: 'POST', path: '/agent/heartbeat', access: 'agent', summary: 'Alive, with the current release and health' },
  agentSettings: { method: 'GET', path: '/agent/settings', access: 'agent', summary: 'What the host watches and how often it scans' },
  agentDrift: { method: 'POST', path: '/agent/drift', access: 'agent', summary: "The host's complete set of drift findings", maxBytes: AGENT_BATCH_MAX_BYTES },
  agentCommandResult: { method: 'POST', path: '/agent/commands/:id', access: 'agent', summary: 'Answer a command', maxBytes: PATH_LIST_MAX_BYTES },
  agentFacts: { method: 'POST', path: '/agent/facts', access: 'agent', summary: "The host's facts, for parity", maxBytes: AGENT_BATCH_MAX_BYTES },
  agentFirecallTrust: { method: 'GET', path: '/agent/firecall', access: 'agent', summary: "Long-poll the host's fire-call sshd trust", longPoll: true },
  agentFirecallReport: { method: 'POST', path: '/agent/firecall', access: 'agent', summary: 'The trust revision installed, and sshd lines and transcripts recorded', maxBytes: AGENT_BATCH_MAX_BYTES },
} as const satisfies Readonly<Record<string, RouteSpec>>;

/** The name of a route of the contract. */
export type RouteName = keyof typeof ROUTES;

/** Every route name, in table order. */
export const ROUTE_NAMES = Object.keys(ROUTES) as RouteName[];

/** The path of a route with its `:name` parameters filled in (each encoded). */
export function routePath(name: RouteName, params: Readonly<Record<string, string | number>> = {}): string {
  return ROUTES[name].path.replace(/:([A-Za-z]+)/g, (_match, key: string) => {
    const value = params[key];
    if (value === undefined) throw new Error(`route ${name} needs the path parameter ${key}`);
    return encodeURIComponent(String(value));
  });
}
