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
import type { BlobLimits } from '../../src/server/releases/upload-service.js';
import { createServer } from '../../src/server/create-server.js';
import { hashToken, newToken } from '../../src/server/http/tokens.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { makeTempDir } from './tmp.js';

export interface InProcessApp {
  readonly app: FastifyInstance;
  readonly context: ServerContext;
  /** The blob store's directory. */
  readonly blobDir: string;
  readonly adminToken: string;
  /** Calls a route; `body` as JSON, or a Buffer sent as application/octet-stream. `json` is any: tests read the fields they assert on. */
  call(method: string, url: string, token: string | undefined, body?: unknown): Promise<{ status: number; json: any }>;
  /** Registers and enrolls a host; returns its agent credential. */
  enroll(name: string, env: string): Promise<string>;
  /** Creates a user token of a role. */
  token(name: string, role: 'viewer' | 'deployer' | 'approver' | 'admin'): Promise<string>;
  close(): Promise<void>;
}

/** Starts the app with `configYaml` applied; alerts retry after `alertDelayMs`; `now` is the server's clock (default: the real one). */
export async function startInProcessApp(configYaml: string, options: { alertDelayMs?: number; now?: () => Date; blobLimits?: Partial<BlobLimits> } = {}): Promise<InProcessApp> {
  const temp = await makeTempDir('lockstep-app-');
  const store = openSqliteStore(join(temp.path, 'lockstep.db'));
  await store.migrate();
  const blobs = new BlobStore(join(temp.path, 'blobs'));
  await blobs.open();
  const logger = pino({ level: 'silent' });
  const server = await createServer({
    store,
    blobs,
    logger,
    audit: { key: await loadOrCreateSigningKey(temp.path), every: 100, intervalMs: 300_000, anchorFile: join(temp.path, 'audit-anchor.jsonl') },
    firecallCa: new SshCertificateAuthority(join(temp.path, 'firecall-ca')),
    now: options.now,
    alertRetry: { attempts: 4, firstDelayMs: options.alertDelayMs ?? 50 },
    blobLimits: options.blobLimits,
  });
  const { app, context } = server;
  const adminToken = newToken('user');
  await store.transaction((repo) =>
    repo.insertToken({ name: 'admin', token_hash: hashToken(adminToken), role: 'admin', envs: null, host: null, created_at: new Date().toISOString(), used_at: null, revoked_at: null }),
  );

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
  const applied = await call('POST', '/api/v1/config', adminToken, { yaml: configYaml, file: 'lockstep.yaml' });
  if (applied.status !== 200) throw new Error(`config not applied: ${JSON.stringify(applied.json)}`);

  return {
    app,
    context,
    blobDir: join(temp.path, 'blobs'),
    adminToken,
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
      await temp.remove();
    },
  };
}
