/**
 * The store's upload sessions and blob holds, on every database: open
 * sessions are those neither closed nor expired, per token or all; a hold is
 * one row per holder and blob (uploading again refreshes it), dropped for
 * every holder once a release references the blob; gc pages through release
 * manifests in id order.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Store } from '../../src/store/store.js';
import { storeBackends, type StoreBackend, withStore as withBackendStore } from '../helpers/store-backends.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();
const hash = (digit: string) => digit.repeat(64);

function contract(backend: StoreBackend): void {
  describe(`upload store: ${backend.name}`, () => {
    before(() => backend.setUp());
    after(() => backend.tearDown());

    const withStore = (work: (store: Store) => Promise<void>): Promise<void> => withBackendStore(backend, work);

    it('lists the sessions still open at a time, per token or all, and closes one', () =>
      withStore(async (store) => {
        const session = (token: string, expires: number) => ({ token, blobs: JSON.stringify([hash('a')]), missing: '[]', created_at: at(0), expires_at: at(expires), closed_at: null });
        const first = await store.transaction((repo) => repo.insertUploadSession(session('ci', 60)));
        const second = await store.transaction((repo) => repo.insertUploadSession(session('ci', 10)));
        const other = await store.transaction((repo) => repo.insertUploadSession(session('bob', 60)));
        assert.deepEqual((await store.read.openUploadSessions(at(5), 'ci')).map((row) => row.id), [first, second]);
        assert.deepEqual((await store.read.openUploadSessions(at(30), 'ci')).map((row) => row.id), [first], 'an expired session is not open');
        await store.transaction((repo) => repo.closeUploadSession(first, at(31)));
        assert.deepEqual((await store.read.openUploadSessions(at(32))).map((row) => row.id), [other], 'a closed session is not open');
        assert.equal((await store.read.uploadSession(first))?.closed_at, at(31));
        assert.equal(await store.read.uploadSession(9999), undefined);
      }));

    it('keeps one hold per holder and blob, and drops every hold on blobs a release references', () =>
      withStore(async (store) => {
        await store.transaction(async (repo) => {
          await repo.upsertBlobHold({ holder: 'token:ci', hash: hash('a'), size: 10, at: at(0) });
          await repo.upsertBlobHold({ holder: 'token:ci', hash: hash('a'), size: 10, at: at(5) });
          await repo.upsertBlobHold({ holder: 'token:ci', hash: hash('b'), size: 3_000_000_000, at: at(1) });
          await repo.upsertBlobHold({ holder: 'host:web1', hash: hash('a'), size: 10, at: at(2) });
        });
        assert.deepEqual(
          (await store.read.blobHolds('token:ci')).sort((x, y) => x.hash.localeCompare(y.hash)),
          [
            { holder: 'token:ci', hash: hash('a'), size: 10, at: at(5) },
            { holder: 'token:ci', hash: hash('b'), size: 3_000_000_000, at: at(1) },
          ],
        );
        await store.transaction((repo) => repo.releaseBlobHolds([hash('a')]));
        assert.deepEqual((await store.read.blobHolds('token:ci')).map((row) => row.hash), [hash('b')]);
        assert.deepEqual(await store.read.blobHolds('host:web1'), []);
      }));

    it('pages through release manifests in id order', () =>
      withStore(async (store) => {
        for (const digit of ['3', '1', '2']) {
          await store.transaction((repo) =>
            repo.insertRelease({ id: hash(digit), app: 'app', version: `v${digit}`, manifest: `{"v":${digit}}`, files: 0, bytes: 0, created_by: 'ci', created_at: at(0) }),
          );
        }
        const first = await store.read.releaseManifestPage('', 2);
        assert.deepEqual(first.map((row) => row.id), [hash('1'), hash('2')]);
        const rest = await store.read.releaseManifestPage(hash('2'), 2);
        assert.deepEqual(rest, [{ id: hash('3'), manifest: '{"v":3}' }]);
      }));
  });
}

for (const backend of storeBackends()) contract(backend);
