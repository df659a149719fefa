/**
 * Every /api/v1 route, checked role by role against one explicit table: the
 * table must list exactly the routes the app registers, so a new route
 * cannot be added without a row here. Runs the real app in-process (Fastify
 * inject) over a real SQLite store in a temp dir.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { loadOrCreateSigningKey } from '../../src/audit/signing-key.js';
import { BlobStore } from '../../src/content/blob-store.js';
import { openApiDocument } from '../../src/api/openapi.js';
import type { Access } from '../../src/server/http/access.js';
import { createServer, type LockstepServer, type ServerParts } from '../../src/server/create-server.js';
import { SshCertificateAuthority } from '../../src/firecall/ssh-certificate-authority.js';
import { hashToken, newToken } from '../../src/server/http/tokens.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

/** The rule of every route. Adding a route to the app without adding it here fails the first test. */
const ROUTES: Readonly<Record<string, Access>> = {
  'GET /api/v1/health': 'public',
  'GET /api/v1/openapi.json': 'public',
  'GET /api/v1/ca': 'public',
  'POST /api/v1/config': 'admin',
  'GET /api/v1/config': 'viewer',
  'POST /api/v1/blobs/missing': 'deployer',
  'PUT /api/v1/blobs/:hash': 'deployer',
  'POST /api/v1/uploads': 'deployer',
  'PUT /api/v1/uploads/:id': 'deployer',
  'POST /api/v1/gc': 'admin',
  'POST /api/v1/releases': 'deployer',
  'GET /api/v1/releases': 'viewer',
  'GET /api/v1/releases/:ref': 'viewer',
  'POST /api/v1/hosts': 'admin',
  'GET /api/v1/hosts': 'viewer',
  'POST /api/v1/plan': 'viewer',
  'POST /api/v1/deployments/:id/approve': 'approver',
  'POST /api/v1/deployments/:id/reject': 'approver',
  'POST /api/v1/tokens': 'admin',
  'GET /api/v1/tokens': 'admin',
  'DELETE /api/v1/tokens/:name': 'admin',
  'GET /api/v1/changes': 'viewer',
  'POST /api/v1/deployments': 'deployer',
  'GET /api/v1/deployments/:id': 'viewer',
  'GET /api/v1/deployments/:id/logs': 'viewer',
  'POST /api/v1/releases/:ref/reject': 'deployer',
  'POST /api/v1/releases/:ref/unreject': 'admin',
  'POST /api/v1/environments/:env/rollback': 'deployer',
  'GET /api/v1/status': 'viewer',
  'GET /api/v1/history': 'viewer',
  'GET /api/v1/audit': 'viewer',
  'POST /api/v1/agent/enroll': 'enroll',
  'GET /api/v1/agent/work': 'agent',
  'GET /api/v1/agent/releases/:id': 'agent',
  'GET /api/v1/agent/blobs/:hash': 'agent',
  'POST /api/v1/agent/blobs': 'agent',
  'POST /api/v1/agent/report': 'agent',
  'POST /api/v1/agent/heartbeat': 'agent',
  'GET /api/v1/agent/settings': 'agent',
  'POST /api/v1/agent/drift': 'agent',
  'POST /api/v1/agent/commands/:id': 'agent',
  'PUT /api/v1/agent/blobs/:hash': 'agent',
  'GET /api/v1/drift': 'viewer',
  'POST /api/v1/drift/scan': 'deployer',
  'POST /api/v1/drift/revert': 'deployer',
  'POST /api/v1/drift/accept': 'admin',
  'POST /api/v1/drift/adopt': 'deployer',
  'POST /api/v1/releases/capture': 'deployer',
  'GET /api/v1/commands/:id': 'viewer',
  'POST /api/v1/agent/facts': 'agent',
  'GET /api/v1/parity': 'viewer',
  'GET /api/v1/audit/pubkey': 'viewer',
  'GET /api/v1/audit/anchor': 'viewer',
  'GET /api/v1/audit/export': 'viewer',
  'GET /api/v1/environments/:env/secrets': 'viewer',
  'PUT /api/v1/environments/:env/secrets/:name': 'admin',
  'DELETE /api/v1/environments/:env/secrets/:name': 'admin',
  'GET /api/v1/firecall/ca/:env': 'viewer',
  'POST /api/v1/firecalls': 'deployer',
  'GET /api/v1/firecalls': 'viewer',
  'GET /api/v1/firecalls/:id': 'viewer',
  'POST /api/v1/firecalls/:id/approve': 'approver',
  'POST /api/v1/firecalls/:id/close': 'deployer',
  'POST /api/v1/firecalls/:id/reconcile': 'deployer',
  'GET /api/v1/agent/firecall': 'agent',
  'POST /api/v1/agent/firecall': 'agent',
};

