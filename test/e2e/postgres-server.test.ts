/**
 * `lockstep server --database postgres://…`: the same flow on a real
 * PostgreSQL server (started by the test), and two servers sharing it.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startFleet, testConfig, writeApp, type Fleet } from '../helpers/fleet.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

let postgres: PostgresServer;
let fleet: Fleet;

before(async () => {
  postgres = await startPostgres();
  fleet = await startFleet({ database: postgres.url });
});

after(async () => {
  await fleet?.stop();
  await postgres?.stop();
});

test('a release goes from development to test on a PostgreSQL-backed server', async () => {
  await fleet.applyConfig(testConfig());
  const dev = await fleet.addAgent('pg-dev-1', 'development');
  await fleet.addAgent('pg-test-1', 'test');
  const id = (await fleet.ok(['release', 'create', await writeApp(join(fleet.dir, 'app-v1'), 'v1'), '--version', '1.0.0'])).trim();
  assert.match(id, /^[0-9a-f]{64}$/);

  const refused = await fleet.cli(['deploy', id, '--to', 'test']);
  assert.equal(refused.code, 3, refused.stderr);
  assert.match(refused.stderr, /promotion-gate/);

  await fleet.ok(['deploy', id, '--to', 'development']);
  await fleet.ok(['deploy', id, '--to', 'test']);
  const status = JSON.parse(await fleet.ok(['status', '--json'])) as { environments: { name: string; current: { id: string } | null }[] };
  assert.deepEqual(
    status.environments.map((env) => [env.name, env.current?.id ?? null]),
    [
      ['development', id],
      ['test', id],
      ['production', null],
    ],
  );
  const { readlink } = await import('node:fs/promises');
  assert.equal(await readlink(dev.path('/srv/app/current')), `releases/${id}`);

  const audit = JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as { seq: number; hash: string; prevHash: string }[];
  for (let index = 1; index < audit.length; index++) assert.equal(audit[index]?.prevHash, audit[index - 1]?.hash, `chain broken at seq ${audit[index]?.seq}`);
});

test('a second server on the same database sees the same state and serves the same token', async () => {
  const second = await startFleet({ database: postgres.url, token: fleet.token });
  try {
    // The admin token was created once, by the first server; the second reuses the database's.
    const status = await second.http('GET', '/api/v1/status');
    assert.equal(status.status, 200);
    const environments = (status.json as { environments: { name: string; current: unknown }[] }).environments;
    assert.equal(environments.find((env) => env.name === 'test')?.current !== null, true);
  } finally {
    await second.stop();
  }
});
