/**
 * The store contract: one suite, run against every backend (a SQLite file in a
 * temp dir and a real throwaway PostgreSQL server). Each test gets a fresh,
 * migrated database.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { auditHash, GENESIS_HASH } from '../../src/core/audit-hash.js';
import { DEPLOYMENT_STATES, IN_FLIGHT_DEPLOYMENT_STATES, type StepState } from '../../src/core/deployment-states.js';
import { TOKEN_ROLES, USER_ROLES } from '../../src/core/token-roles.js';
import type { HostAlertState } from '../../src/core/host-presence.js';
import type { AuditEventRow, AuditSigner, DeploymentHostRow, DeploymentRow, FirecallRecordRow, HostAlertStateRow, HostRow, ReleaseRow, Store, TokenRow } from '../../src/store/store.js';
import { storeBackends, type StoreBackend, withStore as withBackendStore } from '../helpers/store-backends.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');
/** A fixed, sortable ISO time `minutes` after T0 (no clock reads). */
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();
/** A release id-like 64-hex string derived from `seed`. */
const hexId = (seed: string) => createHash('sha256').update(seed).digest('hex');

function releaseRow(version: string, overrides: Partial<ReleaseRow> = {}): ReleaseRow {
  return {
    id: hexId(`release ${version}`),
    app: 'shop',
    version,
    manifest: JSON.stringify({ app: 'shop', version, entries: [] }),
    files: 3,
    bytes: 1234,
    created_by: 'alice',
    created_at: at(0),
    ...overrides,
  };
}

function tokenRow(name: string, overrides: Partial<TokenRow> = {}): TokenRow {
  return {
    name,
    token_hash: hexId(`token ${name}`),
    role: 'deployer',
    envs: JSON.stringify(['test']),
    host: null,
    created_at: at(0),
    used_at: null,
    revoked_at: null,
    ...overrides,
  };
}

function hostRow(name: string, env: string): HostRow {
  return { name, env, created_at: at(0), enrolled_at: null, last_seen_at: null, current_release_id: null, agent_version: null, health: null, health_detail: null, health_at: null };
}

function deploymentRow(id: number, releaseId: string, overrides: Partial<DeploymentRow> = {}): DeploymentRow {
  return {
    id,
    env: 'test',
    kind: 'deploy',
    release_id: releaseId,
    from_release_id: null,
    state: 'running',
    requested_by: 'alice',
    reason: null,
    created_at: at(id),
    finished_at: null,
    error: null,
    revision: 0,
    current_batch: 0,
    batches: 1,
    next_batch_at: null,
    override_reason: null,
    ...overrides,
  };
}

function stepRow(deploymentId: number, host: string, state: StepState): DeploymentHostRow {
  return { deployment_id: deploymentId, host, from_release_id: null, state, error: null, updated_at: at(deploymentId), batch: 0, deadline_at: null, progress: null };
}

/** Checks that `events` form an unbroken chain from the genesis hash, numbered 1..n. */
function assertUnbrokenChain(events: readonly AuditEventRow[]): void {
  let previous = GENESIS_HASH;
  events.forEach((event, index) => {
    assert.equal(event.seq, index + 1, `event ${index} has seq ${event.seq}`);
    assert.equal(event.prev_hash, previous, `event ${event.seq} does not link to the one before it`);
    const recomputed = auditHash(event.prev_hash, {
      seq: event.seq,
      at: event.at,
      actor: event.actor,
      action: event.action,
      target: event.target,
      details: JSON.parse(event.details) as unknown,
    });
    assert.equal(event.hash, recomputed, `event ${event.seq}'s hash cannot be recomputed`);
    previous = event.hash;
  });
}

class Abort extends Error {}

/**
 * Makes concurrent transactions overlap: each waits here until `size` have
 * arrived, so their next statements race. A backend with a single connection
 * runs transactions one after another; when no one else arrives for
 * `stallMs`, the waiter goes ahead, so such a backend is only slowed, never stuck.
 */
function rendezvous(size: number, stallMs = 50): () => Promise<void> {
  let arrived = 0;
  let releaseAll = () => {};
  const everyone = new Promise<void>((resolve) => (releaseAll = resolve));
  return async () => {
    arrived++;
    if (arrived >= size) releaseAll();
    let seen = -1;
    while (arrived < size && arrived !== seen) {
      seen = arrived;
      await Promise.race([everyone, delay(stallMs)]);
    }
  };
}