type Caller = 'viewer' | 'deployer' | 'approver' | 'admin' | 'agent' | 'none';
const CALLERS: readonly Caller[] = ['viewer', 'deployer', 'approver', 'admin', 'agent', 'none'];

/** Who gets past the access check of each level. */
const PASSES: Readonly<Record<Access, readonly Caller[]>> = {
  public: CALLERS,
  enroll: CALLERS,
  agent: ['agent'],
  viewer: ['viewer', 'deployer', 'approver', 'admin'],
  deployer: ['deployer', 'admin'],
  approver: ['approver', 'admin'],
  admin: ['admin'],
};

const CONFIG = `app: app
deploy_to: /srv/app
environments:
  development: {}
  test: { promote_from: development }
  production: { promote_from: test }
`;

/**
 * Parameters that are valid for the route's schema where the handler could
 * otherwise act on something real, and invalid (or naming nothing) elsewhere,
 * so a caller that passes the access check changes nothing.
 */
function concrete(url: string, agentHost: string): string {
  const filled = url
    .replace(':hash', 'not-a-hash')
    .replace(':ref', 'no-such-release')
    .replace(':name', 'no-such-token')
    .replace(':env', 'no-such-env')
    .replace(':id', url.includes('/agent/') ? 'not-a-release-id' : '999999');
  if (url.endsWith('/agent/work')) return `${filled}?host=${agentHost}&wait=0`;
  if (url.includes('/agent/')) return `${filled}?host=${agentHost}`;
  return filled;
}

