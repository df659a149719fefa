/**
 * The server's composition root: chooses the store from --database, opens
 * the blob store, creates the admin token on first start, and serves the API.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { LockstepError } from '../core/errors.js';
import { BlobStore } from '../content/blob-store.js';
import { openPostgresStore } from '../store/postgres/postgres-store.js';
import { openSqliteStore } from '../store/sqlite/sqlite-store.js';
import type { Store } from '../store/store.js';
import type { ServerCa, ServerContext } from './context.js';
import { createServer } from './create-server.js';
import { advanceDeployments } from './deployments/deployment-service.js';
import { hashToken, newToken } from './http/tokens.js';
import { loadOrCreateSigningKey } from '../audit/signing-key.js';
import { SshCertificateAuthority } from '../firecall/ssh-certificate-authority.js';
import { closeExpiredFirecalls } from './firecall/firecall-service.js';
import { sweepHostPresence } from './hosts/host-presence-service.js';
import { SECRET_KEY_FILE } from './secrets/secret-key.js';
import { isLoopbackAddress, loadOperatorTls, loadOrCreateOwnTls, serverNames, type ServerTls } from './tls/server-tls.js';
import { sweepParity } from './drift/parity-watch-service.js';
import { collectGarbage } from './releases/blob-gc.js';
import type { BlobLimits } from './releases/upload-service.js';
import { DEFAULT_GC_INTERVAL_MS } from '../core/blob-retention.js';

/** Below this, a busy but healthy agent would be judged offline between two requests. */
const MIN_OFFLINE_AFTER_MS = 2000;

export interface ServerOptions {
  readonly dataDir: string;
  /** HOST:PORT; port 0 picks a free one. */
  readonly listen: string;
  /** postgres://… or undefined for SQLite in the data dir. */
  readonly database?: string | undefined;
  readonly logger: Logger;
  /** Called once, on first start, with the new admin token. */
  readonly onAdminToken?: (token: string, file: string) => void;
  /** Sign an audit checkpoint at least every this many events (default 100). */
  readonly checkpointEvery?: number | undefined;
  /** …and once a new event is this old (default 5 minutes). */
  readonly checkpointIntervalMs?: number | undefined;
  /** The anchor file checkpoints are appended to (default DATA_DIR/audit-anchor.jsonl). */
  readonly auditAnchor?: string | undefined;
  /** A host not heard from this long is offline, in status and in alerts (default 40 s). */
  readonly offlineAfterMs?: number | undefined;
  /** Take client addresses (for the failed-authentication limiter, logs) from X-Forwarded-For: only behind a reverse proxy (default off). */
  readonly trustProxy?: boolean | undefined;
  /** The certificate chain (server certificate first) and key to serve HTTPS with. */
  readonly tlsCert?: string | undefined;
  /** The private key of tlsCert. */
  readonly tlsKey?: string | undefined;
  /** Serve HTTPS with the server's own CA even on a loopback listen. */
  readonly tlsOwnCa?: boolean | undefined;
  /** Serve plain HTTP on a non-loopback listen (a warning is logged). */
  readonly insecureHttp?: boolean | undefined;
  /** Blob quotas and gc's grace period (defaults: core/blob-retention.ts). */
  readonly blobLimits?: Partial<BlobLimits> | undefined;
  /** How often the server collects garbage blobs itself (default 1 h; 0: never). */
  readonly gcIntervalMs?: number | undefined;
}

/** A running server. */
export interface RunningServer {
  readonly url: string;
  /** The CA agents pin (PEM and fingerprint); undefined when serving plain HTTP. */
  readonly ca: ServerCa | undefined;
  close(): Promise<void>;
}

/** Parses HOST:PORT. */
export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(.+):(\d{1,5})$/.exec(listen);
  const port = Number(match?.[2]);
  if (!match || port > 65535) throw new LockstepError('bad-input', `--listen "${listen}" is not HOST:PORT (for example 127.0.0.1:7400)`);
  return { host: (match[1] ?? '').replace(/^\[(.*)\]$/, '$1'), port };
}