function contract(backend: StoreBackend): void {
  describe(`store contract: ${backend.name}`, () => {
    before(() => backend.setUp());
    after(() => backend.tearDown());

    const withStore = (work: (store: Store) => Promise<void>): Promise<void> => withBackendStore(backend, work);

    it('migrating twice is harmless and keeps data', () =>
      withStore(async (store) => {
        await store.transaction((repo) => repo.insertRelease(releaseRow('1.0.0')));
        await store.transaction((repo) => repo.appendAudit({ at: at(1), actor: 'alice', action: 'release.create', target: 'shop', details: {} }));
        await store.migrate();
        await store.migrate();
        assert.equal((await store.read.releaseByVersion('shop', '1.0.0'))?.id, hexId('release 1.0.0'));
        // The chain head was not reset by re-running migrations.
        const second = await store.transaction((repo) => repo.appendAudit({ at: at(2), actor: 'alice', action: 'x', target: 'y', details: {} }));
        assert.equal(second.seq, 2);
        assertUnbrokenChain(await store.read.listAudit({ limit: 10 }));
      }));

    it('host facts: the latest report per host replaces the one before (lockstep parity)', () =>
      withStore(async (store) => {
        const row = (host: string, facts: string, minute: number) => ({ host, facts, reported_at: at(minute), changed_at: at(minute) });
        assert.deepEqual(await store.read.hostFacts([]), []);
        await store.transaction((repo) => repo.putHostFacts(row('web1', '{"kernel":"6.1"}', 1)));
        await store.transaction((repo) => repo.putHostFacts(row('web2', '{"kernel":"6.1"}', 2)));
        await store.transaction((repo) => repo.putHostFacts({ ...row('web1', '{"kernel":"6.2"}', 3), changed_at: at(3) }));
        assert.deepEqual(await store.read.hostFacts(['web2', 'web1', 'never-reported']), [row('web1', '{"kernel":"6.2"}', 3), row('web2', '{"kernel":"6.1"}', 2)]);
        assert.deepEqual(await store.read.hostFacts(['web2']), [row('web2', '{"kernel":"6.1"}', 2)]);
      }));

    it('host alert states: inserted once, then swapped only from the state the writer saw', () =>
      withStore(async (store) => {
        const row = (host: string, presence: HostAlertState['presence'], minute: number, drift: HostAlertState['drift'] = 'reporting'): HostAlertStateRow => ({ host, presence, presence_at: at(minute), drift, drift_at: at(0) });
        assert.deepEqual(await store.read.hostAlertStates(), new Map());
        assert.equal(await store.transaction((repo) => repo.swapHostAlertState(undefined, row('web1', 'offline', 1))), true);
        assert.equal(await store.transaction((repo) => repo.swapHostAlertState(undefined, row('web1', 'offline', 2))), false, 'a second first insert is refused');
        assert.equal(await store.transaction((repo) => repo.swapHostAlertState(row('web1', 'online', 1), row('web1', 'offline', 3))), false, 'not the stored state');
        assert.equal(await store.transaction((repo) => repo.swapHostAlertState(row('web1', 'offline', 1), row('web1', 'online', 4))), true);
        assert.equal(await store.transaction((repo) => repo.swapHostAlertState(undefined, row('web2', 'online', 5, 'silent'))), true);
        assert.deepEqual(
          await store.read.hostAlertStates(),
          new Map([
            ['web1', row('web1', 'online', 4)],
            ['web2', row('web2', 'online', 5, 'silent')],
          ]),
        );
      }));

    it('host alert states: of concurrent swaps from one state, exactly one wins', () =>
      withStore(async (store) => {
        const row = (presence: HostAlertState['presence'], minute: number): HostAlertStateRow => ({ host: 'web1', presence, presence_at: at(minute), drift: 'reporting', drift_at: at(0) });
        await store.transaction((repo) => repo.swapHostAlertState(undefined, row('online', 0)));
        const arrive = rendezvous(4);
        const wins = await Promise.all(
          [1, 2, 3, 4].map((minute) =>
            store.transaction(async (repo) => {
              await repo.hostAlertStates();
              await arrive();
              return repo.swapHostAlertState(row('online', 0), row('offline', minute));
            }),
          ),
        );
        assert.equal(wins.filter(Boolean).length, 1, `one writer alerts: ${JSON.stringify(wins)}`);
        assert.equal((await store.read.hostAlertStates()).get('web1')?.presence, 'offline');
      }));

    it('reports its capabilities', () =>
      withStore(async (store) => {
        assert.equal(typeof store.capabilities.sharedByServers, 'boolean');
        assert.equal(store.capabilities.sharedByServers, backend.name === 'postgres');
      }));

    describe('counters', () => {
      it('count up from 1, independently per name', () =>
        withStore(async (store) => {
          const values = await store.transaction(async (repo) => [
            await repo.next('deployment'),
            await repo.next('deployment'),
            await repo.next('other'),
            await repo.next('deployment'),
          ]);
          assert.deepEqual(values, [1, 2, 1, 3]);
          assert.equal(await store.transaction((repo) => repo.next('deployment')), 4);
        }));

      it('give 20 concurrent transactions distinct values 1..20 on first use of the counter', () =>
        withStore(async (store) => {
          const together = rendezvous(10);
          const values = await Promise.all(
            Array.from({ length: 20 }, () =>
              store.transaction(async (repo) => {
                await repo.latestConfig(); // the transaction has begun
                await together();
                return repo.next('deployment');
              }),
            ),
          );
          assert.deepEqual([...values].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
        }));

      it('give 20 concurrent transactions distinct values on an existing counter', () =>
        withStore(async (store) => {
          assert.equal(await store.transaction((repo) => repo.next('deployment')), 1);
          const values = await Promise.all(Array.from({ length: 20 }, () => store.transaction((repo) => repo.next('deployment'))));
          assert.deepEqual([...values].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 2));
        }));

      it('do not advance when the transaction fails', () =>
        withStore(async (store) => {
          assert.equal(await store.transaction((repo) => repo.next('deployment')), 1);
          await assert.rejects(
            store.transaction(async (repo) => {
              await repo.next('deployment');
              throw new Abort('abort');
            }),
            Abort,
          );
          assert.equal(await store.transaction((repo) => repo.next('deployment')), 2);
        }));
    });

    describe('configs', () => {
      it('are numbered 1, 2, … and the latest is returned', () =>
        withStore(async (store) => {
          assert.equal(await store.read.latestConfig(), undefined);
          const first = await store.transaction((repo) => repo.insertConfig({ yaml: 'app: a\n', parsed: '{"app":"a"}', applied_by: 'alice', applied_at: at(1) }));
          const second = await store.transaction((repo) => repo.insertConfig({ yaml: 'app: b\n', parsed: '{"app":"b"}', applied_by: 'bob', applied_at: at(2) }));
          assert.deepEqual([first, second], [1, 2]);
          assert.deepEqual(await store.read.latestConfig(), { version: 2, yaml: 'app: b\n', parsed: '{"app":"b"}', applied_by: 'bob', applied_at: at(2) });
        }));

      it('are not stored when the transaction fails', () =>
        withStore(async (store) => {
          await assert.rejects(
            store.transaction(async (repo) => {
              await repo.insertConfig({ yaml: 'app: a\n', parsed: '{}', applied_by: 'alice', applied_at: at(1) });
              throw new Abort('abort');
            }),
            Abort,
          );
          assert.equal(await store.read.latestConfig(), undefined);
        }));
    });

    describe('tokens', () => {
      it('are found by hash and by name, and updated', () =>
        withStore(async (store) => {
          const token = tokenRow('ci');
          await store.transaction(async (repo) => {
            await repo.insertToken(token);
            await repo.insertToken(tokenRow('agent-web-1', { role: 'agent', envs: null, host: 'web-1' }));
          });
          assert.deepEqual(await store.read.tokenByHash(token.token_hash), token);
          assert.deepEqual(await store.read.tokenByName('ci'), token);
          assert.equal((await store.read.tokenByName('agent-web-1'))?.host, 'web-1');
          assert.equal(await store.read.tokenByHash(hexId('nobody')), undefined);
          assert.equal(await store.read.tokenByName('nobody'), undefined);

          await store.transaction((repo) => repo.updateToken('ci', { used_at: at(5) }));
          await store.transaction((repo) => repo.updateToken('ci', { revoked_at: at(6) }));
          assert.deepEqual(await store.read.tokenByName('ci'), { ...token, used_at: at(5), revoked_at: at(6) });
          assert.equal((await store.read.tokenByName('agent-web-1'))?.revoked_at, null, 'another token changed');
        }));

      it('user tokens are those with a user role (core/token-roles.ts), by name', () =>
        withStore(async (store) => {
          await store.transaction(async (repo) => {
            for (const [index, role] of TOKEN_ROLES.entries()) await repo.insertToken(tokenRow(`t-${role}`, { role, token_hash: hexId(`token-${index}`) }));
          });
          assert.deepEqual(
            (await store.read.listUserTokens()).map((row) => row.role),
            [...USER_ROLES].sort((a, b) => a.localeCompare(b)),
          );
        }));

      it('reject a second token with the same hash', () =>
        withStore(async (store) => {
          await store.transaction((repo) => repo.insertToken(tokenRow('a', { token_hash: hexId('same') })));
          await assert.rejects(store.transaction((repo) => repo.insertToken(tokenRow('b', { token_hash: hexId('same') }))));
          assert.equal(await store.read.tokenByName('b'), undefined);
        }));
    });

    describe('releases', () => {
      it('are found by id, prefix and version, and listed newest first without manifests', () =>
        withStore(async (store) => {
          const r1 = releaseRow('1.0.0', { created_at: at(1) });
          const r2 = releaseRow('1.1.0', { created_at: at(2) });
          const r3 = releaseRow('2.0.0', { created_at: at(3), app: 'other' });
          await store.transaction(async (repo) => {
            for (const release of [r1, r2, r3]) await repo.insertRelease(release);
          });
          assert.deepEqual(await store.read.release(r1.id), r1);
          assert.equal(await store.read.release(hexId('missing')), undefined);
          assert.deepEqual(await store.read.releaseByVersion('shop', '1.1.0'), r2);
          assert.equal(await store.read.releaseByVersion('other', '1.1.0'), undefined);

          assert.deepEqual(await store.read.releasesByPrefix(r2.id.slice(0, 12), 10), [r2]);
          assert.deepEqual(await store.read.releasesByPrefix(r2.id, 10), [r2]);
          assert.equal((await store.read.releasesByPrefix('', 2)).length, 2, 'limit is applied');

          const listed = await store.read.listReleases(10);
          assert.deepEqual(
            listed.map((row) => row.version),
            ['2.0.0', '1.1.0', '1.0.0'],
          );
          const { manifest: _manifest, ...withoutManifest } = r3;
          assert.deepEqual(listed[0], withoutManifest);
          assert.equal((await store.read.listReleases(1)).length, 1);
        }));

      it('a prefix that is not lowercase hex matches no release', () =>
        withStore(async (store) => {
          const release = releaseRow('1.0.0');
          await store.transaction((repo) => repo.insertRelease(release));
          // "1.0.0" or "XYZ" typed where an id prefix is expected must not resolve to some release.
          assert.deepEqual(await store.read.releasesByPrefix('zzz', 10), []);
          assert.deepEqual(await store.read.releasesByPrefix(`${release.id.slice(0, 4)}-x`, 10), []);
        }));

      it('reject a second release with the same app and version', () =>
        withStore(async (store) => {
          await store.transaction((repo) => repo.insertRelease(releaseRow('1.0.0')));
          await assert.rejects(store.transaction((repo) => repo.insertRelease(releaseRow('1.0.0', { id: hexId('different content') }))));
          assert.equal(await store.read.release(hexId('different content')), undefined);
          // The same version of another app is fine.
          await store.transaction((repo) => repo.insertRelease(releaseRow('1.0.0', { id: hexId('other app'), app: 'other' })));
          assert.equal((await store.read.releaseByVersion('other', '1.0.0'))?.id, hexId('other app'));
        }));
    });

    describe('release environments', () => {
      it('upsert keeps first_deployed_at and applies patches', () =>
        withStore(async (store) => {
          const release = releaseRow('1.0.0');
          await store.transaction(async (repo) => {
            await repo.insertRelease(release);
            await repo.upsertReleaseEnvironment(release.id, 'test', {}, at(1));
          });
          assert.deepEqual(await store.read.releaseEnvironment(release.id, 'test'), {
            release_id: release.id,
            env: 'test',
            first_deployed_at: at(1),
            succeeded_at: null,
            rolled_back_at: null,
            rolled_back_reason: null,
            rejected_at: null,
            rejected_reason: null,
            superseded_at: null,
          });
          await store.transaction((repo) => repo.upsertReleaseEnvironment(release.id, 'test', { succeeded_at: at(3) }, at(2)));
          await store.transaction((repo) => repo.upsertReleaseEnvironment(release.id, 'production', { succeeded_at: at(5) }, at(4)));
          assert.deepEqual(await store.read.releaseEnvironment(release.id, 'test'), {
            release_id: release.id,
            env: 'test',
            first_deployed_at: at(1),
            succeeded_at: at(3),
            rolled_back_at: null,
            rolled_back_reason: null,
            rejected_at: null,
            rejected_reason: null,
            superseded_at: null,
          });
          assert.deepEqual(
            (await store.read.releaseEnvironments(release.id)).map((row) => [row.env, row.first_deployed_at, row.succeeded_at]),
            [
              ['test', at(1), at(3)],
              ['production', at(4), at(5)],
            ],
          );
          assert.deepEqual(await store.read.releaseIdsDeployedTo('production'), [release.id]);
          assert.deepEqual(await store.read.releaseIdsDeployedTo('development'), []);
          assert.equal(await store.read.releaseEnvironment(release.id, 'development'), undefined);
        }));

      it('succeeded releases are listed newest success first, rolled back or not (known-good is decided in core)', () =>
        withStore(async (store) => {
          const [a, b, c, d, e] = ['1', '2', '3', '4', '5'].map((version) => releaseRow(version));
          await store.transaction(async (repo) => {
            for (const release of [a, b, c, d, e]) await repo.insertRelease(release!);
            await repo.upsertReleaseEnvironment(a!.id, 'test', { succeeded_at: at(10) }, at(9));
            await repo.upsertReleaseEnvironment(b!.id, 'test', { succeeded_at: at(30) }, at(29));
            await repo.upsertReleaseEnvironment(c!.id, 'test', { succeeded_at: at(20) }, at(19));
            await repo.upsertReleaseEnvironment(d!.id, 'test', {}, at(40)); // never succeeded
            await repo.upsertReleaseEnvironment(e!.id, 'test', { succeeded_at: at(50) }, at(49));
            await repo.upsertReleaseEnvironment(e!.id, 'production', { succeeded_at: at(60) }, at(59));
          });
          await store.transaction((repo) => repo.upsertReleaseEnvironment(e!.id, 'test', { rolled_back_at: at(55) }, at(55)));
          const succeeded = await store.read.succeededReleases('test');
          assert.deepEqual(
            succeeded.map((row) => [row.release_id, row.rolled_back_at]),
            [[e!.id, at(55)], [b!.id, null], [c!.id, null], [a!.id, null]],
          );
          assert.deepEqual(
            (await store.read.succeededReleases('production')).map((row) => row.release_id),
            [e!.id],
          );
        }));
    });

    describe('environments', () => {
      it('track the current release', () =>
        withStore(async (store) => {
          const [r1, r2] = [releaseRow('1'), releaseRow('2')];
          await store.transaction(async (repo) => {
            await repo.insertRelease(r1);
            await repo.insertRelease(r2);
          });
          assert.equal(await store.read.environmentCurrent('test'), undefined);
          await store.transaction((repo) => repo.setEnvironmentCurrent('test', r1.id, at(1)));
          assert.equal(await store.read.environmentCurrent('test'), r1.id);
          await store.transaction((repo) => repo.setEnvironmentCurrent('test', r2.id, at(2)));
          await store.transaction((repo) => repo.setEnvironmentCurrent('production', r1.id, at(2)));
          assert.equal(await store.read.environmentCurrent('test'), r2.id);
          assert.equal(await store.read.environmentCurrent('production'), r1.id);
          await store.transaction((repo) => repo.setEnvironmentCurrent('test', null, at(3)));
          assert.equal(await store.read.environmentCurrent('test'), undefined);
        }));
    });

    describe('hosts', () => {
      it('are inserted, listed by name (optionally per environment) and updated', () =>
        withStore(async (store) => {
          await store.transaction(async (repo) => {
            await repo.insertHost(hostRow('web-2', 'production'));
            await repo.insertHost(hostRow('web-1', 'production'));
            await repo.insertHost(hostRow('test-1', 'test'));
          });
          assert.deepEqual(
            (await store.read.listHosts()).map((host) => host.name),
            ['test-1', 'web-1', 'web-2'],
          );
          assert.deepEqual(
            (await store.read.listHosts('production')).map((host) => host.name),
            ['web-1', 'web-2'],
          );
          assert.deepEqual(await store.read.listHosts('development'), []);
          await store.transaction((repo) => repo.updateHost('web-1', { last_seen_at: at(5), agent_version: '0.1.0' }));
          assert.deepEqual(await store.read.host('web-1'), { ...hostRow('web-1', 'production'), last_seen_at: at(5), agent_version: '0.1.0' });
          assert.deepEqual(await store.read.host('web-2'), hostRow('web-2', 'production'));
          assert.equal(await store.read.host('nope'), undefined);
          await assert.rejects(store.transaction((repo) => repo.insertHost(hostRow('web-1', 'test'))), 'a host name is unique');
        }));
    });

    describe('fire calls', () => {
      const firecall = (id: number, env: string) => ({
        id, env, requested_by: 'alice', reason: 'disk full', key_id: `firecall-${id}-alice`, principals: '["root"]', hosts: null, source_address: null,
        certificate: 'ssh-ed25519-cert-v01@openssh.com AAAA', opened_at: at(id), expires_at: at(id + 10), closed_at: null, closed_by: null, close_note: null,
        reconciled_at: null, reconciled_by: null, reconcile_mode: null, reconcile_version: null,
        approval: null, requested_at: at(id), public_key: null, ttl_ms: 600_000, approved_by: null, approved_at: null, override_reason: null,
      });
      it('are stored, listed newest first, closed and reconciled; records skip pieces already stored; host trust is upserted', () =>
        withStore(async (store) => {
          await store.transaction(async (repo) => {
            await repo.insertFirecall(firecall(1, 'production'));
            await repo.insertFirecall(firecall(2, 'production'));
            await repo.insertFirecall(firecall(3, 'test'));
          });
          assert.deepEqual((await store.read.listFirecalls({ env: 'production', limit: 10 })).map((row) => row.id), [2, 1]);
          assert.deepEqual((await store.read.openFirecalls()).map((row) => row.id), [1, 2, 3]);
          assert.equal(await store.read.unreconciledFirecall('production'), undefined);
          await store.transaction((repo) => repo.updateFirecall(2, { closed_at: at(20), closed_by: 'bob', close_note: 'done' }));
          assert.equal((await store.read.unreconciledFirecall('production'))?.id, 2);
          assert.deepEqual((await store.read.openFirecalls()).map((row) => row.id), [1, 3]);
          await store.transaction((repo) => repo.updateFirecall(2, { reconciled_at: at(21), reconciled_by: 'bob', reconcile_mode: 'revert' }));
          assert.equal(await store.read.unreconciledFirecall('production'), undefined);
          assert.deepEqual(await store.read.firecall(2), { ...firecall(2, 'production'), closed_at: at(20), closed_by: 'bob', close_note: 'done', reconciled_at: at(21), reconciled_by: 'bob', reconcile_mode: 'revert' });

          const piece: FirecallRecordRow = { firecall_id: 1, host: 'web-1', kind: 'transcript', name: 'a.typescript', byte_offset: 0, at: at(2), text: 'hello ' };
          await store.transaction((repo) => repo.appendFirecallRecords([piece, { ...piece, byte_offset: 6, text: 'world' }]));
          await store.transaction((repo) => repo.appendFirecallRecords([piece]));
          assert.deepEqual((await store.read.firecallRecords(1)).map((row) => [row.byte_offset, row.text]), [[0, 'hello '], [6, 'world']]);

          await store.transaction((repo) => repo.setFirecallHost({ host: 'web-1', revision: 'r1', applied_at: at(3), error: null }));
          await store.transaction((repo) => repo.setFirecallHost({ host: 'web-1', revision: 'r2', applied_at: at(4), error: 'reload failed' }));
          assert.deepEqual(await store.read.firecallHosts(['web-1', 'web-2']), [{ host: 'web-1', revision: 'r2', applied_at: at(4), error: 'reload failed' }]);
        }));
    });

    describe('deployments', () => {
      it('are stored with their host steps, listed newest first and filtered', () =>
        withStore(async (store) => {
          const release = releaseRow('1.0.0');
          await store.transaction(async (repo) => {
            await repo.insertRelease(release);
            await repo.insertDeployment(deploymentRow(1, release.id, { state: 'succeeded', finished_at: at(2) }));
            await repo.insertDeployment(deploymentRow(2, release.id, { env: 'production' }));
            await repo.insertDeployment(deploymentRow(3, release.id));
            await repo.insertDeploymentHost(stepRow(3, 'web-2', 'pending'));
            await repo.insertDeploymentHost(stepRow(3, 'web-1', 'pending'));
          });
          assert.deepEqual(await store.read.deployment(2), deploymentRow(2, release.id, { env: 'production' }));
          assert.equal(await store.read.deployment(99), undefined);
          assert.deepEqual(
            (await store.read.deploymentHosts(3)).map((step) => step.host),
            ['web-1', 'web-2'],
          );
          assert.deepEqual(
            (await store.read.listDeployments({ limit: 10 })).map((d) => d.id),
            [3, 2, 1],
          );
          assert.deepEqual(
            (await store.read.listDeployments({ env: 'test', limit: 10 })).map((d) => d.id),
            [3, 1],
          );
          assert.deepEqual(
            (await store.read.listDeployments({ limit: 1 })).map((d) => d.id),
            [3],
          );
          assert.deepEqual(
            (await store.read.runningDeployments()).map((d) => d.id),
            [2, 3],
          );
          assert.deepEqual(
            (await store.read.runningDeployments('production')).map((d) => d.id),
            [2],
          );
          await assert.rejects(
            store.transaction((repo) => repo.insertDeployment(deploymentRow(4, hexId('no such release')))),
            'a deployment must name a stored release',
          );
        }));

      it('active deployments are those in IN_FLIGHT_DEPLOYMENT_STATES (core), oldest first, optionally per environment', () =>
        withStore(async (store) => {
          const release = releaseRow('1.0.0');
          await store.transaction(async (repo) => {
            await repo.insertRelease(release);
            for (const [index, state] of DEPLOYMENT_STATES.entries()) await repo.insertDeployment(deploymentRow(index + 1, release.id, { state, env: index % 2 === 0 ? 'test' : 'production' }));
          });
          const inFlight = DEPLOYMENT_STATES.flatMap((state, index) => (IN_FLIGHT_DEPLOYMENT_STATES.includes(state) ? [{ id: index + 1, state }] : []));
          assert.deepEqual(
            (await store.read.activeDeployments()).map((row) => ({ id: row.id, state: row.state })),
            inFlight,
          );
          assert.deepEqual(
            (await store.read.activeDeployments('production')).map((row) => row.id),
            inFlight.filter((row) => row.id % 2 === 0).map((row) => row.id),
          );
        }));

      it('updateDeployment applies the patch, increments the revision and returns the row', () =>
        withStore(async (store) => {
          const release = releaseRow('1.0.0');
          await store.transaction(async (repo) => {
            await repo.insertRelease(release);
            await repo.insertDeployment(deploymentRow(1, release.id));
          });
          const first = await store.transaction((repo) => repo.updateDeployment(1, { state: 'failed', error: 'web-1: health check failed' }));
          assert.deepEqual(first, deploymentRow(1, release.id, { state: 'failed', error: 'web-1: health check failed', revision: 1 }));
          const second = await store.transaction((repo) => repo.updateDeployment(1, { finished_at: at(9) }));
          assert.equal(second.revision, 2);
          assert.equal(second.state, 'failed');
          assert.deepEqual(await store.read.deployment(1), second);
          await assert.rejects(store.transaction((repo) => repo.updateDeployment(42, { state: 'failed' })), 'no such deployment');
        }));

      it('updateDeployment revisions stay distinct under concurrent updates', () =>
        withStore(async (store) => {
          const release = releaseRow('1.0.0');
          await store.transaction(async (repo) => {
            await repo.insertRelease(release);
            await repo.insertDeployment(deploymentRow(1, release.id));
          });
          const rows = await Promise.all(Array.from({ length: 10 }, () => store.transaction((repo) => repo.updateDeployment(1, { state: 'running' }))));
          assert.deepEqual(
            rows.map((row) => row.revision).sort((a, b) => a - b),
            Array.from({ length: 10 }, (_, i) => i + 1),
          );
          assert.equal((await store.read.deployment(1))?.revision, 10);
        }));

      it('pendingStep returns only pending/staging steps of running deployments, oldest deployment first', () =>
        withStore(async (store) => {
          const release = releaseRow('1.0.0');
          await store.transaction(async (repo) => {
            await repo.insertRelease(release);
            await repo.insertDeployment(deploymentRow(1, release.id, { state: 'failed' }));
            await repo.insertDeployment(deploymentRow(2, release.id));
            await repo.insertDeployment(deploymentRow(3, release.id));
            await repo.insertDeploymentHost(stepRow(1, 'web-1', 'pending')); // deployment not running
            await repo.insertDeploymentHost(stepRow(2, 'web-1', 'succeeded')); // step finished
            await repo.insertDeploymentHost(stepRow(3, 'web-1', 'staging'));
            await repo.insertDeploymentHost(stepRow(2, 'web-2', 'pending'));
            await repo.insertDeploymentHost(stepRow(3, 'web-2', 'pending'));
            await repo.insertDeploymentHost(stepRow(3, 'web-3', 'failed'));
          });
          const web1 = await store.read.pendingStep('web-1');
          assert.equal(web1?.deployment.id, 3);
          assert.deepEqual(web1?.step, stepRow(3, 'web-1', 'staging'));
          assert.deepEqual(web1?.deployment, deploymentRow(3, release.id));

          const web2 = await store.read.pendingStep('web-2');
          assert.equal(web2?.deployment.id, 2, 'the oldest running deployment comes first');
          assert.equal(await store.read.pendingStep('web-3'), undefined);
          assert.equal(await store.read.pendingStep('web-9'), undefined);

          await store.transaction((repo) => repo.updateDeploymentHost(3, 'web-1', { state: 'succeeded', updated_at: at(7) }));
          assert.equal(await store.read.pendingStep('web-1'), undefined);
          assert.deepEqual(
            (await store.read.deploymentHosts(3)).find((step) => step.host === 'web-1'),
            { ...stepRow(3, 'web-1', 'succeeded'), updated_at: at(7) },
          );
          await store.transaction((repo) => repo.updateDeployment(2, { state: 'failed' }));
          assert.equal((await store.read.pendingStep('web-2'))?.deployment.id, 3);
        }));
    });

    describe('audit', () => {
      it('appendAudit chains each event to the one before', () =>
        withStore(async (store) => {
          const details = { release: 'abc', hosts: ['web-2', 'web-1'], nested: { z: 1, a: [true, null] } };
          const first = await store.transaction((repo) => repo.appendAudit({ at: at(1), actor: 'alice', action: 'deploy.create', target: 'test', details }));
          const second = await store.transaction(async (repo) => {
            await repo.appendAudit({ at: at(2), actor: 'bob', action: 'deploy.approve', target: 'test', details: {} });
            return repo.appendAudit({ at: at(3), actor: 'bob', action: 'deploy.finish', target: 'test', details: { ok: true } });
          });
          assert.equal(first.seq, 1);
          assert.equal(first.prev_hash, GENESIS_HASH);
          assert.equal(second.seq, 3);
          assert.deepEqual(JSON.parse(first.details), details);

          const events = await store.read.listAudit({ limit: 100 });
          assert.equal(events.length, 3);
          assert.deepEqual(events[0], first);
          assert.deepEqual(events[2], second);
          assertUnbrokenChain(events);
          assert.deepEqual(
            (await store.read.listAudit({ afterSeq: 1, limit: 1 })).map((event) => event.seq),
            [2],
          );
        }));

      it('with a signer, each transaction that appends stores one checkpoint over its head, in the transaction; none for a rollback', () =>
        withStore(async (store) => {
          const committed: { seq: number; actions: readonly string[] }[] = [];
          const refused: { seq: number; problem: string }[] = [];
          const signer = (): AuditSigner => ({
            sign: (head) => ({ seq: head.seq, hash: head.hash, at: at(9), every: 0, interval_ms: 0, key_id: 'k', signature: `sig-${head.seq}` }),
            committed: (checkpoint, actions) => committed.push({ seq: Number(checkpoint.seq), actions }),
            refused: (problem) => refused.push(problem),
          });
          store.useAuditSigner(signer());
          await store.transaction(async (repo) => {
            await repo.appendAudit({ at: at(1), actor: 'alice', action: 'token.created', target: 't', details: {} });
            await repo.appendAudit({ at: at(2), actor: 'alice', action: 'host.added', target: 't', details: {} });
          });
          await store.transaction(async () => undefined); // appends nothing: no checkpoint
          await assert.rejects(
            store.transaction(async (repo) => {
              await repo.appendAudit({ at: at(3), actor: 'mallory', action: 'b', target: 't', details: {} });
              throw new Abort('abort');
            }),
            Abort,
          );
          const head = await store.read.auditHead();
          assert.deepEqual(
            (await store.read.listAuditCheckpoints({ limit: 10 })).map((row) => [Number(row.seq), row.hash]),
            [[2, head.hash]],
          );
          assert.deepEqual(committed, [{ seq: 2, actions: ['token.created', 'host.added'] }]);

          // An event written without the signer (as outside the server) is never signed over by the next transaction.
          store.useAuditSigner(undefined);
          await store.transaction((repo) => repo.appendAudit({ at: at(4), actor: 'mallory', action: 'forged', target: 't', details: {} }));
          store.useAuditSigner(signer());
          await store.transaction((repo) => repo.appendAudit({ at: at(5), actor: 'alice', action: 'c', target: 't', details: {} }));
          assert.deepEqual((await store.read.listAuditCheckpoints({ limit: 10 })).map((row) => Number(row.seq)), [2]);
          assert.equal(refused.length, 1);
          assert.match(refused[0]!.problem, /^unsigned tail: events 3\.\.3 /);
        }));

      it('a transaction that throws after appendAudit leaves no event and does not advance the chain', () =>
        withStore(async (store) => {
          const kept = await store.transaction((repo) => repo.appendAudit({ at: at(1), actor: 'alice', action: 'a', target: 't', details: {} }));
          await assert.rejects(
            store.transaction(async (repo) => {
              await repo.appendAudit({ at: at(2), actor: 'mallory', action: 'b', target: 't', details: {} });
              throw new Abort('abort');
            }),
            Abort,
          );
          assert.deepEqual(await store.read.listAudit({ limit: 100 }), [kept]);
          const next = await store.transaction((repo) => repo.appendAudit({ at: at(3), actor: 'alice', action: 'c', target: 't', details: {} }));
          assert.equal(next.seq, 2);
          assert.equal(next.prev_hash, kept.hash);
          assertUnbrokenChain(await store.read.listAudit({ limit: 100 }));
        }));

      it('20 concurrent writers cannot fork the chain', () =>
        withStore(async (store) => {
          const together = rendezvous(10);
          await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              store.transaction(async (repo) => {
                await repo.latestConfig(); // the transaction has begun
                await together();
                // Other work in the same transaction before the audit write widens the race window.
                await repo.setEnvironmentCurrent(`env-${i}`, null, at(i));
                return repo.appendAudit({ at: at(i), actor: `writer-${i}`, action: 'concurrent', target: 't', details: { i } });
              }),
            ),
          );
          const events = await store.read.listAudit({ limit: 100 });
          assert.deepEqual(
            events.map((event) => event.seq),
            Array.from({ length: 20 }, (_, i) => i + 1),
          );
          assertUnbrokenChain(events);
          assert.equal(new Set(events.map((event) => event.actor)).size, 20, 'every writer has exactly one event');
        }));
    });
  });
}

for (const backend of storeBackends()) contract(backend);
