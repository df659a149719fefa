/**
 * The real server application in-process (Fastify inject) over a real SQLite
 * store and blob store in a temp dir, with an admin token and helpers to
 * enroll hosts and call routes as an agent or a person.
 */
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { BlobStore } from '../../src/content/blob-store.js';
import { loadOrCreateSigningKey } from '../../src/audit/signing-key.js';
import { SshCertificateAuthority } from '../../src/firecall/ssh-certificate-authority.js';
import type { ServerContext } from '../../src/server/context.js';
import type { FirecallContext } from '../../src/server/firecall/firecall-service.js';
import type { BlobLimits } from '../../src/server/releases/upload-service.js';
import { createServer } from '../../src/server/create-server.js';
import { hashToken, newToken } from '../../src/server/http/tokens.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { makeTempDir, type TempDir } from './tmp.js';

export interface InProcessApp {
  readonly app: FastifyInstance;
  readonly context: ServerContext;
  /** The fire-call services' context (the server's sweeper calls closeExpiredFirecalls with it). */
  readonly firecalls: FirecallContext;
  /** The blob store's directory. */
  readonly blobDir: string;
  readonly adminToken: string;
  /** The temp dir of the store (lockstep.db) and blobs. */
  readonly dir: string;
  /** Where its database, blobs and keys are (a second app may share them: `sameDataAs`). */
  readonly dataDir: string;
  /** Calls a route; `body` as JSON, or a Buffer sent as application/octet-stream. `json` is any: tests read the fields they assert on. */
  call(method: string, url: string, token: string | undefined, body?: unknown): Promise<{ status: number; json: any }>;
  /** Registers and enrolls a host; returns its agent credential. */
  enroll(name: string, env: string): Promise<string>;
  /** Creates a user token of a role. */
  token(name: string, role: 'viewer' | 'deployer' | 'approver' | 'admin'): Promise<string>;
  close(): Promise<void>;
}

/** How a test app is started besides its configuration. */
export interface InProcessOptions {
  readonly alertDelayMs?: number;
  /** The server's clock (default: the real one). */
  readonly now?: () => Date;
  /** Opens the store on the database file (default: openSqliteStore), e.g. to watch its queries. */
  readonly openStore?: (file: string) => Store;
  /** A second server over the same database, blobs and keys (as servers sharing one database): no config is applied, the admin token is shared. */
  readonly sameDataAs?: InProcessApp;
  /** Another store than SQLite in the data dir (e.g. a StoreBackend's PostgreSQL database). */
  readonly store?: () => Promise<Store>;
  /** Blob quotas and gc's grace period (defaults: core/blob-retention.ts). */
  readonly blobLimits?: Partial<BlobLimits>;
}

/** Starts the app with `configYaml` applied; alerts retry after `alertDelayMs`; `now` is the server's clock (default: the real one). */
export async function startInProcessApp(configYaml: string, options: InProcessOptions = {}): Promise<InProcessApp> {
  const temp = options.sameDataAs === undefined ? await makeTempDir('lockstep-app-') : undefined;
  const dataDir = options.sameDataAs?.dataDir ?? (temp as TempDir).path;
  const store = options.store ? await options.store() : (options.openStore ?? openSqliteStore)(join(dataDir, 'lockstep.db'));
  await store.migrate();
  const blobs = new BlobStore(join(dataDir, 'blobs'));
  await blobs.open();
  const logger = pino({ level: 'silent' });
  const server = await createServer({
    store,
    blobs,
    logger,
    audit: { key: await loadOrCreateSigningKey(dataDir), every: 100, intervalMs: 300_000, anchorFile: join(dataDir, 'audit-anchor.jsonl') },
    firecallCa: new SshCertificateAuthority(join(dataDir, 'firecall-ca')),
    now: options.now,
    alertRetry: { attempts: 4, firstDelayMs: options.alertDelayMs ?? 50 },
    secretKeyFile: join(dataDir, 'secrets.key'),
    blobLimits: options.blobLimits,
  });
  const { app, context } = server;
  const adminToken = options.sameDataAs?.adminToken ?? newToken('user');
  if (options.sameDataAs === undefined) {
    await store.transaction((repo) =>
      repo.insertToken({ name: 'admin', token_hash: hashToken(adminToken), role: 'admin', envs: null, host: null, created_at: new Date().toISOString(), used_at: null, revoked_at: null }),
    );
  }

  const call: InProcessApp['call'] = async (method, url, token, body) => {
    const binary = Buffer.isBuffer(body);
    const response = await app.inject({
      method: method as 'GET',
      url,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(binary ? { 'content-type': 'application/octet-stream' } : {}) },
      ...(body === undefined ? {} : { payload: binary ? body : (body as object) }),
    });
    return { status: response.statusCode, json: response.body ? JSON.parse(response.body) : undefined };
  };
  if (options.sameDataAs === undefined) {
    const applied = await call('POST', '/api/v1/config', adminToken, { yaml: configYaml, file: 'lockstep.yaml' });
    if (applied.status !== 200) throw new Error(`config not applied: ${JSON.stringify(applied.json)}`);
  }

  return {
    app,
    context,
    firecalls: server.firecalls,
    blobDir: join(dataDir, 'blobs'),
    adminToken,
    dir: dataDir,
    dataDir,
    call,
    async enroll(name, env) {
      const host = await call('POST', '/api/v1/hosts', adminToken, { name, env });
      const enrolled = await call('POST', '/api/v1/agent/enroll', undefined, { token: host.json.enrollToken });
      if (enrolled.status !== 200) throw new Error(`enroll ${name}: ${JSON.stringify(enrolled.json)}`);
      return enrolled.json.credential as string;
    },
    async token(name, role) {
      const created = await call('POST', '/api/v1/tokens', adminToken, { name, role });
      return created.json.token as string;
    },
    async close() {
      await context.alerts.drain();
      await server.close();
      await store.close();
      await temp?.remove();
    },
  };
}