function openStore(dataDir: string, database: string | undefined): Store {
  if (database === undefined || database === '') return openSqliteStore(join(dataDir, 'lockstep.db'));
  if (/^postgres(ql)?:\/\//.test(database)) return openPostgresStore(database);
  throw new LockstepError('bad-input', `--database "${database}" is not supported; use postgres://USER@HOST:PORT/DB, or omit it for SQLite in the data dir`);
}

/** Opens the store and brings its schema up to date; a database that cannot be used is a one-line error with its cause. */
async function openMigrated(dataDir: string, database: string | undefined): Promise<Store> {
  const store = openStore(dataDir, database);
  try {
    await store.migrate();
    return store;
  } catch (error) {
    await store.close().catch(() => undefined);
    throw databaseError(error);
  }
}

/** Network errors that mean the database server was not reached (exit 6); its refusals (auth, no such database) are the user's to fix (exit 2). */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET']);

function databaseError(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  if (code !== undefined && UNREACHABLE.has(code)) return new LockstepError('unavailable', `${error.message}; is the database server running and is --database right?`);
  // PostgreSQL SQLSTATE classes 28 (authorization) and 3D (no such database).
  if (code !== undefined && /^(28|3D)/.test(code)) return new LockstepError('bad-input', `${error.message}; check the user, password and database name in --database`);
  return error;
}

/** Fails with a one-line error when HOST:PORT cannot be listened on (in use, not an address here, privileged), before anything is written. */
async function assertCanListen(host: string, port: number, listen: string): Promise<void> {
  const probe = createNetServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host, port, exclusive: true }, resolve);
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE' ? 'the address is already in use (another lockstep server?); stop it or choose another --listen'
      : code === 'EACCES' ? 'permission denied (ports below 1024 need privileges); choose another --listen'
      : code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'that address is not on this machine; choose another --listen'
      : undefined;
    if (why === undefined) throw error;
    throw new LockstepError('bad-input', `cannot listen on ${listen}: ${why}`);
  } finally {
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}

/** Checks the TLS flags together, before anything is written. */
function checkTlsOptions(options: ServerOptions): void {
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) throw new LockstepError('bad-input', '--tls-cert and --tls-key go together: pass both, or neither to use the server\'s own CA');
  const chosen = [options.tlsCert !== undefined && '--tls-cert', options.tlsOwnCa === true && '--tls-own-ca', options.insecureHttp === true && '--insecure-http'].filter((flag) => flag !== false);
  if (chosen.length > 1) throw new LockstepError('bad-input', `${chosen.join(' and ')} contradict each other; pass one of them`);
}

/**
 * How the server speaks: HTTPS with the operator's certificate, HTTPS with its
 * own CA (any non-loopback listen, or --tls-own-ca), or plain HTTP (a loopback
 * listen, or --insecure-http, which is logged as a warning).
 */
async function chooseTls(options: ServerOptions, host: string, dataDir: string, operator: ServerTls | undefined): Promise<ServerTls | undefined> {
  if (operator !== undefined) return operator;
  if (options.insecureHttp === true) {
    if (!isLoopbackAddress(host)) options.logger.warn({ listen: options.listen }, 'serving plain HTTP on a non-loopback address (--insecure-http): tokens and agent credentials cross the network in clear');
    return undefined;
  }
  if (options.tlsOwnCa === true || !isLoopbackAddress(host)) return loadOrCreateOwnTls(dataDir, serverNames(host));
  return undefined;
}

