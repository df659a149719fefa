/**
 * The store's drift items, agent commands and drift reports, on every
 * database: at most one open item per host and path, closed items kept as
 * history, commands handed out oldest first.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AgentCommandKind } from '../../src/core/drift-items.js';
import type { AgentCommandRow, DriftItemRow, Store } from '../../src/store/store.js';
import { storeBackends, type StoreBackend, withStore as withBackendStore } from '../helpers/store-backends.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();

function item(host: string, path: string, overrides: Partial<DriftItemRow> = {}): Omit<DriftItemRow, 'id'> {
  return {
    host,
    env: 'production',
    scope: 'release',
    path,
    kinds: JSON.stringify(['content']),
    expected: JSON.stringify({ type: 'file', sha256: 'a'.repeat(64) }),
    actual: JSON.stringify({ type: 'file', sha256: 'b'.repeat(64) }),
    state: 'open',
    first_seen_at: at(0),
    last_seen_at: at(0),
    closed_at: null,
    closed_by: null,
    adopted_into: null,
    reason: null,
    firecall_id: null,
    ...overrides,
  };
}

function command(host: string, kind: AgentCommandKind, minute: number): Omit<AgentCommandRow, 'id'> {
  return { host, kind, payload: JSON.stringify({ full: false }), state: 'pending', created_by: 'alice', created_at: at(minute), sent_at: null, finished_at: null, result: null };
}

function contract(backend: StoreBackend): void {
  describe(`drift store: ${backend.name}`, () => {
    before(() => backend.setUp());
    after(() => backend.tearDown());

    const withStore = (work: (store: Store) => Promise<void>): Promise<void> => withBackendStore(backend, work);

    it('keeps one open item per host, scope and path; a closed one is history and the path may drift again', () =>
      withStore(async (store) => {
        const first = await store.transaction((repo) => repo.insertDriftItem(item('web1', '/srv/app/current/a')));
        await assert.rejects(store.transaction((repo) => repo.insertDriftItem(item('web1', '/srv/app/current/a'))), 'a second open item for the same path');
        // Same path, other scope or other host: separate items.
        await store.transaction((repo) => repo.insertDriftItem(item('web1', '/srv/app/current/a', { scope: 'watch' })));
        await store.transaction((repo) => repo.insertDriftItem(item('web2', '/srv/app/current/a')));
        await store.transaction((repo) => repo.updateDriftItem(first, { state: 'reverted', closed_at: at(5), closed_by: 'alice' }));
        const again = await store.transaction((repo) => repo.insertDriftItem(item('web1', '/srv/app/current/a', { first_seen_at: at(9), last_seen_at: at(9) })));
        assert.ok(again > first);

        const history = await store.read.driftItems({ host: 'web1', states: undefined });
        assert.deepEqual(
          history.map((row) => [row.id, row.scope, row.state, row.closed_by]),
          [
            [first, 'release', 'reverted', 'alice'],
            [first + 1, 'watch', 'open', null],
            [again, 'release', 'open', null],
          ],
        );
        assert.equal(typeof history[0]?.id, 'number');
        assert.deepEqual((await store.read.driftItems({ host: 'web1', states: ['open'] })).map((row) => row.id), [first + 1, again]);
        assert.deepEqual(await store.read.driftItems({ host: 'web1', states: [] }), []);
        assert.deepEqual([...(await store.read.openDriftCounts())].sort(), [
          ['web1', 2],
          ['web2', 1],
        ]);
      }));

    it('filters items by environment and updates their fields', () =>
      withStore(async (store) => {
        const id = await store.transaction((repo) => repo.insertDriftItem(item('t1', '/etc/nginx/nginx.conf', { env: 'test', scope: 'watch' })));
        await store.transaction((repo) => repo.insertDriftItem(item('p1', '/etc/nginx/nginx.conf', { scope: 'watch' })));
        await store.transaction((repo) =>
          repo.updateDriftItem(id, { kinds: JSON.stringify(['mode']), last_seen_at: at(3), adopted_into: 'c'.repeat(64), reason: 'hotfix', firecall_id: 7 }),
        );
        const [row, ...rest] = await store.read.driftItems({ env: 'test' });
        assert.equal(rest.length, 0);
        assert.equal(row?.host, 't1');
        assert.deepEqual(JSON.parse(row?.kinds ?? '[]'), ['mode']);
        assert.equal(row?.last_seen_at, at(3));
        assert.equal(row?.first_seen_at, at(0));
        assert.equal(row?.adopted_into, 'c'.repeat(64));
        assert.equal(row?.firecall_id, 7);
      }));

    it('hands out commands oldest first, per host, only while pending', () =>
      withStore(async (store) => {
        const scan = await store.transaction((repo) => repo.insertAgentCommand(command('web1', 'drift-scan', 1)));
        const revert = await store.transaction((repo) => repo.insertAgentCommand(command('web1', 'drift-revert', 2)));
        await store.transaction((repo) => repo.insertAgentCommand(command('web2', 'drift-scan', 0)));
        assert.equal((await store.read.pendingCommand('web1'))?.id, scan);
        await store.transaction((repo) => repo.updateAgentCommand(scan, { state: 'sent', sent_at: at(3) }));
        assert.equal((await store.read.pendingCommand('web1'))?.id, revert);
        await store.transaction((repo) => repo.updateAgentCommand(scan, { state: 'done', finished_at: at(4), result: JSON.stringify({ host: 'web1', ok: true }) }));
        const done = await store.read.agentCommand(scan);
        assert.equal(done?.state, 'done');
        assert.equal(done?.sent_at, at(3));
        assert.deepEqual(JSON.parse(done?.result ?? 'null'), { host: 'web1', ok: true });
        assert.equal(await store.read.agentCommand(999), undefined);
        assert.equal(await store.read.pendingCommand('web3'), undefined);
      }));

    it('claims a pending command once, and touches only open items of one host', () =>
      withStore(async (store) => {
        const id = await store.transaction((repo) => repo.insertAgentCommand(command('web1', 'drift-scan', 1)));
        const [first, second] = await Promise.all([
          store.transaction((repo) => repo.claimPendingCommand('web1', at(2))),
          store.transaction((repo) => repo.claimPendingCommand('web1', at(2))),
        ]);
        assert.deepEqual([first?.id, second?.id].filter((claimed) => claimed !== undefined), [id], 'exactly one claim gets the command');
        assert.equal((await store.read.agentCommand(id))?.state, 'sent');
        // The agent restarted before answering: its first poll hands the command out again, once.
        const done = await store.transaction((repo) => repo.insertAgentCommand(command('web1', 'drift-scan', 2)));
        await store.transaction(async (repo) => {
          await repo.claimPendingCommand('web1', at(3));
          await repo.updateAgentCommand(done, { state: 'done', finished_at: at(3) });
        });
        assert.equal(await store.transaction((repo) => repo.requeueSentCommands('web1')), 1);
        assert.equal((await store.transaction((repo) => repo.claimPendingCommand('web1', at(4))))?.id, id);
        assert.equal((await store.read.agentCommand(done))?.state, 'done');

        const open = await store.transaction((repo) => repo.insertDriftItem(item('web1', '/a')));
        const closed = await store.transaction((repo) => repo.insertDriftItem(item('web1', '/b', { state: 'resolved' })));
        const other = await store.transaction((repo) => repo.insertDriftItem(item('web2', '/a')));
        await store.transaction((repo) => repo.touchOpenDriftItems('web1', at(7)));
        const seen = new Map((await store.read.driftItems({})).map((row) => [row.id, row.last_seen_at]));
        assert.deepEqual([seen.get(open), seen.get(closed), seen.get(other)], [at(7), at(0), at(0)]);
      }));

    it('keeps the latest drift report of each host', () =>
      withStore(async (store) => {
        assert.equal(await store.read.driftScan('web1'), undefined);
        const report = { host: 'web1', reported_at: at(1), release_id: null, full: 1, cause: 'scan', truncated: 0, entries: 10, hashed_files: 10, elapsed_ms: 12.5 };
        await store.transaction((repo) => repo.upsertDriftScan(report));
        await store.transaction((repo) => repo.upsertDriftScan({ ...report, reported_at: at(2), full: 0, entries: 11, hashed_files: 1, elapsed_ms: 3 }));
        assert.deepEqual(await store.read.driftScan('web1'), { ...report, reported_at: at(2), full: 0, entries: 11, hashed_files: 1, elapsed_ms: 3 });
        assert.deepEqual(await store.read.driftReportTimes(), new Map([['web1', at(2)]]));
      }));
  });
}

for (const backend of storeBackends()) contract(backend);
