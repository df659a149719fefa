import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_SCAN_INTERVALS, diffAgainstManifest, diffSnapshot, dueScan, mergeRescan } from '../../src/core/drift.js';
import type { SnapshotEntry } from '../../src/core/drift.js';
import type { ManifestEntry } from '../../src/core/manifest.js';

const hash = (char: string) => char.repeat(64);
const file = (path: string, extra: Partial<SnapshotEntry> = {}): SnapshotEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, sha256: hash('a'), ...extra });
const dir = (path: string, extra: Partial<SnapshotEntry> = {}): SnapshotEntry => ({ path, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, ...extra });
const link = (path: string, target: string): SnapshotEntry => ({ path, type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, target });

describe('diffSnapshot', () => {
  const baseline = [dir('etc'), file('etc/app.conf'), file('etc/old.conf'), link('current', 'releases/1'), file('bin/run', { mode: 0o755 }), dir('data')];

  it('finds nothing when nothing changed', () => {
    assert.deepEqual(diffSnapshot(baseline, [...baseline].reverse()), []);
  });

  it('names every kind of change with what was expected and what was found', () => {
    const actual = [
      dir('etc'),
      file('etc/app.conf', { sha256: hash('b') }),
      file('etc/new.conf'),
      link('current', 'releases/2'),
      file('bin/run', { mode: 0o4755, uid: 1000, gid: 1000 }),
      file('data', { size: 3 }),
    ];
    const findings = diffSnapshot(baseline, actual);
    assert.deepEqual(
      findings.map((f) => [f.kind, f.path]),
      [
        ['mode', 'bin/run'],
        ['owner', 'bin/run'],
        ['group', 'bin/run'],
        ['target', 'current'],
        ['type', 'data'],
        ['content', 'etc/app.conf'],
        ['added', 'etc/new.conf'],
        ['removed', 'etc/old.conf'],
      ],
    );
    const content = findings.find((f) => f.kind === 'content');
    assert.deepEqual(content?.expected, { size: 3, sha256: hash('a') });
    assert.deepEqual(content?.actual, { size: 3, sha256: hash('b') });
    assert.deepEqual(findings.find((f) => f.kind === 'mode')?.actual, 0o4755);
    assert.deepEqual(findings.find((f) => f.kind === 'type')?.expected, 'dir');
    assert.deepEqual(findings.find((f) => f.kind === 'target')?.actual, 'releases/2');
  });

  it('reports a size change even when a file was too large to hash, and the problem itself', () => {
    const big = file('big', { size: 10, problem: 'too-large', detail: 'cap' });
    const { sha256: _ignored, ...unhashed } = big;
    const findings = diffSnapshot([unhashed], [{ ...unhashed, size: 11 }]);
    assert.deepEqual(findings.map((f) => f.kind), ['content', 'too-large']);
    assert.deepEqual(diffSnapshot([unhashed], [unhashed]).map((f) => f.kind), ['too-large']);
  });

  it('reports unreadable and vanished entries as such, not as content changes', () => {
    const unreadable = file('etc/app.conf', { problem: 'unreadable', detail: 'EACCES' });
    const { sha256: _a, ...withoutHash } = unreadable;
    const findings = diffSnapshot(baseline, [...baseline.filter((e) => e.path !== 'etc/app.conf'), withoutHash]);
    assert.deepEqual(findings, [{ kind: 'unreadable', path: 'etc/app.conf', expected: { size: 3, sha256: hash('a') }, actual: { detail: 'EACCES' } }]);
    const vanished: SnapshotEntry = { path: 'etc/old.conf', type: 'other', special: 'unknown', mode: 0, uid: -1, gid: -1, size: 0, problem: 'vanished', detail: 'ENOENT' };
    const gone = diffSnapshot(baseline, [...baseline.filter((e) => e.path !== 'etc/old.conf'), vanished]);
    assert.deepEqual(gone.map((f) => [f.kind, f.path]), [['vanished', 'etc/old.conf']]);
  });

  it('treats a socket replacing a FIFO as a type change and a new socket as added', () => {
    const fifo: SnapshotEntry = { path: 'run/x', type: 'other', special: 'fifo', mode: 0o600, uid: 0, gid: 0, size: 0 };
    const socket: SnapshotEntry = { ...fifo, special: 'socket' };
    assert.deepEqual(diffSnapshot([fifo], [socket]).map((f) => f.kind), ['type']);
    assert.deepEqual(diffSnapshot([], [socket]).map((f) => [f.kind, f.path]), [['added', 'run/x']]);
  });
});

describe('diffAgainstManifest', () => {
  const manifest: ManifestEntry[] = [
    { path: 'bin', type: 'dir', mode: 0o755 },
    { path: 'bin/start', type: 'file', mode: 0o755, size: 3, sha256: hash('a') },
    { path: 'link', type: 'symlink', target: 'bin/start' },
  ];

  it('ignores owner, group and symlink modes (a manifest has none)', () => {
    const actual = [dir('bin', { uid: 1000, gid: 50 }), file('bin/start', { mode: 0o755, uid: 1000 }), link('link', 'bin/start')];
    assert.deepEqual(diffAgainstManifest(manifest, actual), []);
  });

  it('finds content, mode, target, added and removed against a release', () => {
    const actual = [dir('bin'), file('bin/start', { mode: 0o775, sha256: hash('c') }), file('bin/extra'), link('link', '/etc/passwd')];
    assert.deepEqual(
      diffAgainstManifest(manifest, actual).map((f) => [f.kind, f.path]),
      [
        ['added', 'bin/extra'],
        ['content', 'bin/start'],
        ['mode', 'bin/start'],
        ['target', 'link'],
      ],
    );
    assert.deepEqual(diffAgainstManifest(manifest, [dir('bin')]).map((f) => [f.kind, f.path]), [
      ['removed', 'bin/start'],
      ['removed', 'link'],
    ]);
  });
});

describe('mergeRescan', () => {
  it('replaces what lies at or under the re-scanned paths and keeps the rest', () => {
    const previous = [dir('a'), file('a/x'), file('a/y'), file('b'), file('ab')];
    const merged = mergeRescan(previous, ['a'], [dir('a'), file('a/x', { sha256: hash('z') })]);
    assert.deepEqual(merged.map((e) => e.path), ['a', 'a/x', 'ab', 'b']);
    assert.equal(merged.find((e) => e.path === 'a/x')?.sha256, hash('z'));
    assert.deepEqual(mergeRescan(previous, [''], [file('only')]).map((e) => e.path), ['only']);
  });
});

describe('dueScan', () => {
  const { periodicMs, fullMs } = DEFAULT_SCAN_INTERVALS;
  it('asks for a full scan first and every 24 h, a periodic one every 5 min', () => {
    assert.equal(periodicMs, 300_000);
    assert.equal(fullMs, 86_400_000);
    assert.equal(dueScan(1_000, null, null), 'full');
    assert.equal(dueScan(1_000 + periodicMs - 1, null, 1_000), null);
    assert.equal(dueScan(1_000 + periodicMs, null, 1_000), 'periodic');
    assert.equal(dueScan(1_000 + periodicMs + 10, 1_000 + periodicMs, 1_000), null);
    assert.equal(dueScan(1_000 + fullMs, 1_000 + fullMs - 1, 1_000), 'full');
  });
});
