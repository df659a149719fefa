/**
 * The secret routes in-process (Fastify inject over a real SQLite store): versions never reused across a
 * removal, roles and environment scopes enforced, bad input refused with one line that never echoes the value,
 * and the stored row holding no plaintext.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startInProcessApp, type InProcessApp } from '../helpers/in-process-app.js';

const CONFIG = `app: app
deploy_to: /srv/app
environments:
  test: {}
  production: { promote_from: test }
`;
const VALUE = 'correct-horse-battery-staple-0f3a';

describe('secret routes', () => {
  let server: InProcessApp;
  const secrets = (env: string, name = '') => `/api/v1/environments/${env}/secrets${name ? `/${name}` : ''}`;

  before(async () => {
    server = await startInProcessApp(CONFIG);
  });
  after(async () => {
    await server?.close();
  });

  it('every set is a new version, never reused after a removal; list shows no value', async () => {
    const admin = server.adminToken;
    assert.deepEqual((await server.call('PUT', secrets('production', 'DB_PASSWORD'), admin, { value: VALUE })).json.version, 1);
    assert.deepEqual((await server.call('PUT', secrets('production', 'DB_PASSWORD'), admin, { value: `${VALUE}-2` })).json.version, 2);
    assert.deepEqual((await server.call('DELETE', secrets('production', 'DB_PASSWORD'), admin)).json, { env: 'production', name: 'DB_PASSWORD', version: 2 });
    const again = await server.call('PUT', secrets('production', 'DB_PASSWORD'), admin, { value: VALUE });
    assert.equal(again.status, 200);
    assert.equal(again.json.version, 3);
    assert.ok(!JSON.stringify(again.json).includes(VALUE));
    const list = await server.call('GET', secrets('production'), admin);
    assert.deepEqual(list.json.secrets.map((secret: { name: string; version: number; deployed: boolean }) => [secret.name, secret.version, secret.deployed]), [['DB_PASSWORD', 3, false]]);
    const row = await server.context.store.read.secret('production', 'DB_PASSWORD');
    assert.ok(row !== undefined && !row.sealed.includes(VALUE) && !Buffer.from(row.sealed, 'base64').includes(Buffer.from(VALUE)), 'stored sealed');
  });

  it('admins set and remove, viewers list, and a token limited to test cannot touch production', async () => {
    const deployer = await server.token('deployer-1', 'deployer');
    const viewer = await server.token('viewer-1', 'viewer');
    assert.equal((await server.call('PUT', secrets('test', 'API_KEY'), deployer, { value: VALUE })).status, 403);
    assert.equal((await server.call('DELETE', secrets('production', 'DB_PASSWORD'), viewer)).status, 403);
    assert.equal((await server.call('GET', secrets('production'), viewer)).status, 200);
    const scoped = await server.call('POST', '/api/v1/tokens', server.adminToken, { name: 'test-admin', role: 'admin', envs: ['test'] });
    const testAdmin = scoped.json.token as string;
    assert.equal((await server.call('PUT', secrets('test', 'API_KEY'), testAdmin, { value: VALUE })).status, 200);
    assert.equal((await server.call('PUT', secrets('production', 'API_KEY'), testAdmin, { value: VALUE })).status, 403);
    assert.equal((await server.call('GET', secrets('production'), testAdmin)).status, 403);
  });

  it('bad input is a 4xx with one line that never repeats the value, and nothing is stored', async () => {
    const admin = server.adminToken;
    const cases: [string, unknown, number, RegExp][] = [
      [secrets('nowhere', 'X'), { value: VALUE }, 404, /environment "nowhere" is not in lockstep.yaml/],
      [secrets('test', '9LIVES'), { value: VALUE }, 400, /secret name "9LIVES" is not allowed/],
      [secrets('test', 'EMPTY'), { value: '' }, 400, /a secret cannot be empty/],
      [secrets('test', 'LONG'), { value: `${VALUE}${'x'.repeat(60_001)}` }, 400, /a secret holds at most 60000 characters/],
      [secrets('test', 'HUGE'), { value: `${VALUE}${'x'.repeat(70_000)}` }, 413, /request body is \d+ bytes; this route takes at most 65536/],
    ];
    for (const [url, body, status, message] of cases) {
      const answer = await server.call('PUT', url, admin, body);
      assert.equal(answer.status, status, url);
      assert.match(answer.json.error.message, message);
      assert.ok(!answer.json.error.message.includes('\n') && !JSON.stringify(answer.json).includes(VALUE), `${url}: one line, no value`);
    }
    assert.deepEqual((await server.call('GET', secrets('test'), admin)).json.secrets.map((secret: { name: string }) => secret.name), ['API_KEY']);
  });
});
