/**
 * The store's secrets, on every database: one row per environment and name
 * holding the current version as sealed text, replaced by the next set,
 * gone after a removal, with versions from the counters that never repeat.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SecretRow, Store } from '../../src/store/store.js';
import { storeBackends, type StoreBackend, withStore as withBackendStore } from '../helpers/store-backends.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();

function secret(env: string, name: string, version: number, overrides: Partial<SecretRow> = {}): SecretRow {
  return { env, name, version, sealed: `sealed-${env}-${name}-${version}`, key_id: 'sha256:0123456789abcdef', digest: `digest-${name}-${version}`, set_by: 'admin', set_at: at(version), ...overrides };
}

function contract(backend: StoreBackend): void {
  describe(`secret store: ${backend.name}`, () => {
    before(() => backend.setUp());
    after(() => backend.tearDown());

    const withStore = (work: (store: Store) => Promise<void>): Promise<void> => withBackendStore(backend, work);

    it('keeps the current version of each secret per environment, by name, and replaces it on the next set', () =>
      withStore(async (store) => {
        assert.deepEqual(await store.read.secrets('production'), []);
        await store.transaction(async (repo) => {
          await repo.putSecret(secret('production', 'DB_PASSWORD', 1));
          await repo.putSecret(secret('production', 'API_KEY', 1));
          await repo.putSecret(secret('test', 'DB_PASSWORD', 1));
        });
        await store.transaction((repo) => repo.putSecret(secret('production', 'DB_PASSWORD', 2, { set_by: 'alice' })));
        const rows = await store.read.secrets('production');
        assert.deepEqual(rows, [secret('production', 'API_KEY', 1), secret('production', 'DB_PASSWORD', 2, { set_by: 'alice' })]);
        assert.equal(typeof rows[0]?.version, 'number');
        assert.deepEqual(await store.read.secret('test', 'DB_PASSWORD'), secret('test', 'DB_PASSWORD', 1));
        assert.equal(await store.read.secret('test', 'API_KEY'), undefined);
      }));

    it('removes one secret of one environment; removing it again finds nothing', () =>
      withStore(async (store) => {
        await store.transaction(async (repo) => {
          await repo.putSecret(secret('production', 'DB_PASSWORD', 1));
          await repo.putSecret(secret('test', 'DB_PASSWORD', 1));
        });
        assert.equal(await store.transaction((repo) => repo.removeSecret('production', 'DB_PASSWORD')), true);
        assert.equal(await store.transaction((repo) => repo.removeSecret('production', 'DB_PASSWORD')), false);
        assert.deepEqual(await store.read.secrets('production'), []);
        assert.deepEqual((await store.read.secrets('test')).map((row) => row.name), ['DB_PASSWORD']);
      }));

    it('a rolled-back set leaves the previous version in place', () =>
      withStore(async (store) => {
        await store.transaction((repo) => repo.putSecret(secret('production', 'DB_PASSWORD', 1)));
        await assert.rejects(
          store.transaction(async (repo) => {
            await repo.putSecret(secret('production', 'DB_PASSWORD', 2));
            throw new Error('abort');
          }),
          /abort/,
        );
        assert.equal((await store.read.secret('production', 'DB_PASSWORD'))?.version, 1);
      }));
  });
}

for (const backend of storeBackends()) contract(backend);