describe('route access', () => {
  let temp: TempDir;
  let store: Store;
  let app: FastifyInstance;
  let server: LockstepServer;
  let parts: ServerParts;
  const tokens: Record<string, string> = {};

  async function call(method: string, url: string, token: string | undefined, body?: unknown, remoteAddress = '127.0.0.1') {
    const response = await app.inject({
      method: method as 'GET',
      url,
      remoteAddress,
      headers: token ? { authorization: `Bearer ${token}` } : {},
      ...(method === 'GET' || method === 'DELETE' ? {} : { payload: (body ?? {}) as object }),
    });
    let json: { error?: { kind: string; message: string } } = {};
    try {
      json = JSON.parse(response.body) as typeof json;
    } catch {
      // Not one JSON document (the audit export is NDJSON; an empty body).
    }
    return { status: response.statusCode, json };
  }

  before(async () => {
    temp = await makeTempDir('lockstep-access-');
    store = openSqliteStore(join(temp.path, 'lockstep.db'));
    await store.migrate();
    const blobs = new BlobStore(join(temp.path, 'blobs'));
    await blobs.open();
    const logger = pino({ level: 'silent' });
    parts = {
      store,
      blobs,
      logger,
      audit: { key: await loadOrCreateSigningKey(join(temp.path)), every: 100, intervalMs: 300_000, anchorFile: join(temp.path, 'anchor.jsonl') },
      firecallCa: new SshCertificateAuthority(join(temp.path, 'firecall-ca')),
    };
    server = await createServer(parts);
    app = server.app;

    // The admin token, as the server creates it on first start.
    tokens.admin = newToken('user');
    await store.transaction((repo) =>
      repo.insertToken({ name: 'admin', token_hash: hashToken(tokens.admin ?? ''), role: 'admin', envs: null, host: null, created_at: new Date().toISOString(), used_at: null, revoked_at: null }),
    );
    assert.equal((await call('POST', '/api/v1/config', tokens.admin, { yaml: CONFIG, file: 'lockstep.yaml' })).status, 200);
    for (const role of ['viewer', 'deployer', 'approver'] as const) {
      const created = await call('POST', '/api/v1/tokens', tokens.admin, { name: `the-${role}`, role });
      assert.equal(created.status, 201);
      tokens[role] = (created.json as { token: string }).token;
    }
    const host = await call('POST', '/api/v1/hosts', tokens.admin, { name: 'dev-1', env: 'development' });
    assert.equal(host.status, 200);
    const enrolled = await call('POST', '/api/v1/agent/enroll', undefined, { token: (host.json as { enrollToken: string }).enrollToken });
    assert.equal(enrolled.status, 200);
    tokens.agent = (enrolled.json as { credential: string }).credential;
  });

  after(async () => {
    await server?.close();
    await store?.close();
    await temp?.remove();
  });

  it('the table lists exactly the routes the app registers, each with the access it declares', () => {
    const registered = (app as unknown as { lockstepRoutes: { method: string; url: string; access: Access }[] }).lockstepRoutes;
    const actual = Object.fromEntries(registered.map((route) => [`${route.method} ${route.url}`, route.access]));
    assert.equal(registered.length, Object.keys(actual).length, 'no route is registered twice');
    assert.deepEqual(Object.keys(actual).sort(), Object.keys(ROUTES).sort(), 'a route without a row (or a row without a route)');
    assert.deepEqual(actual, ROUTES, 'the access level the app declares matches the table');
  });

  for (const [route, level] of Object.entries(ROUTES)) {
    const [method = '', url = ''] = route.split(' ');
    it(`${route} (${level}): ${PASSES[level].join(', ')} pass; everyone else gets 401/403`, async () => {
      for (const caller of CALLERS) {
        const token = caller === 'none' ? undefined : tokens[caller];
        const { status, json } = await call(method, concrete(url, 'dev-1'), token);
        const what = `${route} as ${caller}: ${status} ${JSON.stringify(json).slice(0, 200)}`;
        if (PASSES[level].includes(caller)) {
          assert.ok(status !== 401 && status !== 403 && status !== 429, what);
        } else {
          assert.equal(status, caller === 'none' ? 401 : 403, what);
          assert.match(json.error?.message ?? '', caller === 'none' ? /^missing token/ : /may not do this|may only call agent routes|this route is for agents/, what);
        }
      }
    });
  }

  it('a viewer changes nothing: every non-GET route refuses it, and the audit trail does not grow', async () => {
    const before = (await store.read.listAudit({ afterSeq: 0, limit: 10_000 })).length;
    for (const [route, level] of Object.entries(ROUTES)) {
      const [method = '', url = ''] = route.split(' ');
      if (method === 'GET' || level === 'enroll' || level === 'public') continue;
      const { status } = await call(method, concrete(url, 'dev-1'), tokens.viewer, { name: 'x', env: 'production', release: 'x', role: 'admin', yaml: CONFIG, reason: 'x' });
      if (route === 'POST /api/v1/plan') assert.notEqual(status, 403, 'plan changes nothing and is open to viewers');
      else assert.equal(status, 403, `${route} as viewer`);
    }
    assert.equal((await store.read.listAudit({ afterSeq: 0, limit: 10_000 })).length, before);
  });

  it('environment scope: a deployer for development and test gets 403 acting on production', async () => {
    const created = await call('POST', '/api/v1/tokens', tokens.admin, { name: 'dev-deployer', role: 'deployer', envs: ['development', 'test'] });
    assert.equal(created.status, 201);
    const scoped = (created.json as { token: string }).token;

    const deploy = await call('POST', '/api/v1/deployments', scoped, { release: 'no-such-release', env: 'production' });
    assert.equal(deploy.status, 403);
    assert.equal(deploy.json.error?.message, 'token dev-deployer may not act on production (its environments: development, test)');
    const rollback = await call('POST', '/api/v1/environments/production/rollback', scoped, { reason: 'x' });
    assert.equal(rollback.status, 403);
    const reject = await call('POST', '/api/v1/releases/no-such-release/reject', scoped, { env: 'production', reason: 'x' });
    assert.equal(reject.status, 403);

    // In its own environments the scope passes (and the missing release is the only problem).
    const inScope = await call('POST', '/api/v1/deployments', scoped, { release: 'app@9.9.9', env: 'test' });
    assert.equal(inScope.status, 404, JSON.stringify(inScope.json));

    // Scopes the route table names by a body field, checked before the handler: an admin for development only.
    const admin = await call('POST', '/api/v1/tokens', tokens.admin, { name: 'dev-admin', role: 'admin', envs: ['development'] });
    const devAdmin = (admin.json as { token: string }).token;
    const addHost = await call('POST', '/api/v1/hosts', devAdmin, { name: 'prod-9', env: 'production' });
    assert.equal(addHost.status, 403);
    assert.equal(addHost.json.error?.message, 'token dev-admin may not act on production (its environments: development)');
    assert.equal((await call('POST', '/api/v1/releases/no-such-release/unreject', devAdmin, { env: 'production' })).status, 403);
    assert.equal((await call('POST', '/api/v1/hosts', devAdmin, { name: 'dev-9', env: 'development' })).status, 200);
  });

  it('serves the OpenAPI document generated from the route table to anyone', async () => {
    const response = await app.inject({ method: 'GET', url: '/api/v1/openapi.json' });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(JSON.parse(response.body), openApiDocument());
  });

  it('approving or rejecting a deployment that does not exist is 404, not an internal error', async () => {
    const approve = await call('POST', '/api/v1/deployments/999999/approve', tokens.approver, {});
    assert.equal(approve.status, 404, JSON.stringify(approve.json));
    const reject = await call('POST', '/api/v1/deployments/999999/reject', tokens.approver, { reason: 'no' });
    assert.equal(reject.status, 404, JSON.stringify(reject.json));
  });

  it('a wrong token, a revoked token and a token name all get the same 401 message', async () => {
    const created = await call('POST', '/api/v1/tokens', tokens.admin, { name: 'soon-revoked', role: 'viewer' });
    const revokedToken = (created.json as { token: string }).token;
    assert.equal((await call('GET', '/api/v1/status', revokedToken, undefined, '10.0.0.2')).status, 200);
    assert.equal((await call('DELETE', '/api/v1/tokens/soon-revoked', tokens.admin)).status, 200);

    const revoked = await call('GET', '/api/v1/status', revokedToken, undefined, '10.0.0.2');
    const wrong = await call('GET', '/api/v1/status', newToken('user'), undefined, '10.0.0.2');
    const byName = await call('GET', '/api/v1/status', 'the-viewer', undefined, '10.0.0.2');
    const nonsense = await call('GET', '/api/v1/status', 'no-such-name', undefined, '10.0.0.2');
    for (const result of [revoked, wrong, byName, nonsense]) {
      assert.equal(result.status, 401);
      assert.deepEqual(result.json, revoked.json, 'one message for every bad token');
    }
    assert.equal(revoked.json.error?.message, 'invalid or revoked token');
  });

  /** One authenticated GET as seen from `remoteAddress` (and, if given, through a proxy naming `forwardedFor`). */
  async function attempt(target: FastifyInstance, url: string, token: string, remoteAddress: string, forwardedFor?: string) {
    const response = await target.inject({ method: 'GET', url, remoteAddress, headers: { authorization: `Bearer ${token}`, ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }) } });
    return { status: response.statusCode, json: JSON.parse(response.body) as { error?: { kind: string; message: string; exitCode: number } }, retryAfter: response.headers['retry-after'] };
  }

  /** Sends fresh bad tokens until one is answered 429 (each before it 401); returns that answer. */
  async function exhaust(target: FastifyInstance, remoteAddress: string, forwardedFor?: string) {
    for (let count = 0; count < 40; count++) {
      const result = await attempt(target, '/api/v1/status', newToken('user'), remoteAddress, forwardedFor);
      if (result.status === 429) return { ...result, failuresBefore: count };
      assert.equal(result.status, 401, JSON.stringify(result.json));
    }
    assert.fail(`40 bad tokens from ${forwardedFor ?? remoteAddress} were never rate-limited`);
  }

  it('bad tokens from one address get 429 (error object, Retry-After); a valid user token and agent credential from there are still served', async () => {
    const address = '10.0.0.3';
    const limited = await exhaust(app, address);
    assert.equal(limited.failuresBefore, 20, 'twenty bad tokens are answered 401 first');
    assert.equal(limited.json.error?.kind, 'rate-limited');
    assert.equal(limited.json.error?.exitCode, 5);
    assert.match(limited.json.error?.message ?? '', /too many failed authentications/);
    assert.match(String(limited.retryAfter), /^[1-9]\d*$/, 'Retry-After in whole seconds');
    assert.ok(Number(limited.retryAfter) <= 60);
    // A missing token from the address waits too; valid credentials do not.
    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/status', remoteAddress: address })).statusCode, 429);
    for (let round = 0; round < 3; round++) {
      assert.equal((await attempt(app, '/api/v1/status', tokens.viewer ?? '', address)).status, 200, 'a valid user token is served');
      assert.equal((await attempt(app, '/api/v1/agent/work?host=dev-1&wait=0', tokens.agent ?? '', address)).status, 200, 'a valid agent credential is served');
      assert.equal((await attempt(app, '/api/v1/status', newToken('user'), address)).status, 429, 'bad tokens still wait');
    }
    assert.equal((await attempt(app, '/api/v1/status', newToken('user'), '10.0.0.4')).status, 401, 'another address is unaffected');
  });

  it('one bad token replayed from many addresses is limited by its own key; other tokens from those addresses are not', async () => {
    const replayed = newToken('agent');
    for (let count = 0; count < 20; count++) assert.equal((await attempt(app, '/api/v1/status', replayed, `10.1.0.${count}`)).status, 401);
    const limited = await attempt(app, '/api/v1/status', replayed, '10.1.0.99');
    assert.equal(limited.status, 429, 'the 21st try of one token, from a fresh address');
    assert.equal(limited.json.error?.kind, 'rate-limited');
    assert.equal((await attempt(app, '/api/v1/status', newToken('user'), '10.1.0.99')).status, 401, 'a different bad token from that address is only refused');
  });

  it('bad enrollment tokens count the same way; a valid enrollment token from the blocked address still enrolls', async () => {
    const address = '10.2.0.1';
    const enrollFrom = (token: string) => app.inject({ method: 'POST', url: '/api/v1/agent/enroll', remoteAddress: address, payload: { token } });
    let limited = -1;
    for (let count = 0; count < 40 && limited < 0; count++) {
      const response = await enrollFrom(newToken('enroll'));
      if (response.statusCode === 429) limited = count;
      else assert.equal(response.statusCode, 401, response.body);
    }
    assert.equal(limited, 20);
    const host = await call('POST', '/api/v1/hosts', tokens.admin, { name: 'dev-2', env: 'development' });
    const enrolled = await enrollFrom((host.json as unknown as { enrollToken: string }).enrollToken);
    assert.equal(enrolled.statusCode, 200, enrolled.body);
  });

  it('X-Forwarded-For is ignored unless the server trusts a proxy; with trustProxy its addresses are limited separately', async () => {
    // Without trustProxy: a client naming a new forwarded address per try is still one address.
    const spoofing = '10.3.0.1';
    for (let count = 0; count < 20; count++) assert.equal((await attempt(app, '/api/v1/status', newToken('user'), spoofing, `198.51.100.${count}`)).status, 401);
    assert.equal((await attempt(app, '/api/v1/status', newToken('user'), spoofing, '198.51.100.200')).status, 429);

    const proxied = await createServer({ ...parts, trustProxy: true });
    try {
      const proxy = '10.3.0.2';
      const first = await exhaust(proxied.app, proxy, '203.0.113.7');
      assert.equal(first.failuresBefore, 20);
      assert.equal((await attempt(proxied.app, '/api/v1/status', newToken('user'), proxy, '203.0.113.8')).status, 401, 'another client behind the same proxy is not limited');
      assert.equal((await attempt(proxied.app, '/api/v1/status', newToken('user'), proxy)).status, 401, 'nor is the proxy itself');
      assert.equal((await attempt(proxied.app, '/api/v1/status', tokens.viewer ?? '', proxy, '203.0.113.7')).status, 200, 'the limited client with a valid token is served');
      // Only the entry the proxy appended counts: a client inventing entries before it stays one client.
      for (let count = 0; count < 20; count++) assert.equal((await attempt(proxied.app, '/api/v1/status', newToken('user'), proxy, `198.51.100.${count}, 203.0.113.9`)).status, 401);
      assert.equal((await attempt(proxied.app, '/api/v1/status', newToken('user'), proxy, '198.51.100.250, 203.0.113.9')).status, 429);
    } finally {
      await proxied.app.close();
    }
  });
});
