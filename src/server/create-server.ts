/**
 * The server's one composition root: from its parts (a store, a blob store,
 * the audit signing key, the fire-call CA, a logger, a clock) it builds the
 * context every service shares, the alert dispatcher (the one place alert
 * channels are built), the audit checkpointer
 * and the HTTP application with every route of the contract bound. Used by
 * `startServer` (the process), the demo (through it) and the tests.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { openApiDocument } from '../api/openapi.js';
import type { BlobStore } from '../content/blob-store.js';
import type { SshCertificateAuthority } from '../firecall/ssh-certificate-authority.js';
import type { Store } from '../store/store.js';
import { FailedAuthLimiter } from './http/access.js';
import { alertChannelsOf } from './alerts/alert-channels.js';
import { AlertDispatcher } from './alerts/alert-dispatcher.js';
import { buildApp, coreRouteHandlers } from './http/app.js';
import { AuditCheckpointer, type AuditTrailOptions } from './audit/audit-checkpointer.js';
import { auditRouteHandlers } from './audit/audit-routes.js';
import type { ServerContext } from './context.js';
import { driftRouteHandlers } from './drift/drift-routes.js';
import type { FirecallContext } from './firecall/firecall-service.js';
import { firecallRouteHandlers } from './firecall/firecall-routes.js';
import { Notifier } from './notifier.js';
import { SecretKeyFile } from './secrets/secret-key.js';
import { secretRouteHandlers } from './secrets/secret-routes.js';
import { bindRoutes } from './http/route-binder.js';
import { blobRouteHandlers } from './releases/blob-routes.js';
import { BlobIntake, type BlobLimits } from './releases/upload-service.js';
import { DEFAULT_BLOB_QUOTA_BYTES, DEFAULT_DRIFT_QUOTA_BYTES, DEFAULT_GC_GRACE_MS } from '../core/blob-retention.js';
import { RolloutViews } from './deployments/rollout-views.js';
import type { ServerTls } from './tls/server-tls.js';

/** What a server is made of; the caller opens and owns the store and the blob store. */
export interface ServerParts {
  readonly store: Store;
  readonly blobs: BlobStore;
  readonly logger: Logger;
  /** The audit checkpoint key, cadence and anchor file. */
  readonly audit: AuditTrailOptions;
  /** The fire-call SSH certificate authority. */
  readonly firecallCa: SshCertificateAuthority;
  /** The clock (default: the real one). */
  readonly now?: (() => Date) | undefined;
  /** How long a host counts as online after it was last seen (default 40 s). */
  readonly onlineWindowMs?: number | undefined;
  /** Alert delivery retries (default: 6 attempts from 1 s, doubling). */
  readonly alertRetry?: { readonly attempts: number; readonly firstDelayMs: number } | undefined;
  /** Take client addresses from X-Forwarded-For (only behind a reverse proxy that sets it; default off). */
  readonly trustProxy?: boolean | undefined;
  /** Where the key that seals secrets is (DATA_DIR/secrets.key), created when the first secret is set; absent: no secrets. */
  readonly secretKeyFile?: string | undefined;
  /** Serve HTTPS with this key and chain; its CA is what agents pin (default: plain HTTP). */
  readonly tls?: ServerTls | undefined;
  /** Blob quotas and gc's grace period (defaults: core/blob-retention.ts). */
  readonly blobLimits?: Partial<BlobLimits> | undefined;
}

/** A built server: the application (not yet listening) and what the process wires around it. */
export interface LockstepServer {
  readonly app: FastifyInstance;
  readonly context: ServerContext;
  readonly firecalls: FirecallContext;
  readonly checkpointer: AuditCheckpointer;
  /** Blob uploads under sessions and quotas; its limits drive gc. */
  readonly intake: BlobIntake;
  /** Ends long polls and closes the application (not the store; alerts under way go on: `context.alerts.drain()` waits for them). */
  close(): Promise<void>;
}

/** Agents poll at least every 25 s and heartbeat every 30 s: 40 s of silence is not a slow network. */
export const DEFAULT_OFFLINE_AFTER_MS = 40_000;

/** Builds the server from its parts, with every route of the table bound (fails if one has no handler). */
export async function createServer(parts: ServerParts): Promise<LockstepServer> {
  const shutdown = new AbortController();
  const alerts = new AlertDispatcher(parts.logger, parts.alertRetry, alertChannelsOf);
  const context: ServerContext = {
    store: parts.store,
    blobs: parts.blobs,
    notifier: new Notifier(),
    alerts,
    logger: parts.logger,
    now: parts.now ?? (() => new Date()),
    onlineWindowMs: parts.onlineWindowMs ?? DEFAULT_OFFLINE_AFTER_MS,
    rollouts: new RolloutViews(),
    shutdown: shutdown.signal,
    secretKey: parts.secretKeyFile === undefined ? undefined : new SecretKeyFile(parts.secretKeyFile),
    serverCa: parts.tls?.ca,
  };
  const firecalls: FirecallContext = { ...context, ca: parts.firecallCa };
  const limiter = new FailedAuthLimiter();
  const app = buildApp(context, limiter, { trustProxy: parts.trustProxy, https: parts.tls });
  const intake = new BlobIntake(context, {
    blobQuotaBytes: parts.blobLimits?.blobQuotaBytes ?? DEFAULT_BLOB_QUOTA_BYTES,
    driftQuotaBytes: parts.blobLimits?.driftQuotaBytes ?? DEFAULT_DRIFT_QUOTA_BYTES,
    gcGraceMs: parts.blobLimits?.gcGraceMs ?? DEFAULT_GC_GRACE_MS,
  });
  let openapi: unknown;
  bindRoutes(app, [
    coreRouteHandlers(context, limiter),
    driftRouteHandlers(context),
    firecallRouteHandlers(firecalls),
    auditRouteHandlers(context, parts.audit),
    blobRouteHandlers(context, intake),
    secretRouteHandlers(context),
    { openapi: async () => (openapi ??= openApiDocument()), serverCa: async () => ({ fingerprint: parts.tls?.ca.fingerprint ?? null, pem: parts.tls?.ca.pem ?? null }) },
  ]);
  await app.ready();
  const checkpointer = new AuditCheckpointer(context, parts.audit);
  // From here on every transaction that appends audit events signs its head before committing.
  parts.store.useAuditSigner(checkpointer.signer());
  return {
    app,
    context,
    firecalls,
    checkpointer,
    intake,
    async close() {
      shutdown.abort();
      await app.close();
    },
  };
}