/** Starts the server and returns once it listens. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const dataDir = resolve(options.dataDir);
  const { host, port } = parseListen(options.listen);
  if (options.checkpointEvery !== undefined && (!Number.isSafeInteger(options.checkpointEvery) || options.checkpointEvery < 1)) throw new LockstepError('bad-input', '--checkpoint-every must be a positive integer');
  if (options.checkpointIntervalMs !== undefined && !(options.checkpointIntervalMs >= 1000)) throw new LockstepError('bad-input', '--checkpoint-interval must be at least 1s');
  if (options.offlineAfterMs !== undefined && !(options.offlineAfterMs >= MIN_OFFLINE_AFTER_MS)) throw new LockstepError('bad-input', '--offline-after must be at least 2s');
  checkTlsOptions(options);
  // Nothing is written before the address, the operator's certificate and the database are known to work.
  await assertCanListen(host, port, options.listen);
  const operatorTls = options.tlsCert !== undefined && options.tlsKey !== undefined ? await loadOperatorTls(resolve(options.tlsCert), resolve(options.tlsKey)) : undefined;
  const postgres = options.database !== undefined && options.database !== '';
  const postgresStore = postgres ? await openMigrated(dataDir, options.database) : undefined;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const store = postgresStore ?? (await openMigrated(dataDir, undefined));
  const tls = await chooseTls(options, host, dataDir, operatorTls);
  const blobs = new BlobStore(join(dataDir, 'blobs'));
  await blobs.open();
  const audit = {
    key: await loadOrCreateSigningKey(dataDir),
    every: options.checkpointEvery ?? 100,
    intervalMs: options.checkpointIntervalMs ?? 5 * 60_000,
    anchorFile: resolve(options.auditAnchor ?? join(dataDir, 'audit-anchor.jsonl')),
  };
  const server = await createServer({
    store,
    blobs,
    logger: options.logger,
    audit,
    firecallCa: new SshCertificateAuthority(join(dataDir, 'firecall-ca')),
    onlineWindowMs: options.offlineAfterMs,
    trustProxy: options.trustProxy,
    secretKeyFile: join(dataDir, SECRET_KEY_FILE),
    tls,
    blobLimits: options.blobLimits,
  });
  const { app, context, firecalls, checkpointer, intake } = server;
  await ensureAdminToken(context, dataDir, options.onAdminToken);
  await app.listen({ host, port });
  const address = app.server.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  const url = `${tls === undefined ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
  options.logger.info({ url, dataDir, database: options.database ? 'postgres' : 'sqlite', caFingerprint: tls?.ca.fingerprint }, 'lockstep server listening');

  const startedAt = context.now().getTime();
  let sweeping = false;
  const sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    advanceDeployments(context)
      .catch((error: unknown) => options.logger.error({ err: error }, 'expiring overdue deployment steps failed'))
      .then(() => closeExpiredFirecalls(firecalls))
      .catch((error: unknown) => options.logger.error({ err: error }, 'closing expired fire calls failed'))
      .then(() => sweepHostPresence(context, startedAt))
      .catch((error: unknown) => options.logger.error({ err: error }, 'alerting on hosts that went offline or silent failed'))
      .then(() => sweepParity(context))
      .catch((error: unknown) => options.logger.error({ err: error }, 'scheduled parity failed'))
      .finally(() => {
        sweeping = false;
      });
  }, 1000);
  const checkpointTimer = setInterval(() => {
    checkpointer.run().catch((error: unknown) => options.logger.error({ err: error }, 'signing audit checkpoints failed'));
  }, 1000);

  const gcIntervalMs = options.gcIntervalMs ?? DEFAULT_GC_INTERVAL_MS;
  const gcTimer =
    gcIntervalMs > 0 ?
      setInterval(() => {
        collectGarbage(context, intake, undefined, false).catch((error: unknown) => options.logger.error({ err: error }, 'collecting unreferenced blobs failed'));
      }, gcIntervalMs)
    : undefined;

  return {
    url,
    ca: tls?.ca,
    async close() {
      clearInterval(gcTimer);
      clearInterval(checkpointTimer);
      // Sign the tail on the way out, so a stopped server leaves no unsigned events behind.
      await checkpointer.run(true).catch((error: unknown) => options.logger.error({ err: error }, 'signing audit checkpoints failed'));
      clearInterval(sweeper);
      await server.close();
      await store.close();
    },
  };
}

async function ensureAdminToken(context: ServerContext, dataDir: string, onAdminToken: ServerOptions['onAdminToken']): Promise<void> {
  const token = newToken('user');
  const at = context.now().toISOString();
  const created = await context.store.transaction(async (repo) => {
    if (await repo.tokenByName('admin')) return false;
    await repo.insertToken({ name: 'admin', token_hash: hashToken(token), role: 'admin', envs: null, host: null, created_at: at, used_at: null, revoked_at: null });
    await repo.appendAudit({ at, actor: 'lockstep', action: 'token.created', target: 'token:admin', details: { role: 'admin', reason: 'first start' } });
    return true;
  });
  if (!created) return;
  const file = join(dataDir, 'admin.token');
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  onAdminToken?.(token, file);
}
